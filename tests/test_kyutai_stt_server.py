"""Kyutai STT (`KyutaiStt`) over the real server, with a tiny random checkpoint written here.

The model is random, so its words are gibberish; what is tested is the machinery: the moshi
protocol, one `Step` per frame with the extra heads as `prs`, markers after the model delay,
slots isolated from each other and reset for a new session, config errors naming the file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import websockets

from parley.client.asr import audio_message, marker_message
from parley.protocol import asr
from tests.conftest import API_KEY, EVAL_DIR, ROOT, Server, load_clip, serving, start_server
from tests.kyutai_checkpoints import (
    AUDIO_DELAY_SECONDS,
    LocalSlot,
    recording_margins,
    write_tiny_stt_checkpoint,
)

FRAME = 1920
DELAY_TOKENS = int(AUDIO_DELAY_SECONDS * 12.5)
CLIP = EVAL_DIR / "pocketsphinx" / "librivox_0930.wav"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_stt_checkpoint(tmp_path_factory.mktemp("tiny-stt"))


@pytest.fixture(scope="module")
def kyutai_server(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[Server]:
    yield from serving(
        tmp_path_factory.mktemp("kyutai-server"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "KyutaiStt"
path = "/api/asr-streaming"
batch_size = 2
hf_repo = "{checkpoint}"
device = "cpu"
""",
    )


