// Parley's web page: microphone -> /api/asr-streaming, text -> /api/tts_streaming, both in
// moshi's msgpack protocol. No framework, no CDN: everything is served by `parley serve`.
import { decode, encode } from "./msgpack.js";

const RATE_HZ = 24000;
const FRAME = 1920; // 80 ms
const $ = (id) => document.getElementById(id);

// What the page did, for people debugging and for the browser tests.
const state = (window.parley = {
  modules: [],
  stt: { running: false, ready: false, words: [], steps: 0, framesSent: 0, lastPrs: [], errors: [] },
  tts: { framesReceived: 0, framesScheduled: 0, words: [], highlighted: [], ttfaMs: null, errors: [], done: false },
});

function apiKey() {
  return $("api-key").value.trim();
}

function socketUrl(path, params) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
  return url.toString();
}

function showError(which, message) {
  $(`${which}-error`).textContent = message;
  state[which].errors.push(message);
}

function explainServerError(message, what) {
  if (message === "no free channels") {
    return `The server is full: every ${what} channel is in use. Try again in a moment.`;
  }
  return `The server reported an error: ${message}`;
}

// The key is checked over HTTP first: a browser cannot read why a WebSocket upgrade failed.
async function checkKey() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: { Authorization: `Bearer ${apiKey()}` } });
  } catch {
    return "The server cannot be reached.";
  }
  if (response.status === 401) return "The server refused this API key (HTTP 401).";
  return null;
}

// Module types by what they do: the page speaks the same protocol to either kind.
const ROLES = {
  stt: { types: ["WhisperStreaming", "KyutaiStt"], label: "Speech to text" },
  tts: { types: ["PiperTts", "KyutaiTts"], label: "Text to speech" },
  chat: { types: ["MoshiChat"], label: "Speech to speech" },
};

function moduleOf(role) {
  return state.modules.find((m) => ROLES[role].types.includes(m.type));
}

async function loadModules() {
  try {
    const response = await fetch("/api/modules_info");
    state.modules = await response.json();
  } catch {
    $("capacity").textContent = "The server cannot be reached.";
    return;
  }
  const parts = state.modules.map((m) => {
    const role = Object.values(ROLES).find((r) => r.types.includes(m.type));
    const label = role ? role.label : m.type;
    const full = m.used_slots >= m.total_slots ? " (full)" : "";
    return `${label}: ${m.used_slots} of ${m.total_slots} channels in use${full}`;
  });
  $("capacity").textContent = parts.join(" · ");
  const tts = moduleOf("tts");
  const select = $("voice");
  if (tts && select.options.length === 0) {
    for (const v of tts.voices) {
      const option = new Option(v, v, v === tts.default_voice, v === tts.default_voice);
      select.add(option);
    }
  }
  $("speak").disabled = !tts;
  $("mic-start").disabled = state.stt.running || !moduleOf("stt");
}

// --- speech to text ----------------------------------------------------------------------
let mic = null;

function setTurn(prs) {
  const el = $("turn");
  const ended = prs.length > 2 && prs[2] > 0.5; // Kyutai clients read prs[2] as "turn over"
  el.textContent = ended ? "pause: your turn is over" : "listening";
  el.className = `turn ${ended ? "ended" : "speaking"}`;
}

function addWord(text, startS) {
  state.stt.words.push({ text, start_s: startS });
  $("live").textContent = state.stt.words.slice(-16).map((w) => w.text).join(" ");
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = `${startS.toFixed(2)} s`;
  item.append(time, text);
  $("transcript").append(item);
}

async function startMic() {
  $("stt-error").textContent = "";
  const keyError = await checkKey();
  if (keyError) return showError("stt", keyError);
  await loadModules();
  const stt = moduleOf("stt");
  if (!stt) return showError("stt", "This server has no speech-to-text module.");
  if (stt.used_slots >= stt.total_slots) {
    return showError("stt", `The server is full: all ${stt.total_slots} speech-to-text channels are in use.`);
  }
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    const why = err && err.name === "NotAllowedError"
      ? "Microphone permission was refused: allow it in the browser's site settings."
      : err && err.name === "NotFoundError" ? "No microphone was found." : `The microphone could not start (${err}).`;
    return showError("stt", why);
  }
  const context = new AudioContext({ sampleRate: RATE_HZ });
  await context.audioWorklet.addModule("capture-worklet.js");
  const source = context.createMediaStreamSource(media);
  const capture = new AudioWorkletNode(context, "parley-capture");
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(context.destination);

  const ws = new WebSocket(socketUrl(stt.path, { auth_id: apiKey() }));
  ws.binaryType = "arraybuffer";
  mic = { media, context, ws, pending: new Float32Array(0), stopping: false, markerSeen: null };
  state.stt.running = true;
  $("mic-start").disabled = true;
  $("mic-stop").disabled = false;
  $("turn").textContent = "connecting";

  ws.onmessage = (event) => {
    const msg = decode(event.data);
    if (msg.type === "Ready") {
      state.stt.ready = true;
      loadModules(); // the capacity line now counts this session
    }
    else if (msg.type === "Word") addWord(msg.text, msg.start_time);
    else if (msg.type === "Step") {
      state.stt.steps += 1;
      state.stt.lastPrs = msg.prs;
      setTurn(msg.prs);
    } else if (msg.type === "Marker" && mic && mic.markerSeen) mic.markerSeen();
    else if (msg.type === "Error") showError("stt", explainServerError(msg.message, "speech-to-text"));
  };
  ws.onclose = (event) => {
    if (mic && !mic.stopping && state.stt.errors.length === 0) {
      showError("stt", `The connection closed (code ${event.code}).`);
    }
    stopCapture();
  };
  capture.port.onmessage = ({ data }) => {
    $("level").value = Math.min(1, data.rms * 4);
    if (!mic || mic.stopping || ws.readyState !== WebSocket.OPEN) return;
    const joined = new Float32Array(mic.pending.length + data.pcm.length);
    joined.set(mic.pending);
    joined.set(data.pcm, mic.pending.length);
    let offset = 0;
    for (; offset + FRAME <= joined.length; offset += FRAME) {
      ws.send(encode({ type: "Audio", pcm: joined.subarray(offset, offset + FRAME) }));
      state.stt.framesSent += 1;
    }
    mic.pending = joined.slice(offset);
  };
}

