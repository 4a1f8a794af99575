// Runs on the audio thread: hands the microphone's samples (already at the context's 24 kHz)
// to the page in blocks, with their RMS for the level meter.
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) {
      let sum = 0;
      for (let i = 0; i < channel.length; i++) sum += channel[i] * channel[i];
      this.port.postMessage({ pcm: channel.slice(0), rms: Math.sqrt(sum / channel.length) });
    }
    return true;
  }
}
registerProcessor("parley-capture", Capture);