async def session(srv: Server, pcm: np.ndarray, marker_after_s: float = 2.0) -> list[Any]:
    """Audio as fast as the server takes it, a Marker, then silence until the Marker returns."""
    url = f"ws://127.0.0.1:{srv.port}/api/asr-streaming"
    got: list[Any] = []
    async with websockets.connect(url, additional_headers={"kyutai-api-key": API_KEY}) as ws:
        frames = [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
        for f in frames:
            await ws.send(audio_message(f))
        await ws.send(marker_message(7))
        silence = np.zeros(FRAME, np.float32)
        for _ in range(int(marker_after_s * 12.5)):
            await ws.send(audio_message(silence))
        while True:
            msg = msgpack.unpackb(await asyncio.wait_for(ws.recv(), timeout=30))
            got.append(msg)
            if msg["type"] in ("Marker", "Error"):
                break
    got.insert(0, {"frames_sent_before_marker": len(frames)})
    return got


def words_of(messages: list[Any]) -> list[tuple[str, float]]:
    return [(m["text"], m["start_time"]) for m in messages if m.get("type") == "Word"]


def test_protocol_steps_words_markers(kyutai_server: Server) -> None:
    pcm = load_clip(CLIP)
    messages = asyncio.run(session(kyutai_server, pcm))
    frames_before = messages.pop(0)["frames_sent_before_marker"]
    assert messages[0] == {"type": "Ready"}
    steps = [m for m in messages if m["type"] == "Step"]
    assert [s["step_idx"] for s in steps] == list(range(len(steps)))  # one per frame, in order
    assert all(len(s["prs"]) == 4 and all(0.0 <= p <= 1.0 for p in s["prs"]) for s in steps)
    assert messages[-1] == {"type": "Marker", "id": 7}
    # The marker waited for its audio and the model's delay.
    assert len(steps) >= frames_before + DELAY_TOKENS
    words = words_of(messages)
    assert words, "the random model produced no words at all"
    for text, start in words:
        assert text and text.strip() == text and " " not in text
        assert start >= 0.0
    starts = [s for _, s in words]
    assert starts == sorted(starts)
    ends = [m["stop_time"] for m in messages if m["type"] == "EndWord"]
    assert len(ends) == len(words) and all(e >= s for e, s in zip(ends, starts, strict=True))


def test_slots_are_isolated_and_reset(kyutai_server: Server) -> None:
    """Greedy decoding: together each session gets exactly what it gets alone; a slot reused by
    a new session starts clean."""
    a = load_clip(CLIP)
    b = np.ascontiguousarray(a[::-1])  # different audio, same length

    alone_a = words_of(asyncio.run(session(kyutai_server, a)))
    alone_b = words_of(asyncio.run(session(kyutai_server, b)))
    assert alone_a != alone_b

    async def both() -> tuple[list[Any], list[Any]]:
        ra, rb = await asyncio.gather(session(kyutai_server, a), session(kyutai_server, b))
        return ra, rb

    together_a, together_b = asyncio.run(both())
    assert words_of(together_a) == alone_a
    assert words_of(together_b) == alone_b
    again_a = words_of(asyncio.run(session(kyutai_server, a)))
    assert again_a == alone_a


def transcribe_locally(
    checkpoint: Path, clips: list[np.ndarray], batch_size: int, cpu_threads: int = 1
) -> list[list[tuple[str, float]]]:
    """The server's KyutaiStt backend in this process, each clip in its own slot and sent as
    `session` sends it (whole frames, a marker, 2 s of silence): the words of each."""
    import torch
    from moshi.utils.compile import no_compile

    from parley.backends.kyutai.checkpoint import find_files
    from parley.backends.kyutai.stt import KyutaiSttBackend

    silence = np.zeros(int(2.0 * 12.5) * FRAME, np.float32)
    threads = torch.get_num_threads()
    try:
        with no_compile():
            files = find_files({"hf_repo": str(checkpoint)})
            backend = KyutaiSttBackend(files, batch_size, cpu_threads=cpu_threads)
            slots = []
            for index, pcm in enumerate(clips):
                audio = asr.Audio(pcm[: len(pcm) // FRAME * FRAME])
                slots.append(LocalSlot(index, [audio, asr.Marker(7), asr.Audio(silence)]))
                backend.attach(slots[-1])
            for _ in range(10_000):
                if all(any(isinstance(m, asr.Marker) for m in s.out) for s in slots):
                    break
                backend.step(slots)
    finally:
        torch.set_num_threads(threads)  # the backend sets it for the whole process
    return [[(m.text, m.start_time) for m in s.out if isinstance(m, asr.Word)] for s in slots]


def test_words_do_not_hang_on_float_noise(kyutai_server: Server, checkpoint: Path) -> None:
    """The exact comparisons of this file hold on any CPU: no code or token of the clip is
    near a tie (margins far above float noise), and what another CPU does to the floats,
    simulated (the same stream alone in a batch of 1, beside others in a batch of 3, on 2
    threads: its floats move by ~1e-6 in each), leaves every word as it was."""
    a = load_clip(CLIP)
    b = np.ascontiguousarray(a[::-1])
    with recording_margins() as margins:
        reference = transcribe_locally(checkpoint, [a, b], batch_size=2)
    margins.assert_wide()
    assert reference[0] == words_of(asyncio.run(session(kyutai_server, a)))  # the same decisions
    assert reference[0] != reference[1]
    assert transcribe_locally(checkpoint, [a], batch_size=1) == reference[:1]
    shorter = np.ascontiguousarray(a[: len(a) // 2])
    assert transcribe_locally(checkpoint, [shorter, b, a], batch_size=3)[:0:-1] == reference
    assert transcribe_locally(checkpoint, [a, b], batch_size=2, cpu_threads=2) == reference


def test_bad_input_gets_one_error_and_others_carry_on(kyutai_server: Server) -> None:
    """The malformed messages of the Whisper suite, one session each, while a healthy session
    runs beside them in the other slot and gets exactly the words it gets alone."""
    from tests.test_asr_server import BAD_MESSAGES, bad_session, check_one_error

    clip = load_clip(CLIP)
    alone = words_of(asyncio.run(session(kyutai_server, clip)))
    url = f"ws://127.0.0.1:{kyutai_server.port}/api/asr-streaming"

    async def run() -> list[Any]:
        healthy = asyncio.create_task(session(kyutai_server, clip))
        for name, payload in BAD_MESSAGES.items():
            check_one_error(name, await asyncio.wait_for(bad_session(url, payload), 30))
        return await healthy

    assert words_of(asyncio.run(run())) == alone
    assert kyutai_server.wait_slots_free() < 1.0


def test_post_flushes_with_its_marker(kyutai_server: Server) -> None:
    data = CLIP.read_bytes()
    req = urllib.request.Request(
        kyutai_server.http + "/api/asr-streaming", data=data, headers={"kyutai-api-key": API_KEY}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.loads(r.read())
    assert out and {m["type"] for m in out} <= {"Word", "EndWord"}
    info = json.loads(urllib.request.urlopen(kyutai_server.http + "/api/modules_info").read())
    assert info[0]["type"] == "KyutaiStt" and info[0]["extra_heads"] == 4


def test_repo_id_from_the_local_hf_cache_and_delay_override(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hf_repo = "owner/name"` is found in the Hugging Face cache with the hub off, as files
    fetched earlier with `huggingface-cli download` would be; `asr_delay_in_tokens` moves the
    step at which a marker comes back."""
    cache = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--parley-tests--tiny-stt"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in checkpoint.iterdir():
        (snapshot / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extra = DELAY_TOKENS + 10
    srv = start_server(
        tmp_path,
        f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "KyutaiStt"
batch_size = 1
hf_repo = "parley-tests/tiny-stt"
asr_delay_in_tokens = {extra}
""",
    )
    try:
        info = srv.modules_info()[0]
        assert info["type"] == "KyutaiStt" and info["delay_tokens"] == extra
        assert str(snapshot) in str(info["model"])
        messages = asyncio.run(session(srv, load_clip(CLIP), marker_after_s=3.0))
        frames_before = messages.pop(0)["frames_sent_before_marker"]
        steps = [m for m in messages if m["type"] == "Step"]
        assert messages[-1] == {"type": "Marker", "id": 7}
        assert len(steps) == frames_before + extra + 1
    finally:
        srv.stop()


def serve_fails(tmp: Path, config: str) -> str:
    cfg = tmp / "bad.toml"
    cfg.write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--config", str(cfg), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    return proc.stderr


def test_bad_paths_fail_at_start_naming_the_file(tmp_path: Path, checkpoint: Path) -> None:
    missing_dir = tmp_path / "no-such-checkpoint"
    err = serve_fails(tmp_path, f'[modules.asr]\ntype = "KyutaiStt"\nhf_repo = "{missing_dir}"\n')
    assert str(missing_dir) in err
    missing_file = tmp_path / "nothing.safetensors"
    err = serve_fails(
        tmp_path,
        f'[modules.asr]\ntype = "KyutaiStt"\nhf_repo = "{checkpoint}"\n'
        f'moshi_weight = "{missing_file}"\n',
    )
    assert str(missing_file) in err and "moshi_weight" in err


async def realtime_session(srv: Server, pcm: np.ndarray, turn_detection: Any) -> list[Any]:
    """OpenAI's Realtime transcription socket: the update, the audio as fast as the server
    takes it, a commit; the events until that commit's item is completed."""
    url = f"ws://127.0.0.1:{srv.port}/v1/realtime?intent=transcription"
    got: list[Any] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        session = {"type": "transcription", "audio": {"input": {"turn_detection": turn_detection}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        s16 = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
        for i in range(0, len(s16), 2 * FRAME):
            audio = base64.b64encode(s16[i : i + 2 * FRAME]).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        committed = None
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            got.append(event)
            assert event["type"] != "error", event
            if event["type"] == "input_audio_buffer.committed" and got[-2]["type"] != (
                "input_audio_buffer.speech_stopped"
            ):
                committed = event["item_id"]
            if event["type"].endswith("transcription.completed") and event["item_id"] == committed:
                return got


@pytest.mark.parametrize("turn_detection", [None, {"type": "server_vad"}])
def test_realtime_socket_on_kyutai(kyutai_server: Server, turn_detection: Any) -> None:
    """The Realtime socket on a Kyutai module: deltas per word, each item's transcript equal
    to its deltas; with server_vad, turn ends read from the pause heads (a random model's, so
    how many is not known) and each speech_started comes before its item's turn end."""
    events = asyncio.run(realtime_session(kyutai_server, load_clip(CLIP), turn_detection))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["session.created", "session.updated"]
    completed = [e for e in events if e["type"].endswith("transcription.completed")]
    for done in completed:
        deltas = [
            e["delta"]
            for e in events
            if e["type"].endswith("transcription.delta") and e["item_id"] == done["item_id"]
        ]
        assert "".join(deltas) == done["transcript"]
    assert any(e["type"].endswith("transcription.delta") for e in events), "no words at all"
    if turn_detection is None:
        assert len(completed) == 1 and not any("speech_" in k for k in kinds)
    for stopped in (e for e in events if e["type"] == "input_audio_buffer.speech_stopped"):
        started = [
            e
            for e in events
            if e["type"] == "input_audio_buffer.speech_started"
            and e["item_id"] == stopped["item_id"]
        ]
        assert len(started) == 1 and started[0]["audio_start_ms"] < stopped["audio_end_ms"]
