"""Client for the token socket `/ws/stream`: LLM tokens in, float32 PCM frames out.

The socket has no end-of-stream message: after `flush` the last audio arrives and the socket
stays open for more tokens, so `speak_tokens` stops once no frame has come for a while.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import websockets

from parley.client.connection import (
    DEFAULT_API_KEY,
    DEFAULT_URL,
    SocketSession,
    finish_task,
    open_websocket,
    ws_url,
)
from parley.client.errors import ServerError, server_error

TOKEN_SOCKET_PATH = "/ws/stream"


class TokenStream(SocketSession):
    """An open `/ws/stream` session (`?ready=1&chunk=frame`); `ready` is the server's first
    message."""

    def __init__(self, ws: websockets.ClientConnection, ready: dict[str, Any]) -> None:
        self._ws = ws
        self.ready = ready
        self.sample_rate = int(ready["sample_rate"])

    @classmethod
    async def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = DEFAULT_API_KEY,  # only checked with `token_socket_auth = true`
        voice: str | None = None,
        sample_rate: int | None = None,
        path: str = TOKEN_SOCKET_PATH,
    ) -> TokenStream:
        # Our client wants the ready message (rate, errors before audio) and 80 ms frames to play
        # as they come; the socket's defaults are seed 004's (48 kHz, a message per phrase).
        params: dict[str, str | int] = {"ready": 1, "chunk": "frame"}
        if sample_rate:
            params["sample_rate"] = sample_rate
        if voice:
            params["voice"] = voice
        query = f"?{urlencode(params)}" if params else ""
        ws = await open_websocket(ws_url(url, path) + query, api_key)
        try:
            first = await ws.recv()
        except websockets.ConnectionClosed as exc:
            raise ServerError(f"the server closed the stream at once ({exc})") from None
        ready = _json_message(first)
        if ready.get("type") != "ready":
            await ws.close()
            raise server_error(str(ready.get("error", ready)))
        return cls(ws, ready)

    async def send_token(self, token: str, pitch_shift: float = 0.0) -> None:
        """Tokens are concatenated as they are: spaces make the word boundaries."""
        await self._ws.send(json.dumps({"token": token, "pitch_shift": pitch_shift}))

    async def flush(self) -> None:
        """Speak what is buffered now, and pad out the last frame."""
        await self._ws.send(json.dumps({"flush": True}))

    async def receive(self, timeout_s: float | None = None) -> np.ndarray | None:
        """The next PCM frame, or None if none came within `timeout_s` or the socket closed."""
        while True:
            try:
                message = await asyncio.wait_for(self._ws.recv(), timeout=timeout_s)
            except TimeoutError:
                return None
            except websockets.ConnectionClosedOK:
                return None
            except websockets.ConnectionClosedError as exc:
                raise ServerError(f"the connection was lost ({exc})") from None
            if isinstance(message, bytes):
                return np.frombuffer(message, dtype="<f4").copy()
            error = _json_message(message).get("error")
            if error is not None:
                raise server_error(str(error))


def _json_message(message: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(message)
    except ValueError:
        raise ServerError(f"unexpected message from the server: {message[:80]!r}") from None
    if not isinstance(data, dict):
        raise ServerError(f"unexpected message from the server: {data!r}")
    return data


@dataclass
class TokenSpeech:
    sample_rate: int
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)


async def speak_tokens(
    tokens: Iterable[str] | AsyncIterable[str],
    *,
    url: str = DEFAULT_URL,
    api_key: str | None = DEFAULT_API_KEY,
    voice: str | None = None,
    sample_rate: int | None = None,
    pitch_shift: float = 0.0,
    first_audio_timeout_s: float = 60.0,
    idle_timeout_s: float = 2.0,
) -> TokenSpeech:
    """Sends every token, then a flush; collects frames until none has come for
    `idle_timeout_s` after the first (or `first_audio_timeout_s` passed with none)."""
    async with await TokenStream.open(
        url, api_key=api_key, voice=voice, sample_rate=sample_rate
    ) as stream:
        speech = TokenSpeech(stream.sample_rate)

        async def send() -> None:
            if isinstance(tokens, AsyncIterable):
                async for token in tokens:
                    await stream.send_token(token, pitch_shift)
            else:
                for token in tokens:
                    await stream.send_token(token, pitch_shift)
            await stream.flush()

        sender = asyncio.create_task(send())
        try:
            while True:
                wait_s = idle_timeout_s if speech.frames else first_audio_timeout_s
                frame = await stream.receive(wait_s)
                if frame is None:
                    break
                speech.frames.append(frame)
        finally:
            await finish_task(sender)
    return speech


def speak_tokens_sync(
    tokens: Iterable[str],
    *,
    url: str = DEFAULT_URL,
    api_key: str | None = DEFAULT_API_KEY,
    voice: str | None = None,
    sample_rate: int | None = None,
    pitch_shift: float = 0.0,
) -> TokenSpeech:
    return asyncio.run(
        speak_tokens(
            tokens,
            url=url,
            api_key=api_key,
            voice=voice,
            sample_rate=sample_rate,
            pitch_shift=pitch_shift,
        )
    )
