"""Async client for `/api/tts_streaming`, speaking the protocol as Kyutai's own script does.

`speak` sends one msgpack `Text` per word (optionally paced like an LLM), then `Eos`, and reads
`Audio`/`OggOpus` frames and `Text` word times until the server closes the socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import msgpack
import numpy as np
import websockets

from parley.protocol import tts
from parley.protocol.common import ErrorMessage, Ready

SAMPLE_RATE_HZ = 24_000


class ServerError(RuntimeError):
    """The server sent an `Error` message (or closed with an error reason)."""


@dataclass
class SpokenWord:
    text: str
    start_s: float
    stop_s: float


@dataclass
class SpeechResult:
    frames: list[np.ndarray] = field(default_factory=list)
    words: list[SpokenWord] = field(default_factory=list)
    opus_pages: bytes = b""
    ready: bool = False
    started_at: float = 0.0  # monotonic: connection open
    first_word_sent_at: float | None = None
    last_word_sent_at: float | None = None
    word_sent_at: list[float] = field(default_factory=list)  # monotonic, per word sent
    frame_received_at: list[float] = field(default_factory=list)

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)

    @property
    def first_audio_at(self) -> float | None:
        return self.frame_received_at[0] if self.frame_received_at else None


def tts_url(base: str, voice: str | None, fmt: str = "PcmMessagePack", path: str = "") -> str:
    params = {"format": fmt}
    if voice:
        params["voice"] = voice
    return f"{base.rstrip('/')}{path or '/api/tts_streaming'}?{urlencode(params)}"


async def speak(
    base_url: str,
    words: Iterable[str],
    *,
    voice: str | None = None,
    fmt: str = "PcmMessagePack",
    api_key: str = "public_token",
    words_per_s: float | None = None,
) -> SpeechResult:
    """Streams `words` (paced at `words_per_s` if given) and collects what comes back."""
    result = SpeechResult(started_at=time.monotonic())
    opus = _OpusDecoder() if "OggOpus" in fmt else None
    async with websockets.connect(
        tts_url(base_url, voice, fmt),
        additional_headers={"kyutai-api-key": api_key},
        max_size=None,
    ) as ws:

        async def send() -> None:
            for word in words:
                now = time.monotonic()
                if result.first_word_sent_at is None:
                    result.first_word_sent_at = now
                result.last_word_sent_at = now
                await ws.send(msgpack.packb({"type": "Text", "text": word}))
                result.word_sent_at.append(time.monotonic())
                if words_per_s:
                    await asyncio.sleep(1.0 / words_per_s)
            await ws.send(msgpack.packb({"type": "Eos"}))

        sender = asyncio.create_task(send())
        try:
            async for message in ws:
                now = time.monotonic()
                assert isinstance(message, bytes)
                if fmt == "Pcm":
                    result.frames.append(np.frombuffer(message, dtype="<f4").copy())
                    result.frame_received_at.append(now)
                    continue
                if fmt == "OggOpus":
                    result.opus_pages += message
                    result.frames.append(opus.decode(message) if opus else np.zeros(0))
                    result.frame_received_at.append(now)
                    continue
                msg = tts.decode_server(message)
                if isinstance(msg, Ready):
                    result.ready = True
                elif isinstance(msg, tts.Audio):
                    result.frames.append(msg.pcm)
                    result.frame_received_at.append(now)
                elif isinstance(msg, tts.OggOpus):
                    result.opus_pages += msg.data
                    result.frames.append(opus.decode(msg.data) if opus else np.zeros(0))
                    result.frame_received_at.append(now)
                elif isinstance(msg, tts.WordTimes):
                    result.words.append(SpokenWord(msg.text, msg.start_s, msg.stop_s))
                elif isinstance(msg, ErrorMessage):
                    raise ServerError(msg.message)
        finally:
            sender.cancel()
        if ws.close_code not in (1000, None):
            raise ServerError(f"closed with {ws.close_code}: {ws.close_reason}")
    return result


class _OpusDecoder:
    """Ogg/Opus pages -> PCM, page by page (sphn's reader wants them incrementally)."""

    def __init__(self) -> None:
        import sphn

        self._reader = sphn.OpusStreamReader(SAMPLE_RATE_HZ)

    def decode(self, pages: bytes) -> np.ndarray:
        return np.asarray(self._reader.append_bytes(pages), dtype=np.float32)
