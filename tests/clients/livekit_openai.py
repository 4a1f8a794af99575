"""livekit-plugins-openai's `openai.TTS` and `openai.STT`, default models, `base_url` = Parley.

Run with the livekit client venv's python:
    livekit_openai.py tts BASE_URL TEXT OUT_FILE   -> JSON {sample_rate, num_channels, samples}
    livekit_openai.py stt BASE_URL WAV_FILE...     -> JSON [{text, language}] per file
The key comes from OPENAI_API_KEY, as the plugin documents. TTS audio is written to OUT_FILE as
the frames' int16 samples; STT input is a 16-bit mono WAV, pushed as one `rtc.AudioFrame`.
"""

import wave

from livekit import rtc
from livekit.plugins import openai
from speech_driver import run_driver  # beside this script


async def tts(base_url: str, text: str, out: str) -> dict:
    engine = openai.TTS(base_url=base_url)
    frames = []
    async for audio in engine.synthesize(text):
        frames.append(audio.frame)
    await engine.aclose()
    rates = {f.sample_rate for f in frames}
    channels = {f.num_channels for f in frames}
    pcm = b"".join(bytes(frame.data.cast("B")) for frame in frames)
    return {
        "pcm": (out, pcm),
        "sample_rate": rates.pop() if len(rates) == 1 else sorted(rates),
        "num_channels": channels.pop() if len(channels) == 1 else sorted(channels),
        "samples": sum(fr.samples_per_channel for fr in frames),
        "frames": len(frames),
    }


async def stt(base_url: str, *wav_paths: str) -> list[dict]:
    engine = openai.STT(base_url=base_url)
    results = []
    for path in wav_paths:
        with wave.open(path, "rb") as w:
            frame = rtc.AudioFrame(
                data=w.readframes(w.getnframes()),
                sample_rate=w.getframerate(),
                num_channels=w.getnchannels(),
                samples_per_channel=w.getnframes(),
            )
        event = await engine.recognize([frame])
        alt = event.alternatives[0]
        results.append({"text": alt.text, "language": str(alt.language)})
    await engine.aclose()
    return results


if __name__ == "__main__":
    run_driver(tts, stt)
