"""`/api/tts_streaming` (moshi TTS WebSocket + streamed-WAV POST) and `/api/tts` (one-shot)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocket

from parley.audio.encode import to_s16le, wav_header
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.module import Module, NoFreeSlot, Session
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    SpeechBackend,
    SpeechConfig,
    SpeechEnd,
    SpokenWord,
    TextPiece,
)
from parley.protocol import tts
from parley.protocol.common import MessageTooBig, ProtocolError
from parley.server.auth import Keys, is_authorized
from parley.server.duplex import admit, run_duplex
from parley.server.json_body import MAX_TEXT_CHARS, BadBody, json_object
from parley.server.voice_names import UnknownVoice, VoiceNames

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 24_000
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # raw formats: the error travels as the close reason
CLOSE_TOO_BIG = 1009


class TtsRoutes:
    def __init__(
        self, module: Module, authorized_ids: Keys, voice_aliases: dict[str, str] | None = None
    ) -> None:
        self.module = module
        self.authorized_ids = authorized_ids
        backend = module.backend
        if not isinstance(backend, SpeechBackend):
            raise TypeError(f"module {module.info.name} is not a text-to-speech module")
        self.backend = backend
        self.voices = backend.voices
        self.default_voice = backend.default_voice
        self.voice_names = VoiceNames(self.voices, self.default_voice, voice_aliases or {})
        self.post_timeout_s = float(module.info.details.get("post_timeout_s", 100.0))
        # no message at all before Eos for this long closes the stream
        self.idle_timeout_s = float(module.info.details.get("idle_timeout_s", 120.0))
        self.labels = {"module": module.info.name}

    def count_error(self, kind: str) -> None:
        self.module.metrics.errors.labels(kind=kind, **self.labels).inc()

    def check_voice(self, voice: str | None) -> str:
        """The configured voice `voice` names (see voice_names), or ProtocolError."""
        try:
            return self.voice_names.resolve(voice)
        except UnknownVoice as exc:
            raise ProtocolError(str(exc)) from None

    # --- WebSocket -------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        if not await admit(ws, self.module, self.authorized_ids):
            return
        try:
            fmt = tts.OutputFormat.parse(ws.query_params.get("format"))
        except ProtocolError as exc:
            self.count_error("protocol")
            await ws.close(CLOSE_POLICY, reason=str(exc)[:120])
            return
        try:
            voice = self.check_voice(ws.query_params.get("voice"))
        except ProtocolError as exc:
            self.count_error("unknown_voice")
            await _send_error(ws, fmt, str(exc))
            return
        try:
            session = self.module.try_acquire()
        except NoFreeSlot:
            self.count_error("no_free_channels")
            await _send_error(ws, fmt, "no free channels")
            return
        session.push(SpeechConfig(voice))
        encoder = _FrameEncoder(fmt)
        if fmt.is_msgpack:
            await ws.send_bytes(tts.encode_server(Ready()))
        errors: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=1)

        async def report(error: tuple[int, str]) -> None:
            await _send_error(ws, fmt, error[1], error[0])

        await run_duplex(
            ws,
            session,
            self._receive_loop(ws, session, errors),
            self._send_loop(ws, session, encoder),
            errors,
            report,
        )

    async def _receive_loop(
        self, ws: WebSocket, session: Session, errors: asyncio.Queue[tuple[int, str]]
    ) -> None:
        ended = False
        spoke = False
        takes_embeddings = self.backend.takes_voice_embeddings
        while True:
            try:
                message = await asyncio.wait_for(
                    ws.receive(), timeout=None if ended else self.idle_timeout_s
                )
            except TimeoutError:
                self.count_error("idle")
                errors.put_nowait((CLOSE_NORMAL, f"no text for {self.idle_timeout_s:g} s"))
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                if message.get("text") is not None:
                    msg: tts.ClientMessage = tts.decode_client_text(message["text"])
                else:
                    msg = tts.decode_client(message.get("bytes") or b"")
                if ended:
                    raise ProtocolError(f"{type(msg).__name__} message after Eos")
            except MessageTooBig as exc:
                self.count_error("too_big")
                errors.put_nowait((CLOSE_TOO_BIG, str(exc)))
                return
            except ProtocolError as exc:
                self.count_error("protocol")
                errors.put_nowait((CLOSE_POLICY, str(exc)))
                return
            if isinstance(msg, tts.Text):
                session.push(TextPiece(msg.text, whole_words=True))
                spoke = True
            elif isinstance(msg, tts.Eos):
                session.push(EndOfText())
                ended = True
            elif takes_embeddings and not spoke:
                session.push(msg)  # the backend checks the embedding's shape
            elif takes_embeddings:
                self.count_error("protocol")
                errors.put_nowait((CLOSE_POLICY, "a Voice message must come before any Text"))
                return
            else:  # Voice embeddings
                self.count_error("protocol")
                errors.put_nowait(
                    (
                        CLOSE_POLICY,
                        "this server's voices cannot take Voice embeddings; choose a voice with "
                        "?voice= "
                        f"(known: {', '.join(sorted(self.voices))})",
                    )
                )
                return

    async def _send_loop(self, ws: WebSocket, session: Session, encoder: _FrameEncoder) -> None:
        while True:
            msg = await session.receive()
            if isinstance(msg, SpeechEnd):
                await ws.close(CLOSE_NORMAL)
                return
            if isinstance(msg, ErrorMessage):
                self.count_error("synthesis")
                await _send_error(ws, encoder.fmt, msg.message)
                return
            data = encoder.encode(msg)
            if data is not None:
                await ws.send_bytes(data)

    # --- HTTP ------------------------------------------------------------------------------
    async def _read_json(self, request: Request) -> dict[str, Any] | Response:
        if not is_authorized(request, self.authorized_ids):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            return await json_object(request)
        except BadBody as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def open_speech(self, text: str, voice: str | None) -> tuple[Session, str]:
        """A session speaking `text` (whole words); ProtocolError or NoFreeSlot if not."""
        name = self.check_voice(voice)
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError(f"text over {MAX_TEXT_CHARS} characters")
        session = await self.module.acquire(self.post_timeout_s)
        session.push(SpeechConfig(name))
        for word in text.split():
            session.push(TextPiece(word, whole_words=True))
        session.push(EndOfText())
        return session, name

    async def post_streaming(self, request: Request) -> Response:
        """`POST /api/tts_streaming {"text","voice"}` -> WAV streamed as it is synthesised."""
        data = await self._read_json(request)
        if isinstance(data, Response):
            return data
        text, voice = data.get("text"), data.get("voice")
        if not isinstance(text, str) or not (voice is None or isinstance(voice, str)):
            return JSONResponse({"error": "'text' (and 'voice') must be strings"}, 400)
        try:
            session, _ = await self.open_speech(text, voice)
        except ProtocolError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NoFreeSlot:
            self.count_error("no_free_channels")
            return JSONResponse({"error": "no free channels"}, status_code=503)

        async def body() -> AsyncIterator[bytes]:
            yield wav_header(SAMPLE_RATE_HZ)
            try:
                async for msg in speech_messages(session):
                    if isinstance(msg, AudioFrame):
                        yield to_s16le(msg.pcm)
            except SynthesisFailed:  # headers are out; a short WAV is all we can do
                log.warning("synthesis failed during a streamed WAV")
            finally:
                session.close()

        return StreamingResponse(body(), media_type="audio/wav")

    async def post_tts(self, request: Request) -> Response:
        """`POST /api/tts {"text":[...],"voice","return_timestamps"}` -> WAV or JSON."""
        data = await self._read_json(request)
        if isinstance(data, Response):
            return data
        raw = data.get("text")
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            return JSONResponse({"error": "'text' must be a list of strings"}, status_code=400)
        voice = data.get("voice")
        if not (voice is None or isinstance(voice, str)):
            return JSONResponse({"error": "'voice' must be a string"}, status_code=400)
        stamps = data.get("return_timestamps", False)
        if not isinstance(stamps, bool):
            return JSONResponse({"error": "'return_timestamps' must be a boolean"}, 400)
        try:
            session, _ = await self.open_speech(" ".join(raw), voice)
        except ProtocolError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NoFreeSlot:
            self.count_error("no_free_channels")
            return JSONResponse({"error": "no free channels"}, status_code=503)
        pcm: list[np.ndarray] = []
        words: list[dict[str, Any]] = []
        try:
            async for msg in speech_messages(session):
                if isinstance(msg, AudioFrame):
                    pcm.append(msg.pcm)
                elif isinstance(msg, SpokenWord):
                    words.append({"text": msg.text, "start_s": msg.start_s, "stop_s": msg.stop_s})
        except SynthesisFailed as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        finally:
            session.close()
        audio = to_s16le(np.concatenate(pcm)) if pcm else b""
        wav = wav_header(SAMPLE_RATE_HZ, len(audio)) + audio
        if stamps:
            return JSONResponse({"wav": base64.b64encode(wav).decode("ascii"), "transcript": words})
        return Response(wav, media_type="audio/wav")


class SynthesisFailed(RuntimeError):
    pass


async def speech_messages(session: Session) -> AsyncIterator[Any]:
    """A session's Audio and WordTimes until its SpeechEnd; SynthesisFailed on an Error."""
    while True:
        msg = await session.receive()
        if isinstance(msg, SpeechEnd):
            return
        if isinstance(msg, ErrorMessage):
            raise SynthesisFailed(msg.message)
        yield msg


