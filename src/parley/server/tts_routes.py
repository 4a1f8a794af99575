"""`/api/tts_streaming` (moshi TTS WebSocket + streamed-WAV POST) and `/api/tts` (one-shot)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from parley.audio.encode import to_s16le, wav_header
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.module import NoFreeSlot
from parley.engine.sessions import SynthesisFailed, speech_output
from parley.engine.speech import AudioFrame, SpokenWord
from parley.protocol import tts
from parley.protocol.common import ProtocolError
from parley.server.auth import is_authorized
from parley.server.json_body import BadBody, json_object
from parley.server.services import SpeechService
from parley.server.session_stream import SessionStream
from parley.server.sockets import serve_socket

log = logging.getLogger(__name__)


class TtsRoutes:
    def __init__(self, service: SpeechService) -> None:
        self.service = service

    # --- WebSocket -------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        service = self.service
        connection = tts.TtsConnection(
            service.backend.takes_voice_embeddings, service.backend.voices
        )
        await serve_socket(
            ws,
            service.module,
            service.keys,
            connection,
            lambda: connection.start(ws.query_params, service.check_voice),
            # no message at all before Eos for this long closes the stream
            float(service.options.idle_timeout_s),
        )

    # --- HTTP ------------------------------------------------------------------------------
    async def _read_json(self, request: Request) -> dict[str, Any] | Response:
        if not is_authorized(request, self.service.keys):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            return await json_object(request)
        except BadBody as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def post_streaming(self, request: Request) -> Response:
        """`POST /api/tts_streaming {"text","voice"}` -> WAV streamed as it is synthesised."""
        data = await self._read_json(request)
        if isinstance(data, Response):
            return data
        text, voice = data.get("text"), data.get("voice")
        if not isinstance(text, str) or not (voice is None or isinstance(voice, str)):
            return JSONResponse({"error": "'text' (and 'voice') must be strings"}, 400)
        try:
            session = await self.service.speak(text, voice)
        except ProtocolError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NoFreeSlot:
            self.service.module.count_error("no_free_channels")
            return JSONResponse({"error": "no free channels"}, status_code=503)

        channel = session.channel_id

        async def body() -> AsyncIterator[bytes]:
            yield wav_header(SAMPLE_RATE_HZ)
            try:
                async for msg in speech_output(session):
                    if isinstance(msg, AudioFrame):
                        yield to_s16le(msg.pcm)
            except SynthesisFailed as exc:  # headers are out; a short WAV is all we can do
                log.warning("channel %d: synthesis failed in a streamed WAV: %s", channel, exc)

        return SessionStream(session, body(), "audio/wav")

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
            session = await self.service.speak(" ".join(raw), voice)
        except ProtocolError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NoFreeSlot:
            self.service.module.count_error("no_free_channels")
            return JSONResponse({"error": "no free channels"}, status_code=503)
        pcm: list[np.ndarray] = []
        words: list[dict[str, Any]] = []
        try:
            async with session:
                async for msg in speech_output(session):
                    if isinstance(msg, AudioFrame):
                        pcm.append(msg.pcm)
                    elif isinstance(msg, SpokenWord):
                        words.append(
                            {"text": msg.text, "start_s": msg.start_s, "stop_s": msg.stop_s}
                        )
        except SynthesisFailed as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        audio = to_s16le(np.concatenate(pcm)) if pcm else b""
        wav = wav_header(SAMPLE_RATE_HZ, len(audio)) + audio
        if stamps:
            return JSONResponse({"wav": base64.b64encode(wav).decode("ascii"), "transcript": words})
        return Response(wav, media_type="audio/wav")
