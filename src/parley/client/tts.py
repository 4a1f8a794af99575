"""Async client for `/api/tts_streaming`, speaking the protocol as Kyutai's own script does.

`speak` sends one msgpack `Text` per word (optionally paced like an LLM), then `Eos`, and reads
`Audio`/`OggOpus` frames and `Text` word times until the server closes the socket.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
import websockets

from parley.client.connection import (
    DEFAULT_API_KEY,
    DEFAULT_URL,
    SocketSession,
    finish_task,
    http_request_async,
    http_url,
    open_websocket,
    ws_url,
)
from parley.client.errors import ServerError as ServerError  # re-exported: the older name
from parley.client.errors import server_error
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.speech import AudioFrame, SpokenWord
from parley.protocol import tts


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
    async with await open_websocket(tts_url(ws_url(base_url, ""), voice, fmt), api_key) as ws:

        async def send() -> None:
            for word in words:
                now = time.monotonic()
                if result.first_word_sent_at is None:
                    result.first_word_sent_at = now
                result.last_word_sent_at = now
                await ws.send(tts.encode_client(tts.Text(word)))
                result.word_sent_at.append(time.monotonic())
                if words_per_s:
                    await asyncio.sleep(1.0 / words_per_s)
            await ws.send(tts.encode_client(tts.Eos()))

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
                elif isinstance(msg, AudioFrame):
                    result.frames.append(msg.pcm)
                    result.frame_received_at.append(now)
                elif isinstance(msg, tts.OggOpus):
                    result.opus_pages += msg.data
                    result.frames.append(opus.decode(msg.data) if opus else np.zeros(0))
                    result.frame_received_at.append(now)
                elif isinstance(msg, SpokenWord):
                    result.words.append(msg)
                elif isinstance(msg, ErrorMessage):
                    raise server_error(msg.message)
        finally:
            sender.cancel()
        if ws.close_code not in (1000, None):
            raise server_error(ws.close_reason or f"closed with {ws.close_code}")
    return result


class _OpusDecoder:
    """Ogg/Opus pages -> PCM, page by page (sphn's reader wants them incrementally)."""

    def __init__(self) -> None:
        import sphn

        self._reader = sphn.OpusStreamReader(SAMPLE_RATE_HZ)

    def decode(self, pages: bytes) -> np.ndarray:
        return np.asarray(self._reader.append_bytes(pages), dtype=np.float32)


# --- the library API: an open stream, whole-text helpers, the one-shot POST -----------------
TTS_PATH = "/api/tts_streaming"


class TtsStream(SocketSession):
    """An open `/api/tts_streaming` session (format `PcmMessagePack`).

    Send words as they come (`send`), then `end()`; iterating yields each 80 ms audio frame
    (a float32 numpy array at 24 kHz) and a `SpokenWord` before the frame its word starts in,
    until the server closes the socket after the last frame. An `Error` is raised.
    """

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        api_key: str = DEFAULT_API_KEY,
        voice: str | None = None,
        path: str = TTS_PATH,
    ) -> TtsStream:
        """Connects and waits for `Ready` (an unknown voice or a full server raises here)."""
        ws = await open_websocket(tts_url(ws_url(url, ""), voice, "PcmMessagePack", path), api_key)
        try:
            raw = await ws.recv()
        except websockets.ConnectionClosed as exc:
            raise ServerError(f"the server closed the stream at once ({exc})") from None
        first = tts.decode_server(raw if isinstance(raw, bytes) else raw.encode())
        if isinstance(first, ErrorMessage):
            await ws.close()
            raise server_error(first.message)
        return cls(ws)

    async def send(self, text: str) -> None:
        """One or more whole words (a message boundary is a word boundary)."""
        await self._ws.send(tts.encode_client(tts.Text(text)))

    async def end(self) -> None:
        """No more text: the server speaks what is left, then closes."""
        await self._ws.send(tts.encode_client(tts.Eos()))

    def __aiter__(self) -> AsyncIterator[np.ndarray | SpokenWord]:
        return self._events()

    async def _events(self) -> AsyncIterator[np.ndarray | SpokenWord]:
        try:
            async for raw in self._ws:
                if not isinstance(raw, bytes):
                    continue
                msg = tts.decode_server(raw)
                if isinstance(msg, AudioFrame):
                    yield msg.pcm
                elif isinstance(msg, SpokenWord):
                    yield msg
                elif isinstance(msg, ErrorMessage):
                    raise server_error(msg.message)
        except websockets.ConnectionClosedError as exc:
            raise ServerError(f"the connection was lost ({exc})") from None


async def synthesize(
    words: Iterable[str] | AsyncIterable[str],
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    voice: str | None = None,
) -> SpeechResult:
    """Streams `words` (a list, or an async iterator fed as an LLM produces them) and collects
    the audio frames and word times, with when each arrived."""
    result = SpeechResult(started_at=time.monotonic(), ready=True)
    async with await TtsStream.open(url, api_key=api_key, voice=voice) as stream:

        async def send() -> None:
            async for word in _aiter(words):
                now = time.monotonic()
                if result.first_word_sent_at is None:
                    result.first_word_sent_at = now
                result.last_word_sent_at = now
                await stream.send(word)
                result.word_sent_at.append(now)
            await stream.end()

        sender = asyncio.create_task(send())
        try:
            async for item in stream:
                if isinstance(item, SpokenWord):
                    result.words.append(item)
                else:
                    result.frames.append(item)
                    result.frame_received_at.append(time.monotonic())
        finally:
            await finish_task(sender)
    return result


async def _aiter(words: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(words, AsyncIterable):
        async for word in words:
            yield word
    else:
        for word in words:
            yield word


def synthesize_sync(
    words: Iterable[str],
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    voice: str | None = None,
) -> SpeechResult:
    return asyncio.run(synthesize(words, url=url, api_key=api_key, voice=voice))


@dataclass
class Synthesis:
    """What `POST /api/tts` answers: a whole WAV and the word times."""

    wav: bytes
    words: list[SpokenWord]

    @property
    def pcm(self) -> np.ndarray:
        """The WAV's samples as float32 in [-1, 1] (16-bit mono, 24 kHz)."""
        with wave.open(io.BytesIO(self.wav)) as w:
            frames = w.readframes(w.getnframes())
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


async def synthesize_once(
    text: str | list[str],
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    voice: str | None = None,
    timeout_s: float = 300.0,
) -> Synthesis:
    """`POST /api/tts` with `return_timestamps`: the whole WAV once it is synthesised."""
    request: dict[str, object] = {
        "text": [text] if isinstance(text, str) else list(text),
        "return_timestamps": True,
    }
    if voice:
        request["voice"] = voice
    body, _ = await http_request_async(
        http_url(url, "/api/tts"),
        json.dumps(request).encode(),
        api_key,
        "application/json",
        timeout_s,
    )
    data = json.loads(body)
    words = [
        SpokenWord(str(t["text"]), float(t["start_s"]), float(t["stop_s"]))
        for t in data["transcript"]
    ]
    return Synthesis(base64.b64decode(data["wav"]), words)


def synthesize_once_sync(
    text: str | list[str],
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    voice: str | None = None,
    timeout_s: float = 300.0,
) -> Synthesis:
    return asyncio.run(
        synthesize_once(text, url=url, api_key=api_key, voice=voice, timeout_s=timeout_s)
    )