class _FrameEncoder:
    """Backend messages -> WebSocket payloads in the session's format."""

    def __init__(self, fmt: tts.OutputFormat) -> None:
        self.fmt = fmt
        self._opus: Any = None
        if fmt.is_opus:
            import sphn

            self._opus = sphn.OpusStreamWriter(SAMPLE_RATE_HZ)

    def encode(self, msg: Any) -> bytes | None:
        if isinstance(msg, SpokenWord):
            return tts.encode_server(msg) if self.fmt.is_msgpack else None
        if not isinstance(msg, AudioFrame):
            return None
        if self.fmt is tts.OutputFormat.PCM:
            return msg.pcm.astype("<f4").tobytes()
        if self.fmt is tts.OutputFormat.PCM_MSGPACK:
            return tts.encode_server(msg)
        pages = bytes(self._opus.append_pcm(msg.pcm.astype(np.float32)))
        if not pages:
            return None
        if self.fmt is tts.OutputFormat.OGG_OPUS:
            return pages
        return tts.encode_server(tts.OggOpus(pages))


async def _send_error(
    ws: WebSocket, fmt: tts.OutputFormat, message: str, code: int = CLOSE_NORMAL
) -> None:
    """msgpack formats get an `Error` message, then a normal close (clients such as Kyutai's
    read until the socket closes); raw formats get the text as the close reason."""
    if fmt.is_msgpack:
        await ws.send_bytes(tts.encode_server(ErrorMessage(message)))
        await ws.close(CLOSE_NORMAL)
    else:
        await ws.close(CLOSE_POLICY if code == CLOSE_NORMAL else code, reason=message[:120])
