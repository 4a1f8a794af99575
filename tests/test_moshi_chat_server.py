"""`/api/chat` (MoshiChat) over the real server with a tiny random Moshi written here.

The model is random: what is tested is the pipeline and the protocol — the handshake, Opus
audio coming back at 12.5 frames per second of input, text pieces that are UTF-8, two sessions
at once, a full house, malformed and oversized messages, audio sent too far ahead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sphn
import websockets

from tests.conftest import API_KEY, EVAL_DIR, Server, load_clip, serving
from tests.kyutai_checkpoints import write_tiny_moshi_checkpoint

FRAME = 1920
CLIP = EVAL_DIR / "pocketsphinx" / "librivox_0930.wav"


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    checkpoint = write_tiny_moshi_checkpoint(tmp_path_factory.mktemp("tiny-moshi"))
    yield from serving(
        tmp_path_factory.mktemp("chat-server"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.chat]
type = "MoshiChat"
batch_size = 2
hf_repo = "{checkpoint}"
""",
    )


def chat_url(srv: Server) -> str:
    return f"ws://127.0.0.1:{srv.port}/api/chat?auth_id={API_KEY}"


async def converse(srv: Server, pcm: np.ndarray, settle_s: float = 2.0) -> dict[str, Any]:
    """Sends `pcm` as Ogg/Opus in 80 ms frames (as fast as possible), collects the replies."""
    writer = sphn.OpusStreamWriter(24_000)
    reader = sphn.OpusStreamReader(24_000)
    out: dict[str, Any] = {"first": None, "audio": [], "text": [], "kinds": set()}
    async with websockets.connect(chat_url(srv), max_size=None) as ws:
        out["first"] = await asyncio.wait_for(ws.recv(), timeout=10)

        async def receive() -> None:
            while True:
                msg = await ws.recv()
                assert isinstance(msg, bytes)
                out["kinds"].add(msg[0])
                if msg[0] == 1:
                    out["audio"].append(np.asarray(reader.append_bytes(msg[1:])))
                elif msg[0] == 2:
                    out["text"].append(msg[1:].decode("utf-8"))

        receiver = asyncio.create_task(receive())
        for i in range(0, len(pcm) - FRAME + 1, FRAME):
            pages = bytes(writer.append_pcm(pcm[i : i + FRAME]))
            if pages:
                await ws.send(b"\x01" + pages)
        await asyncio.sleep(settle_s)
        receiver.cancel()
    out["pcm"] = np.concatenate(out["audio"]) if out["audio"] else np.zeros(0, np.float32)
    return out


def test_handshake_then_audio_at_the_input_rate(chat_server: Server) -> None:
    pcm = load_clip(CLIP)
    got = asyncio.run(converse(chat_server, pcm))
    assert got["first"] == b"\x00"
    assert got["kinds"] <= {1, 2}
    sent_s = len(pcm) / 24_000
    heard_s = len(got["pcm"]) / 24_000
    # One frame of Moshi per frame of user audio, minus the model's initial delay and what
    # the Opus encoder/decoder still hold.
    assert sent_s - 1.0 < heard_s <= sent_s + 0.1, (sent_s, heard_s)
    assert np.isfinite(got["pcm"]).all()
    assert all(isinstance(t, str) for t in got["text"])


def test_two_sessions_at_once_and_full_house(chat_server: Server) -> None:
    pcm = load_clip(CLIP)

    async def run() -> tuple[dict[str, Any], dict[str, Any], bytes]:
        a = asyncio.create_task(converse(chat_server, pcm, settle_s=3.0))
        b = asyncio.create_task(converse(chat_server, pcm[::-1].copy(), settle_s=3.0))
        await asyncio.sleep(1.0)
        async with websockets.connect(chat_url(chat_server)) as third:
            refused = await asyncio.wait_for(third.recv(), timeout=10)
        return await a, await b, refused  # type: ignore[return-value]

    a, b, refused = asyncio.run(run())
    assert refused == b"\x05no free channels"
    for got in (a, b):
        assert got["first"] == b"\x00" and len(got["pcm"]) > 24_000


def _opus_of(seconds: float) -> list[bytes]:
    """Audio messages carrying `seconds` of quiet noise as Ogg/Opus."""
    writer = sphn.OpusStreamWriter(24_000)
    noise = np.random.default_rng(0).normal(0, 0.05, int(seconds * 24_000)).astype(np.float32)
    pages = (bytes(writer.append_pcm(noise[i : i + FRAME])) for i in range(0, len(noise), FRAME))
    return [b"\x01" + p for p in pages if p]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("over 1 MiB", b"exceeds"),
        ("40 s ahead of real time", b"ahead of real time"),
        ("not Ogg", b"Ogg pages"),
    ],
)
def test_bad_messages_get_one_error_and_free_the_slot(
    chat_server: Server, case: str, expected: bytes
) -> None:
    messages = {
        "over 1 MiB": [b"\x01OggS" + bytes(1024 * 1024)],
        "40 s ahead of real time": _opus_of(40.0),
        "not Ogg": [b"\x01" + b"RIFF" + bytes(range(200))],
    }[case]

    async def run() -> list[bytes]:
        got = []
        async with websockets.connect(chat_url(chat_server), max_size=None) as ws:
            got.append(await ws.recv())
            try:
                for m in messages:
                    await ws.send(m)
                while True:
                    reply = await asyncio.wait_for(ws.recv(), timeout=10)
                    if reply[:1] != b"\x01":  # Moshi's audio may come before the error
                        got.append(reply)
            except websockets.ConnectionClosed:
                pass
        return got

    got = asyncio.run(run())
    errors = [m for m in got if m[:1] == b"\x05"]
    assert got[0] == b"\x00" and len(errors) == 1 and errors[0] == got[-1], got
    assert expected in errors[0], errors
    assert chat_server.wait_slots_free() < 1.0


def test_unauthorized(chat_server: Server) -> None:
    async def run() -> None:
        await websockets.connect(f"ws://127.0.0.1:{chat_server.port}/api/chat?auth_id=nope")

    with pytest.raises(websockets.InvalidStatus) as exc:
        asyncio.run(run())
    assert exc.value.response.status_code == 401
