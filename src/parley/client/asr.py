"""Async client for `/api/asr-streaming`, speaking the protocol as Kyutai's own scripts do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgpack
import numpy as np
import websockets

from parley.protocol import asr
from parley.protocol.common import ErrorMessage

FRAME_SAMPLES = 1920
SAMPLE_RATE_HZ = 24_000


class ServerError(RuntimeError):
    """The server sent an `Error` message."""


@dataclass
class TranscriptWord:
    text: str
    start_s: float
    stop_s: float | None = None
    received_at: float = 0.0  # time.monotonic() on arrival


@dataclass
class StreamResult:
    words: list[TranscriptWord] = field(default_factory=list)
    steps: int = 0
    max_buffered_pcm: int = 0  # while the audio itself was being sent (not the silence after)
    last_prs: list[float] = field(default_factory=list)
    frame_sent_at: list[float] = field(default_factory=list)  # monotonic time per frame sent

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def audio_message(pcm: np.ndarray) -> bytes:
    # Kyutai's clients send float32 lists (use_single_float=True).
    return msgpack.packb({"type": "Audio", "pcm": [float(x) for x in pcm]}, use_single_float=True)


def marker_message(marker_id: int) -> bytes:
    return msgpack.packb({"type": "Marker", "id": marker_id})


async def connect(url: str, api_key: str) -> websockets.ClientConnection:
    return await websockets.connect(
        url, additional_headers={"kyutai-api-key": api_key}, max_size=None
    )


async def iter_messages(ws: websockets.ClientConnection) -> AsyncIterator[asr.ServerMessage]:
    async for raw in ws:
        if isinstance(raw, bytes):
            yield asr.decode_server(raw)


async def transcribe_stream(
    url: str,
    pcm_24k: np.ndarray,
    *,
    api_key: str = "public_token",
    realtime: bool = True,
    lead_silence_s: float = 1.0,
    tail_silence_s: int = 5,
    after_marker_silence_s: int = 35,
) -> StreamResult:
    """Streams audio exactly as Kyutai's `stt_from_file_rust_server.py` does: one message of
    1 s of silence, then 1920-sample `Audio` messages (paced in real time, or not), then
    `tail_silence_s` one-second messages of silence, a `Marker`, and more silence until the
    marker comes back."""
    result = StreamResult()
    second = np.zeros(SAMPLE_RATE_HZ, np.float32)
    async with await connect(url, api_key) as ws:
        marker_seen = asyncio.Event()
        audio_done = asyncio.Event()

        async def send() -> None:
            if lead_silence_s:
                await ws.send(audio_message(np.zeros(int(lead_silence_s * SAMPLE_RATE_HZ))))
            start = time.monotonic()
            for off in range(0, len(pcm_24k), FRAME_SAMPLES):
                await ws.send(audio_message(pcm_24k[off : off + FRAME_SAMPLES]))
                result.frame_sent_at.append(time.monotonic())
                if realtime:
                    delay = start + (off + FRAME_SAMPLES) / SAMPLE_RATE_HZ - time.monotonic()
                    await asyncio.sleep(max(delay, 0.001))
            audio_done.set()  # the silence below is sent faster than real time, as Kyutai's does
            for _ in range(tail_silence_s):
                await ws.send(audio_message(second))
            await ws.send(marker_message(1))
            for _ in range(after_marker_silence_s):
                if marker_seen.is_set():
                    break
                await ws.send(audio_message(second))

        sender = asyncio.create_task(send())
        try:
            async for msg in iter_messages(ws):
                now = time.monotonic()
                if isinstance(msg, asr.Word):
                    result.words.append(TranscriptWord(msg.text, msg.start_time, None, now))
                elif isinstance(msg, asr.EndWord) and result.words:
                    result.words[-1].stop_s = msg.stop_time
                elif isinstance(msg, asr.Step):
                    result.steps += 1
                    if not audio_done.is_set():
                        result.max_buffered_pcm = max(result.max_buffered_pcm, msg.buffered_pcm)
                    result.last_prs = msg.prs
                elif isinstance(msg, asr.Marker):
                    marker_seen.set()
                    break
                elif isinstance(msg, ErrorMessage):
                    raise ServerError(msg.message)
        finally:
            await sender
    # Stream times include the lead silence; report them relative to the clip.
    for w in result.words:
        w.start_s -= lead_silence_s
        if w.stop_s is not None:
            w.stop_s -= lead_silence_s
    return result
