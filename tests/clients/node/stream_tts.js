// Seed 004's Node.js client (`streamTTS` from the token socket document), as written there,
// with three changes: the URL is an argument, `playAudio` collects the samples instead of
// playing them, and `streamTTS` returns its socket so this harness can see each frame's kind
// and close the socket once the audio has stopped coming (the seed's example never closes).
//
//   node stream_tts.js URL OUT_FILE TOKENS_JSON
// prints JSON {messages: [{binary, bytes}], samples, error} and writes the samples (float32 LE)
// to OUT_FILE. An exception thrown by the seed's code (e.g. a Float32Array over a frame whose
// length is not a multiple of 4) is reported as `error`, exit status 1.
const fs = require('fs');
const WebSocket = require('ws');

const [url, outFile, tokensJson] = process.argv.slice(2);
const QUIET_MS = 2000; // no message for this long after the last token: done
const chunks = [];
const messages = [];
let timer = null;

function finish(error) {
  const samples = chunks.reduce((n, c) => n + c.length, 0);
  const out = Buffer.alloc(samples * 4);
  let offset = 0;
  for (const c of chunks) {
    Buffer.from(c.buffer, c.byteOffset, c.byteLength).copy(out, offset);
    offset += c.byteLength;
  }
  fs.writeFileSync(outFile, out);
  process.stdout.write(JSON.stringify({ messages, samples, error }) + '\n');
  process.exit(error ? 1 : 0);
}

function playAudio(samples) {
  chunks.push(new Float32Array(samples)); // a copy: the frame's buffer may be reused
}

// ---- seed 004, "JavaScript/Node.js" ------------------------------------------------------
async function streamTTS(tokens) {
  const ws = new WebSocket(url);

  ws.on('open', () => {
    // Send tokens
    for (const token of tokens) {
      ws.send(JSON.stringify({
        token: token,
        pitch_shift: 0
      }));
    }

    // Flush
    ws.send(JSON.stringify({ flush: true }));
  });

  ws.on('message', (data) => {
    // data is Buffer containing PCM float32 audio
    const samples = new Float32Array(
      data.buffer,
      data.byteOffset,
      data.length / 4
    );

    // Play audio...
    playAudio(samples);
  });
  return ws;
}
// ------------------------------------------------------------------------------------------

process.on('uncaughtException', (err) => finish(String(err)));

streamTTS(JSON.parse(tokensJson)).then((ws) => {
  const quiet = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ws.close(), QUIET_MS);
  };
  ws.on('open', quiet);
  // Registered after the seed's handler, so it runs only if that one did not throw.
  ws.on('message', (data, isBinary) => {
    messages.push({ binary: isBinary, bytes: data.length });
    quiet();
  });
  ws.on('close', (code, reason) => finish(code === 1000 || code === 1005 ? null : `closed ${code} ${reason}`));
  ws.on('error', (err) => finish(String(err)));
});
