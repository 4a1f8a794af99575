"""`parley.client` and the `parley transcribe` / `parley speak` commands against a real server
(Whisper tiny.en and the Piper voice, two slots each). Speech that comes back is transcribed
with faster-whisper in this process; no sound device here, so `--play`/`--mic` must fail
cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import parley.client as pc
from parley.audio.decode import decode_file, resample
from parley.bench.eval_clips import Clip, english_clips
from parley.bench.wer import wer
from tests.conftest import EVAL_DIR, ROOT, Server, load_clip, packaged_model_dir, start_server

SLOTS = 2
CLIPS = {c.id: c for c in english_clips(EVAL_DIR)}
JFK: Clip = CLIPS["fasterwhisper_jfk"]
LJ: Clip = CLIPS["ljspeech_LJ001-0004"]
TEXT = (
    "Please remember to water the plants on Tuesday. The ones by the kitchen window need more "
    "light than the others."
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("client")
    server = start_server(
        tmp,
        f"""
authorized_ids = ["public_token"]
[modules.asr]
type = "WhisperStreaming"
batch_size = {SLOTS}
model = "{packaged_model_dir()}"
post_timeout_s = 1.0
[modules.tts]
type = "PiperTts"
batch_size = {SLOTS}
post_timeout_s = 1.0
""",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def whisper() -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(packaged_model_dir(), device="cpu", compute_type="int8", cpu_threads=2)


def heard(model: Any, pcm_24k: np.ndarray) -> str:
    segments, _ = model.transcribe(resample(pcm_24k, 24_000, 16_000), language="en", beam_size=5)
    return " ".join(s.text.strip() for s in segments)


def parley(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def dead_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# --- the library ---------------------------------------------------------------------------
def test_stt_stream_words_and_end_of_turn(srv: Server) -> None:
    """The raw stream: audio and a marker in; words with times, Step.prs, the marker back."""
    pcm = load_clip(JFK.path)

    async def run() -> tuple[list[pc.TranscriptWord], list[pc.Step], list[int]]:
        words: list[pc.TranscriptWord] = []
        steps: list[pc.Step] = []
        markers: list[int] = []
        async with await pc.SttStream.open(srv.http) as stream:
            for off in range(0, len(pcm), 24_000):
                await stream.send_audio(pcm[off : off + 24_000])
            await stream.send_audio(np.zeros(24_000, np.float32))  # a pause: end of turn
            await stream.send_marker(7)
            async for msg in stream:
                if isinstance(msg, pc.Word):
                    words.append(pc.TranscriptWord(msg.text, msg.start_time))
                elif isinstance(msg, pc.EndWord):
                    words[-1].stop_s = msg.stop_time
                elif isinstance(msg, pc.Step):
                    steps.append(msg)
                elif isinstance(msg, pc.Marker):
                    markers.append(msg.id)
                    break
        return words, steps, markers

    words, steps, markers = asyncio.run(run())
    assert markers == [7]
    assert wer([JFK.reference], [" ".join(w.text for w in words)]) <= 0.25
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and all(w.stop_s is not None for w in words)
    assert 0 <= starts[0] and words[-1].stop_s is not None and words[-1].stop_s <= 11.5
    assert len(steps) >= int(len(pcm) / 1920) and all(len(s.prs) == 3 for s in steps)
    assert steps[-1].prs[2] > 0.5  # after a second of silence: the user is done


def test_transcribe_helpers_sync_and_one_shot(srv: Server) -> None:
    live: list[str] = []
    data = LJ.path.read_bytes()
    streamed = pc.transcribe_sync(data, url=srv.http, on_word=lambda w: live.append(w.text))
    assert wer([LJ.reference], [streamed.text]) <= 0.25
    assert live == [w.text for w in streamed.words]
    assert abs(streamed.duration_s - LJ.duration_s) < 0.1
    once = pc.transcribe_once_sync(data, url=srv.http)
    assert wer([LJ.reference], [" ".join(w.text for w in once)]) <= 0.25
    assert all(w.stop_s is not None and w.stop_s >= w.start_s for w in once)
    # The async form, from samples rather than file bytes.
    again = asyncio.run(pc.transcribe(load_clip(JFK.path), url=srv.http))
    assert wer([JFK.reference], [again.text]) <= 0.25


def test_tts_stream_frames_and_word_times(srv: Server, whisper: Any) -> None:
    words = TEXT.split()

    async def run() -> tuple[list[np.ndarray], list[pc.SpokenWord]]:
        frames: list[np.ndarray] = []
        spoken: list[pc.SpokenWord] = []
        async with await pc.TtsStream.open(srv.http) as stream:

            async def feed() -> None:
                for w in words:  # as an LLM would: a word at a time
                    await stream.send(w)
                    await asyncio.sleep(0.02)
                await stream.end()

            feeder = asyncio.create_task(feed())
            async for item in stream:
                (spoken if isinstance(item, pc.SpokenWord) else frames).append(item)
            await feeder
        return frames, spoken

    frames, spoken = asyncio.run(run())
    assert frames and all(len(f) == 1920 for f in frames)
    assert [w.text for w in spoken] == words
    duration_s = len(frames) * 1920 / 24_000
    assert all(0 <= w.start_s <= w.stop_s <= duration_s for w in spoken)
    assert wer([TEXT], [heard(whisper, np.concatenate(frames))]) <= 0.2
    # The whole-text helper gives the same words.
    result = pc.synthesize_sync(words, url=srv.http)
    assert [w.text for w in result.words] == words
    assert abs(len(result.pcm) - len(frames) * 1920) < 0.3 * 24_000


def test_tts_one_shot(srv: Server, whisper: Any) -> None:
    synthesis = pc.synthesize_once_sync(
        ["Turn left at the bakery.", "Then walk two blocks."], url=srv.http
    )
    assert synthesis.wav[:4] == b"RIFF"
    assert [
        w.text for w in synthesis.words
    ] == "Turn left at the bakery. Then walk two blocks.".split()
    assert (
        wer(["turn left at the bakery then walk two blocks"], [heard(whisper, synthesis.pcm)])
        <= 0.25
    )


def test_token_socket(srv: Server, whisper: Any) -> None:
    tokens = ["Good", " morning", ",", " how", " are", " you", " today", "?"]
    speech = pc.speak_tokens_sync(tokens, url=srv.http, sample_rate=16_000)
    assert speech.sample_rate == 16_000
    assert len(speech.pcm) > 0.8 * 16_000
    assert (
        wer(
            ["good morning how are you today"],
            [heard(whisper, resample(speech.pcm, 16_000, 24_000))],
        )
        <= 0.34
    )


# --- errors --------------------------------------------------------------------------------
def test_unreachable_and_unauthorized(srv: Server) -> None:
    dead = dead_url()
    with pytest.raises(pc.ServerUnreachable, match="cannot reach"):
        pc.transcribe_sync(np.zeros(24_000, np.float32), url=dead)
    with pytest.raises(pc.ServerUnreachable):
        pc.synthesize_once_sync("hi", url=dead)
    with pytest.raises(pc.ServerUnreachable):
        asyncio.run(pc.TtsStream.open(dead))
    with pytest.raises(pc.Unauthorized):
        asyncio.run(pc.SttStream.open(srv.http, api_key="wrong"))
    with pytest.raises(pc.Unauthorized):
        pc.synthesize_sync(["hi"], url=srv.http, api_key="wrong")
    with pytest.raises(pc.Unauthorized):
        pc.transcribe_once_sync(JFK.path.read_bytes(), url=srv.http, api_key="wrong")
    with pytest.raises(pc.ServerError, match="unknown voice") as exc:
        pc.synthesize_sync(["hi"], url=srv.http, voice="nobody")
    assert not isinstance(exc.value, pc.NoFreeChannels)
    for cls in (pc.ServerUnreachable, pc.Unauthorized, pc.ServerError, pc.NoFreeChannels):
        assert issubclass(cls, pc.ParleyError)


def test_no_free_channels(srv: Server) -> None:
    async def run() -> None:
        stt = [await pc.SttStream.open(srv.http) for _ in range(SLOTS)]
        tts = [await pc.TtsStream.open(srv.http) for _ in range(SLOTS)]
        try:
            with pytest.raises(pc.NoFreeChannels):
                await pc.SttStream.open(srv.http)
            with pytest.raises(pc.NoFreeChannels):
                await pc.TtsStream.open(srv.http)
            with pytest.raises(pc.NoFreeChannels) as exc:  # POST: 503 after post_timeout_s
                await pc.synthesize_once("hi", url=srv.http)
            assert exc.value.status == 503
            cli = await asyncio.to_thread(
                parley, "speak", "hi", "-o", "/dev/null", "--url", srv.http
            )
            assert cli.returncode == 1 and "no free channels" in cli.stderr
            assert "Traceback" not in cli.stderr
        finally:
            for s in [*stt, *tts]:
                await s.close()

    asyncio.run(run())
    srv.wait_slots_free(3.0)


# --- the CLI -------------------------------------------------------------------------------
def test_cli_transcribe_formats(srv: Server) -> None:
    out = parley("transcribe", str(JFK.path), "--url", srv.http, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert wer([JFK.reference], [data["text"]]) <= 0.25
    assert data["words"] and all(w["start_s"] <= w["stop_s"] for w in data["words"])
    assert abs(data["duration_s"] - JFK.duration_s) < 0.1
    assert wer([JFK.reference], [out.stderr]) <= 0.25  # words shown live on stderr

    srt = parley("transcribe", str(LJ.path), "--url", srv.http, "--format", "srt")
    assert srt.returncode == 0, srt.stderr
    cues = re.findall(
        r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n", srt.stdout
    )
    assert cues and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert all(c[1] <= c[2] for c in cues)
    assert wer([LJ.reference], [" ".join(c[3] for c in cues)]) <= 0.25

    text = parley("transcribe", str(LJ.path), "--url", srv.http)
    lines = re.findall(r"\[\s*([\d.]+) -\s*([\d.]+)\] (.+)", text.stdout)
    assert text.returncode == 0 and lines
    assert float(lines[-1][1]) <= LJ.duration_s + 0.5
    assert wer([LJ.reference], [" ".join(t for _, _, t in lines)]) <= 0.25


METRICS = {
    "ttfa": r"time to first audio: ([\d.]+) s",
    "generation": r"generation time: ([\d.]+) s for ([\d.]+) s of audio",
    "playback": r"playback time: ([\d.]+) s",
    "underruns": r"buffer underruns: (\d+)",
}


def metrics(stdout: str) -> dict[str, tuple[str, ...]]:
    found = {name: re.search(pattern, stdout) for name, pattern in METRICS.items()}
    assert all(found.values()), stdout
    return {name: m.groups() for name, m in found.items() if m}


def wav_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24_000, 1, 2)
    return decode_file(path.read_bytes(), 24_000)


def test_cli_speak_to_wav(srv: Server, whisper: Any, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    run = parley("speak", TEXT, "-o", str(out), "--url", srv.http)
    assert run.returncode == 0, run.stderr
    pcm = wav_pcm(out)
    assert wer([TEXT], [heard(whisper, pcm)]) <= 0.2
    m = metrics(run.stdout)
    ttfa, (generation, audio_s) = float(m["ttfa"][0]), map(float, m["generation"])
    assert 0 < ttfa <= generation
    assert abs(audio_s - len(pcm) / 24_000) < 0.01
    assert float(m["playback"][0]) >= audio_s - 0.01  # real time, plus any stalls
    assert int(m["underruns"][0]) >= 0


def test_cli_speak_from_stdin(srv: Server, whisper: Any, tmp_path: Path) -> None:
    out = tmp_path / "stdin.wav"
    lines = "Hello there, this text\ncomes from standard input.\n"
    run = parley("speak", "-", "-o", str(out), "--url", srv.http, stdin=lines)
    assert run.returncode == 0, run.stderr
    assert wer([lines], [heard(whisper, wav_pcm(out))]) <= 0.25
    metrics(run.stdout)


def test_cli_without_sound_device(srv: Server) -> None:
    for args in (["speak", "hello", "--play"], ["transcribe", "--mic"]):
        run = parley(*args, "--url", srv.http)
        assert run.returncode == 2, (args, run.stderr)
        assert "PortAudio" in run.stderr or "sound" in run.stderr
        assert "Traceback" not in run.stderr


def test_cli_server_errors(srv: Server, tmp_path: Path) -> None:
    dead = dead_url()
    for args in (
        ["transcribe", str(JFK.path), "--url", dead],
        ["speak", "hello", "-o", str(tmp_path / "x.wav"), "--url", dead],
    ):
        run = parley(*args)
        assert run.returncode == 1 and "cannot reach the server" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    run = parley("transcribe", str(JFK.path), "--url", srv.http, "--api-key", "wrong")
    assert run.returncode == 1 and "refused the API key" in run.stderr
    assert "Traceback" not in run.stderr
