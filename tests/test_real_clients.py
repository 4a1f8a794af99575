"""Real clients, installed as their users install them, against the server with no config file.

Each client runs unchanged in its own virtualenv (`scripts/install-clients.sh`: .venv-clients/
NAME, exact pins in tests/clients/requirements/) through a driver script under tests/clients/
that uses the client's public API as its documentation shows and prints JSON; Node's `ws` comes
from npm (tests/clients/node). The server is `parley serve` with the embedded defaults (no
`authorized_ids`, loopback), configured only through each client's documented settings: a base
URL, and whatever key the client insists on. Speech-to-text is scored against the eval clips'
references; speech that comes back is checked for length at its sample rate and transcribed
back with Whisper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import OpenAI

from parley.audio.decode import resample
from parley.bench.eval_clips import Clip, english_clips
from parley.bench.wer import wer
from tests.conftest import EVAL_DIR, ROOT, Server, load_clip, serving
from tests.test_tts_server import transcribe, whisper  # noqa: F401 - fixture

CLIENTS = ROOT / "tests" / "clients"
VENVS = ROOT / ".venv-clients"
# Two clips of read speech that tiny.en gets nearly right (LJSpeech, 8 s; LibriSpeech, 6 s).
STT_CLIP_IDS = ("ljspeech_LJ001-0005", "leopard_test")
STT_MAX_WER = 0.15  # tiny.en offline: 0.024 on these two (one error of 42 words: "15th")
TTS_TEXT = "The library opens at nine, and closes late on Thursdays."
TTS_MAX_WER = 0.2  # as test_openai_api's response formats, for the same sentence
# With no `authorized_ids` on loopback any key goes; the OpenAI clients insist on one.
ANY_KEY = "sk-not-needed-for-parley"
# Seed 004's "Example Flow", token by token: two sentences, so two phrases.
SEED_004_FLOW = ["Hello", " ", "world", "!", " ", "How", " ", "are", " ", "you", "?"]
SEED_004_TEXT = "Hello world! How are you?"
# Each word's share of speech, in seconds, at the rate the audio claims (Joe says about 0.3-0.4).
SECONDS_PER_WORD = (0.22, 0.6)


@pytest.fixture(scope="module")
def parley(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(tmp_path_factory.mktemp("clients"), None)


@pytest.fixture(scope="module")
def stt_clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Clip, Path]]:
    """The clips as 24 kHz 16-bit mono WAVs (what a microphone or a room track gives)."""
    by_id = {c.id: c for c in english_clips(EVAL_DIR)}
    tmp = tmp_path_factory.mktemp("wavs")
    out = []
    for clip_id in STT_CLIP_IDS:
        clip = by_id[clip_id]
        pcm = np.clip(load_clip(clip.path), -1.0, 1.0)
        path = tmp / f"{clip_id}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24_000)
            w.writeframes((pcm * 32767).astype("<i2").tobytes())
        out.append((clip, path))
    return out


def client_python(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        pytest.skip(
            f"{python.relative_to(ROOT)} is missing: scripts/install-clients.sh installs it"
        )
    return python


def client_env(home: Path, **settings: str) -> dict[str, str]:
    """Our environment less any client's own settings, HOME a fresh folder, plus `settings`."""
    prefixes = ("OPENAI_", "KYUTAI_", "VOICEMODE_", "LIVEKIT_", "PIPECAT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    home.mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home), **settings}


def run_client(argv: list[str | Path], env: dict[str, str], cwd: Path, check: bool = True) -> Any:
    """Runs a driver; returns the JSON on its last line of output."""
    proc = subprocess.run(
        [str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    lines = proc.stdout.strip().splitlines()
    if (check and proc.returncode != 0) or not lines:
        pytest.fail(
            f"{' '.join(map(str, argv[:3]))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-6000:]}"
        )
    return json.loads(lines[-1])


def check_speech(pcm: np.ndarray, rate: int, text: str, model: Any, max_wer: float) -> None:
    """Audio of `text` at `rate`: a plausible length, and Whisper hears the text."""
    words = len(text.split())
    duration_s = len(pcm) / rate
    lo, hi = SECONDS_PER_WORD
    assert lo * words <= duration_s <= hi * words, (duration_s, words)
    heard = transcribe(model, resample(pcm.astype(np.float32), rate, 24_000))
    assert wer([text], [heard]) <= max_wer, heard


def check_stt(clips: list[tuple[Clip, Path]], texts: list[str]) -> None:
    refs = [c.reference for c, _ in clips]
    error = wer(refs, texts)
    assert error <= STT_MAX_WER, (error, texts)


# --- livekit-plugins-openai: openai.TTS / openai.STT over HTTP ---------------------------------
def test_livekit_openai_tts(parley: Server, whisper: Any, tmp_path: Path) -> None:  # noqa: F811
    """Defaults: model gpt-4o-mini-tts, voice `ash`, mp3 over SSE, decoded by livekit."""
    out = tmp_path / "tts.s16"
    env = client_env(tmp_path / "home", OPENAI_API_KEY=ANY_KEY)
    base = parley.http + "/v1"
    python = client_python("livekit")
    result = run_client(
        [python, CLIENTS / "livekit_openai.py", "tts", base, TTS_TEXT, out], env, tmp_path
    )
    assert result["sample_rate"] == 24_000 and result["num_channels"] == 1, result
    pcm = np.fromfile(out, dtype="<i2").astype(np.float32) / 32768
    assert len(pcm) == result["samples"]
    check_speech(pcm, 24_000, TTS_TEXT, whisper, TTS_MAX_WER)


def test_livekit_openai_stt(
    parley: Server, stt_clips: list[tuple[Clip, Path]], tmp_path: Path
) -> None:
    """Default model gpt-4o-mini-transcribe, language `en`: `recognize()` uploads a WAV."""
    env = client_env(tmp_path / "home", OPENAI_API_KEY=ANY_KEY)
    wavs = [p for _, p in stt_clips]
    python = client_python("livekit")
    results = run_client(
        [python, CLIENTS / "livekit_openai.py", "stt", parley.http + "/v1", *wavs], env, tmp_path
    )
    check_stt(stt_clips, [r["text"] for r in results])


# --- livekit-plugins-kyutai-lasuite: moshi-server's streaming socket --------------------------
def test_livekit_kyutai_stt(
    parley: Server, stt_clips: list[tuple[Clip, Path]], tmp_path: Path
) -> None:
    """`kyutai.STT(base_url=ws://.../api/asr-streaming)`, KYUTAI_API_KEY = moshi's default key:
    80 ms msgpack `Audio` frames in, one FINAL_TRANSCRIPT per `Word`, starts in order."""
    env = client_env(tmp_path / "home", KYUTAI_API_KEY="public_token")
    wavs = [p for _, p in stt_clips]
    python = client_python("livekit")
    results = run_client([python, CLIENTS / "livekit_kyutai.py", parley.ws, *wavs], env, tmp_path)
    check_stt(stt_clips, [r["text"] for r in results])
    for (clip, _), r in zip(stt_clips, results, strict=True):
        starts = [w["start_time"] for w in r["words"]]
        assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= clip.duration_s, r


# --- pipecat-ai: OpenAITTSService / OpenAISTTService -------------------------------------------
def test_pipecat_openai_tts(parley: Server, whisper: Any, tmp_path: Path) -> None:  # noqa: F811
    """Defaults: model gpt-4o-mini-tts, voice `alloy`, `pcm` read as 24 kHz s16le."""
    out = tmp_path / "tts.s16"
    env = client_env(tmp_path / "home", OPENAI_API_KEY=ANY_KEY)
    python = client_python("pipecat")
    result = run_client(
        [python, CLIENTS / "pipecat_openai.py", "tts", parley.http + "/v1", TTS_TEXT, out],
        env,
        tmp_path,
    )
    assert not result["errors"], result
    assert result["sample_rate"] == [24_000] and result["num_channels"] == [1], result
    pcm = np.fromfile(out, dtype="<i2").astype(np.float32) / 32768
    check_speech(pcm, 24_000, TTS_TEXT, whisper, TTS_MAX_WER)


def test_pipecat_openai_stt(
    parley: Server, stt_clips: list[tuple[Clip, Path]], tmp_path: Path
) -> None:
    """Default model `gpt-transcribe`, language `en`: one upload per VAD-cut segment."""
    env = client_env(tmp_path / "home", OPENAI_API_KEY=ANY_KEY)
    wavs = [p for _, p in stt_clips]
    python = client_python("pipecat")
    result = run_client(
        [python, CLIENTS / "pipecat_openai.py", "stt", parley.http + "/v1", *wavs], env, tmp_path
    )
    assert not result["errors"], result
    assert len(result["texts"]) == len(stt_clips), result
    check_stt(stt_clips, result["texts"])


# --- VoiceMode (seed 002): its own TTS and STT, only its two base-URL settings -----------------
def voicemode_env(parley: Server, home: Path) -> dict[str, str]:
    """Only VoiceMode's two base-URL settings; ALSA's default device is the `null` plugin (a
    user's ~/.asoundrc), so playback works without a sound card and goes nowhere."""
    env = client_env(
        home,
        VOICEMODE_TTS_BASE_URLS=parley.http + "/v1",
        VOICEMODE_STT_BASE_URLS=parley.http + "/v1",
    )
    (home / ".asoundrc").write_text("pcm.!default {\n    type null\n}\n")
    return env


def test_voicemode_tts(parley: Server, whisper: Any, tmp_path: Path) -> None:  # noqa: F811
    """Its defaults: voice `af_sky`, model `tts-1`, `pcm` streamed and played, key
    `dummy-key-for-local`; then the same request through its synth-only path, for the audio."""
    out = tmp_path / "tts.f32"
    env = voicemode_env(parley, tmp_path / "home")
    python = client_python("voicemode")
    result = run_client(
        [python, CLIENTS / "voicemode_client.py", "tts", TTS_TEXT, out], env, tmp_path
    )
    assert result["played"] is True, result
    assert result["play_config"]["voice"] == "af_sky", result
    assert result["synthesized"] is True and result["sample_rate"] == 24_000, result
    pcm = np.fromfile(out, dtype="<f4")
    assert len(pcm) == result["samples"]
    check_speech(pcm, 24_000, TTS_TEXT, whisper, TTS_MAX_WER)


def test_voicemode_stt(parley: Server, stt_clips: list[tuple[Clip, Path]], tmp_path: Path) -> None:
    """`speech_to_text` on a recording: a WAV upload, model `whisper-1`, `language=auto`."""
    env = voicemode_env(parley, tmp_path / "home")
    wavs = [p for _, p in stt_clips]
    python = client_python("voicemode")
    results = run_client([python, CLIENTS / "voicemode_client.py", "stt", *wavs], env, tmp_path)
    assert all("text" in r for r in results), results
    check_stt(stt_clips, [r["text"] for r in results])


# --- the openai SDK: what the clients above send, straight from the SDK -------------------------
def test_openai_sdk_client_names(
    parley: Server,
    whisper: Any,  # noqa: F811
    stt_clips: list[tuple[Clip, Path]],
) -> None:  # noqa: F811
    """Any key; Kokoro voice names; dated and newer model names; `language` auto or empty."""
    client = OpenAI(base_url=parley.http + "/v1", api_key=ANY_KEY, max_retries=0)
    text = "Good morning, everyone."
    for model, voice in [
        ("gpt-4o-mini-tts-2025-03-20", "af_heart"),
        ("tts-1", "am_adam"),
        ("tts-1-hd", "bf_emma"),
        ("gpt-4o-mini-tts", "af_bella"),
    ]:
        data = client.audio.speech.create(
            model=model, voice=voice, input=text, response_format="pcm"
        ).read()
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        check_speech(pcm, 24_000, text, whisper, 0.34)
    clip, wav = stt_clips[1]
    for model, language in [
        ("gpt-transcribe", "auto"),
        ("gpt-live-transcribe", ""),
        ("gpt-realtime-whisper", None),
        ("gpt-4o-transcribe-2025-03-20", "en"),
    ]:
        kwargs = {} if language is None else {"language": language}
        result = client.audio.transcriptions.create(model=model, file=wav.open("rb"), **kwargs)
        assert wer([clip.reference], [result.text]) <= STT_MAX_WER, (model, result.text)


def test_no_key_at_all(parley: Server) -> None:
    """No `authorized_ids`, loopback: a request without any Authorization header is served."""
    body = json.dumps({"model": "tts-1", "voice": "alloy", "input": "Hi."}).encode()
    req = urllib.request.Request(
        parley.http + "/v1/audio/speech", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and len(r.read()) > 1000


# --- seed 004's token socket: its Python and Node.js examples ----------------------------------
def check_token_socket_result(result: dict[str, Any], pcm: np.ndarray, phrases: int) -> None:
    assert result["error"] is None, result
    kinds = result["messages"]
    assert all(m["binary"] for m in kinds), f"a text frame came: {kinds}"
    assert all(m["bytes"] % 4 == 0 for m in kinds), kinds
    assert len(kinds) == phrases, f"{len(kinds)} binary messages for {phrases} phrases: {kinds}"
    assert len(pcm) == result["samples"] == sum(m["bytes"] for m in kinds) // 4


def test_seed_004_python_speak(parley: Server, whisper: Any, tmp_path: Path) -> None:  # noqa: F811
    """The seed's `speak()` with its Example Flow, default query: 48 kHz float32, one binary
    message per phrase, no JSON (its `np.frombuffer` would fail on text)."""
    out = tmp_path / "speak.f32"
    url = f"ws://127.0.0.1:{parley.port}/ws/stream"
    argv = [sys.executable, CLIENTS / "seed004_speak.py", url, out, json.dumps(SEED_004_FLOW)]
    result = run_client(argv, client_env(tmp_path / "home"), tmp_path, check=False)
    pcm = np.fromfile(out, dtype="<f4")
    check_token_socket_result(result, pcm, phrases=2)
    check_speech(pcm, 48_000, SEED_004_TEXT, whisper, 0.2)


def test_seed_004_python_long_sentence(parley: Server, whisper: Any, tmp_path: Path) -> None:  # noqa: F811
    """A long phrase by the seed's rules (no pause, under 200 characters: some 9 s of speech,
    1.7 MB at 48 kHz), words sent as the seed's best practices say: the seed's client, whose
    `websockets.connect` keeps the default `max_size` of 1 MiB, must still get all of it. A
    short sentence follows, so the long one has the time of its tokens to arrive (the client
    waits 0.5 s after each token and only 1 s after the flush)."""
    long_sentence = (
        "Meanwhile the international delegation considered extraordinary improvements to "
        "transportation infrastructure throughout the metropolitan area during the extended "
        "conference."
    )
    assert len(long_sentence) < 200
    text = f"Okay. {long_sentence} Thank you all for coming today."
    out = tmp_path / "speak.f32"
    tokens = [(" " if i else "") + w for i, w in enumerate(text.split())]
    url = f"ws://127.0.0.1:{parley.port}/ws/stream"
    argv = [sys.executable, CLIENTS / "seed004_speak.py", url, out, json.dumps(tokens)]
    result = run_client(argv, client_env(tmp_path / "home"), tmp_path, check=False)
    assert result["error"] is None, result
    kinds = result["messages"]
    assert all(m["binary"] and m["bytes"] % 4 == 0 for m in kinds), kinds
    pcm = np.fromfile(out, dtype="<f4")
    check_speech(pcm, 48_000, text, whisper, 0.25)


def node() -> str:
    for name in ("node", "nodejs"):
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            if (Path(folder) / name).exists():
                return str(Path(folder) / name)
    pytest.skip("Node.js is missing: scripts/install-clients.sh installs Debian's nodejs")


@pytest.mark.parametrize(
    "query, rate, text, phrases",
    [
        (
            "",
            48_000,
            "Hello world! How are you? The library opens at nine, and closes late on Thursdays.",
            4,
        ),
        ("?sample_rate=8000", 8_000, "Just a few words, then a flush", 2),
    ],
)
def test_seed_004_node_stream_tts(
    parley: Server,
    whisper: Any,  # noqa: F811
    tmp_path: Path,
    query: str,
    rate: int,
    text: str,
    phrases: int,
) -> None:
    """The seed's `streamTTS` with `ws`, words sent as its best practices say (" " + word),
    then a flush: a Float32Array over each message must not throw; one message per phrase."""
    if not (CLIENTS / "node" / "node_modules" / "ws").is_dir():
        pytest.skip("tests/clients/node/node_modules/ws is missing: scripts/install-clients.sh")
    out = tmp_path / "stream.f32"
    tokens = [(" " if i else "") + w for i, w in enumerate(text.split())]
    url = f"ws://127.0.0.1:{parley.port}/ws/stream{query}"
    argv = [node(), CLIENTS / "node" / "stream_tts.js", url, out, json.dumps(tokens)]
    result = run_client(argv, client_env(tmp_path / "home"), CLIENTS / "node", check=False)
    pcm = np.fromfile(out, dtype="<f4")
    check_token_socket_result(result, pcm, phrases)
    check_speech(pcm, rate, text, whisper, 0.25)


# --- OpenAI's Realtime transcription socket: /v1/realtime?intent=transcription ---------------
REALTIME_SPEED = "2"  # the clients' audio, paced at twice real time
# Silence before a client's commit: pipecat's VAD stops after 0.2 s by default. (The final
# decode after a commit this soon once lost the LJSpeech clip's last words half the time.)
COMMIT_AFTER_SILENCE_S = 0.2


def joined_wav(stt_clips: list[tuple[Clip, Path]], path: Path) -> Path:
    """The clips in one 24 kHz WAV, a second of silence after each (a turn ends there)."""
    parts = []
    for _, wav in stt_clips:
        with wave.open(str(wav), "rb") as w:
            parts += [w.readframes(w.getnframes()), bytes(2 * 24_000)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(b"".join(parts))
    return path


def test_livekit_openai_realtime_stt(
    parley: Server, stt_clips: list[tuple[Clip, Path]], tmp_path: Path
) -> None:
    """`openai.STT(use_realtime=True)`, its defaults (model gpt-4o-mini-transcribe, server_vad
    with 350 ms of silence): interim transcripts come before the final, each interim is the
    start of the final that follows it (the deltas are append-only), and the finals match."""
    env = client_env(tmp_path / "home", OPENAI_API_KEY=ANY_KEY)
    wav = joined_wav(stt_clips, tmp_path / "joined.wav")
    python = client_python("livekit")
    argv = [python, CLIENTS / "livekit_realtime.py", parley.http + "/v1", wav, REALTIME_SPEED]
    events = run_client(argv, env, tmp_path)["events"]
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "INTERIM" and kinds.count("INTERIM") >= 2 and "FINAL" in kinds, events
    interims: list[str] = []
    for kind, text in events:
        if kind == "INTERIM":
            interims.append(text)
            continue
        assert all(text.startswith(i) for i in interims), (text, interims)
        interims = []
    assert not interims, events  # every turn ended with its final
    finals = [text for kind, text in events if kind == "FINAL"]
    assert wer([" ".join(c.reference for c, _ in stt_clips)], [" ".join(finals)]) <= STT_MAX_WER


def test_pipecat_openai_realtime_stt(
    parley: Server, stt_clips: list[tuple[Clip, Path]], tmp_path: Path
) -> None:
    """`OpenAIRealtimeSTTService`, its defaults (model gpt-realtime-whisper, turn detection
    null): it commits on each `VADUserStoppedSpeakingFrame` (sent after each clip and
    COMMIT_AFTER_SILENCE_S of silence); its interim frames carry the deltas, which add up to
    each final exactly."""
    env = client_env(tmp_path / "home", OPENAI_API_KEY=ANY_KEY)
    url = parley.ws.replace("/api/asr-streaming", "/v1/realtime")
    wavs = [p for _, p in stt_clips]
    python = client_python("pipecat")
    silence = str(COMMIT_AFTER_SILENCE_S)
    argv = [python, CLIENTS / "pipecat_realtime.py", url, REALTIME_SPEED, silence, *wavs]
    result = run_client(argv, env, tmp_path)
    assert not result["errors"], result
    finals, deltas = [], ""
    for kind, text in result["events"]:
        if kind == "INTERIM":
            deltas += text
        else:
            assert text == deltas and deltas, result
            finals.append(text)
            deltas = ""
    assert len(finals) == len(stt_clips), result
    check_stt(stt_clips, finals)


async def realtime_sdk_session(
    connection: Any, update: Any, chunks: list[str], commit: bool
) -> list[Any]:
    """Sends the update, then the base64 chunks (10 ms of audio each) at four times real time,
    then a commit if asked; the SDK's parsed events until the first `completed`."""
    import asyncio

    received = []
    async with connection as conn:
        await update(conn)

        async def send() -> None:
            for i, chunk in enumerate(chunks):
                await conn.input_audio_buffer.append(audio=chunk)
                if i % 10 == 9:
                    await asyncio.sleep(0.1 / 4)
            if commit:
                await conn.input_audio_buffer.commit()

        sender = asyncio.create_task(send())
        async for event in conn:
            received.append(event)
            if event.type.endswith("transcription.completed") or event.type == "error":
                break
        await sender
    return received


def check_sdk_events(events: list[Any], updated: str, added: str, reference: str) -> None:
    kinds = [e.type for e in events]
    assert kinds[:2] == ["session.created", updated], kinds
    assert "error" not in kinds, events[-1]
    item_id = events[-1].item_id
    deltas = [e for e in events if e.type.endswith("transcription.delta")]
    assert len(deltas) >= 2 and all(d.item_id == item_id for d in deltas), kinds
    assert kinds.index("input_audio_buffer.committed") < kinds.index(added) < len(kinds) - 1
    assert "".join(d.delta for d in deltas) == events[-1].transcript
    assert wer([reference], [events[-1].transcript]) <= STT_MAX_WER, events[-1].transcript


def test_openai_sdk_realtime_ga(parley: Server, stt_clips: list[tuple[Clip, Path]]) -> None:
    """`client.realtime.connect(extra_query={"intent": "transcription"})`, a GA `session.update`
    (gpt-4o-transcribe, server_vad), PCM16: speech started, deltas, stopped, committed, the
    item added, completed; every event is one the SDK parses into its own type."""
    import asyncio
    import base64

    from openai import AsyncOpenAI

    clip, wav = stt_clips[0]
    with wave.open(str(wav), "rb") as w:
        pcm = w.readframes(w.getnframes()) + bytes(2 * 24_000)
    chunks = [base64.b64encode(pcm[i : i + 480]).decode() for i in range(0, len(pcm), 480)]
    client = AsyncOpenAI(base_url=parley.http + "/v1", api_key=ANY_KEY)

    async def update(conn: Any) -> None:
        transcription = {"model": "gpt-4o-transcribe", "language": "en"}
        turn = {"type": "server_vad", "silence_duration_ms": 500}
        audio = {"input": {"transcription": transcription, "turn_detection": turn}}
        await conn.session.update(session={"type": "transcription", "audio": audio})

    connection = client.realtime.connect(extra_query={"intent": "transcription"})
    events = asyncio.run(realtime_sdk_session(connection, update, chunks, commit=False))
    check_sdk_events(events, "session.updated", "conversation.item.added", clip.reference)
    kinds = [e.type for e in events]
    assert (
        kinds.index("input_audio_buffer.speech_started")
        < kinds.index("input_audio_buffer.speech_stopped")
        < kinds.index("input_audio_buffer.committed")
    )
    assert type(events[-1]).__name__ == "ConversationItemInputAudioTranscriptionCompletedEvent"


def test_openai_sdk_realtime_beta(parley: Server, stt_clips: list[tuple[Clip, Path]]) -> None:
    """`client.beta.realtime.connect(model="whisper-1", extra_query=...)` (it sends
    `OpenAI-Beta: realtime=v1`), a beta `transcription_session.update` (PCM16, no turn
    detection), the LJSpeech clip and 0.2 s of silence, then a commit: the beta shapes come
    back (`transcription_session.updated`, `conversation.item.created`), every word in."""
    import asyncio
    import base64

    from openai import AsyncOpenAI

    clip, wav = stt_clips[1]
    with wave.open(str(wav), "rb") as w:
        pcm = w.readframes(w.getnframes()) + bytes(2 * int(24_000 * COMMIT_AFTER_SILENCE_S))
    chunks = [base64.b64encode(pcm[i : i + 480]).decode() for i in range(0, len(pcm), 480)]
    # The beta client takes its socket's scheme from `websocket_base_url` (else wss).
    client = AsyncOpenAI(
        base_url=parley.http + "/v1",
        websocket_base_url=parley.http.replace("http", "ws") + "/v1",
        api_key=ANY_KEY,
    )

    async def update(conn: Any) -> None:
        session = {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": None,
        }
        await conn.transcription_session.update(session=session)

    connection = client.beta.realtime.connect(
        model="whisper-1", extra_query={"intent": "transcription"}
    )
    events = asyncio.run(realtime_sdk_session(connection, update, chunks, commit=True))
    check_sdk_events(
        events, "transcription_session.updated", "conversation.item.created", clip.reference
    )
    assert not any("speech_" in e.type for e in events)  # the client commits