function stopCapture() {
  if (!mic) return;
  mic.media.getTracks().forEach((t) => t.stop());
  mic.context.close();
  mic = null;
  state.stt.running = false;
  $("mic-start").disabled = false;
  $("mic-stop").disabled = true;
  $("level").value = 0;
  $("turn").textContent = "idle";
  $("turn").className = "turn";
}

async function stopMic() {
  if (!mic) return;
  const { ws } = mic;
  mic.stopping = true;
  if (ws.readyState === WebSocket.OPEN) {
    // Silence after a marker lets the server finish the last words; the marker comes back
    // once they are out.
    const done = new Promise((resolve) => {
      mic.markerSeen = resolve;
      setTimeout(resolve, 5000);
    });
    ws.send(encode({ type: "Marker", id: 1 }));
    const silence = new Float32Array(FRAME);
    for (let i = 0; i < 25; i++) ws.send(encode({ type: "Audio", pcm: silence }));
    await done;
    ws.close();
  }
  stopCapture();
}

// --- text to speech ----------------------------------------------------------------------
let player = null;

function highlight() {
  if (!player) return;
  const t = player.context.currentTime - player.start;
  const spans = $("spoken").children;
  state.tts.words.forEach((w, i) => {
    const span = spans[i];
    if (!span) return;
    const now = player.start > 0 && t >= w.start_s && t < Math.max(w.stop_s, w.start_s + 0.08);
    span.classList.toggle("now", now);
    span.classList.toggle("said", player.start > 0 && t >= w.stop_s);
    if (now && !state.tts.highlighted.includes(i)) state.tts.highlighted.push(i);
  });
  if (!state.tts.done || t < state.tts.framesScheduled * 0.08) requestAnimationFrame(highlight);
}

async function speak() {
  $("tts-error").textContent = "";
  $("ttfa").textContent = "";
  const keyError = await checkKey();
  if (keyError) return showError("tts", keyError);
  const tts = moduleOf("tts");
  if (!tts) return showError("tts", "This server has no text-to-speech module.");
  const words = $("tts-text").value.split(/\s+/).filter(Boolean);
  if (words.length === 0) return showError("tts", "Type some text first.");
  if (player) player.context.close();
  Object.assign(state.tts, { framesReceived: 0, framesScheduled: 0, words: [], highlighted: [], ttfaMs: null, done: false });
  $("spoken").textContent = "";
  const context = new AudioContext({ sampleRate: RATE_HZ });
  player = { context, start: 0 };
  const clicked = performance.now();
  const ws = new WebSocket(
    socketUrl(tts.path, { format: "PcmMessagePack", voice: $("voice").value, auth_id: apiKey() }),
  );
  ws.binaryType = "arraybuffer";
  $("speak").disabled = true;
  ws.onopen = () => {
    for (const w of words) ws.send(encode({ type: "Text", text: w }));
    ws.send(encode({ type: "Eos" }));
  };
  ws.onmessage = (event) => {
    const msg = decode(event.data);
    if (msg.type === "Audio") {
      state.tts.framesReceived += 1;
      if (state.tts.ttfaMs === null) {
        state.tts.ttfaMs = Math.round(performance.now() - clicked);
        $("ttfa").textContent = `first audio after ${state.tts.ttfaMs} ms`;
        player.start = context.currentTime + 0.05;
        requestAnimationFrame(highlight);
      }
      // Frames are scheduled back to back on the audio clock as they arrive.
      const buffer = context.createBuffer(1, msg.pcm.length, RATE_HZ);
      buffer.copyToChannel(Float32Array.from(msg.pcm), 0);
      const node = context.createBufferSource();
      node.buffer = buffer;
      node.connect(context.destination);
      node.start(player.start + state.tts.framesScheduled * (FRAME / RATE_HZ));
      state.tts.framesScheduled += 1;
    } else if (msg.type === "Text") {
      state.tts.words.push({ text: msg.text, start_s: msg.start_s, stop_s: msg.stop_s });
      const span = document.createElement("span");
      span.textContent = msg.text;
      $("spoken").append(span, " ");
    } else if (msg.type === "Error") {
      showError("tts", explainServerError(msg.message, "text-to-speech"));
    }
  };
  ws.onclose = (event) => {
    state.tts.done = true;
    $("speak").disabled = false;
    if (state.tts.framesReceived === 0 && state.tts.errors.length === 0) {
      showError("tts", `The connection closed before any audio (code ${event.code}).`);
    }
  };
}

$("mic-start").addEventListener("click", startMic);
$("mic-stop").addEventListener("click", stopMic);
$("speak").addEventListener("click", speak);
loadModules();
setInterval(loadModules, 5000);
