"""The OpenAI audio API on Parley's modules: `/v1/audio/speech`, `/v1/audio/transcriptions`,
`/v1/models`, `/v1/audio/voices`.

Field names and shapes follow the official `openai` SDK's types. OpenAI's model names map to the
first configured TTS/STT module (as do Parley's module names); voices resolve as on the moshi
routes (`voice_names`: OpenAI's and Kokoro's names are aliases of the default voice unless
`voice_aliases` says otherwise). Errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from parley.audio.codec_pool import off_loop
from parley.audio.decode import UndecodableAudio, decode_file
from parley.audio.encode import FORMATS, StreamEncoder
from parley.audio.stretch import tempo_stream
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage
from parley.engine.module import NoFreeSlot, Session
from parley.engine.sessions import SynthesisFailed, recognise_recording, speech_output
from parley.engine.speech import AudioFrame
from parley.protocol import asr
from parley.protocol.common import ProtocolError
from parley.server.auth import Keys, bearer_authorized
from parley.server.json_body import MAX_REQUEST_TEXT_CHARS, BadBody, json_object
from parley.server.services import RecognitionService, SpeechService
from parley.server.session_stream import SessionStream
from parley.server.voice_names import UnknownVoice

log = logging.getLogger(__name__)

# OpenAI's model names as the SDK lists them, each also dated (`gpt-4o-transcribe-2025-03-20`).
TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
STT_MODELS = (
    "whisper-1", "gpt-transcribe", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
    "gpt-live-transcribe", "gpt-realtime-whisper",
)  # fmt: skip
_DATED = re.compile(r"(.+)-\d{4}-\d{2}-\d{2}")
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
SEGMENT_GAP_S = 1.0  # a pause this long between words starts a new segment


def model_problem(model: str, known: list[str]) -> str | None:
    """Why `model` is not one of `known` (each may end in a date), or None if it is."""
    dated = _DATED.fullmatch(model)
    if model in known or (dated and dated.group(1) in known):
        return None
    return f"Unknown model {model!r}; valid models: {', '.join(known)} (each may end in a date)"


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code or {400: "invalid_value", 401: "invalid_api_key"}.get(status, "")

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 503: "server_error", 500: "server_error"}.get(
            self.status, "invalid_request_error"
        )
        body = {"message": str(self), "type": kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


class OpenAiRoutes:
    def __init__(
        self,
        authorized_ids: Keys,
        speech: SpeechService | None,
        recognition: RecognitionService | None,
    ) -> None:
        self.authorized_ids = authorized_ids
        self.tts = speech
        self.asr = recognition

    # --- helpers ---------------------------------------------------------------------------
    def _check_auth(self, request: Request) -> None:
        if not bearer_authorized(request, self.authorized_ids):
            raise ApiError(401, "Incorrect API key provided (send Authorization: Bearer <id>).")

    def tts_models(self) -> list[str]:
        return [*TTS_MODELS, self.tts.module.info.name] if self.tts else []

    def stt_models(self) -> list[str]:
        return [*STT_MODELS, self.asr.module.info.name] if self.asr else []

    def _check_model(self, model: str, known: list[str]) -> None:
        problem = model_problem(model, known)
        if problem:
            raise ApiError(400, problem, "model", "model_not_found")

    def resolve_voice(self, voice: Any) -> str:
        assert self.tts is not None
        if isinstance(voice, dict):
            voice = voice.get("id")
        if not isinstance(voice, str) or not voice:
            raise ApiError(400, "'voice' must be a voice name", "voice")
        try:
            return self.tts.voice_names.resolve(voice)
        except UnknownVoice as exc:
            raise ApiError(400, str(exc), "voice") from None

    async def _guard(self, request: Request, handler: Any) -> Response:
        try:
            self._check_auth(request)
            response: Response = await handler(request)
            return response
        except ApiError as exc:
            return exc.response()

    # --- speech ----------------------------------------------------------------------------
    async def speech(self, request: Request) -> Response:
        return await self._guard(request, self._speech)

    async def _speech(self, request: Request) -> Response:
        if self.tts is None:
            raise ApiError(404, "no text-to-speech module is configured")
        body = await _json_body(request)
        self._check_model(_field(body, "model", str, required=True), self.tts_models())
        text = _field(body, "input", str, required=True)
        if not text.strip():
            raise ApiError(400, "'input' must not be empty", "input")
        if len(text) > MAX_REQUEST_TEXT_CHARS:
            raise ApiError(413, f"'input' over {MAX_REQUEST_TEXT_CHARS} characters", "input")
        voice = self.resolve_voice(body.get("voice"))
        fmt = _field(body, "response_format", str) or "mp3"
        if fmt not in FORMATS:
            raise ApiError(
                400, f"response_format must be one of {', '.join(FORMATS)}", "response_format"
            )
        speed = body.get("speed", 1.0)
        if speed is None:
            speed = 1.0
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise ApiError(400, "'speed' must be a number", "speed")
        if not (math.isfinite(speed) and 0.25 <= speed <= 4.0):
            raise ApiError(400, f"'speed' must be between 0.25 and 4.0, got {speed}", "speed")
        stream_format = _field(body, "stream_format", str) or "audio"
        if stream_format not in ("audio", "sse"):
            raise ApiError(400, "stream_format must be 'audio' or 'sse'", "stream_format")
        # `instructions` (a style prompt) has no meaning for Piper voices; it is accepted.
        try:
            session = await self.tts.speak(text, voice)
        except ProtocolError as exc:
            raise ApiError(400, str(exc)) from None
        except NoFreeSlot:
            raise ApiError(
                503, "all text-to-speech channels are busy", code="no_free_channels"
            ) from None
        encoder = StreamEncoder(fmt)
        audio = _speech_pcm(session, float(speed))
        if stream_format == "sse":
            return SessionStream(session, _speech_sse(audio, encoder), "text/event-stream")
        return SessionStream(
            session, _speech_audio(audio, encoder, session.channel_id), encoder.media_type
        )

    # --- transcriptions --------------------------------------------------------------------
    async def transcriptions(self, request: Request) -> Response:
        return await self._guard(request, self._transcriptions)

    async def _transcriptions(self, request: Request) -> Response:
        if self.asr is None:
            raise ApiError(404, "no speech-to-text module is configured")
        form = await _upload_form(request)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "'file' (an audio file) is required", "file")
        asked = self._transcription_options(form)
        data = await upload.read()
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"upload over {MAX_UPLOAD_BYTES} bytes", "file")
        try:
            pcm = await run_in_threadpool(decode_file, data, SAMPLE_RATE_HZ)
        except UndecodableAudio as exc:
            raise ApiError(400, f"Invalid file format: {exc}", "file", "invalid_file") from None
        try:
            session = await self.asr.wait_for_slot()
        except NoFreeSlot:
            raise ApiError(
                503, "all speech-to-text channels are busy", code="no_free_channels"
            ) from None
        if asked.stream:
            return SessionStream(session, _transcript_sse(session, pcm), "text/event-stream")
        async with session:
            words = [w async for w in _recognise(session, pcm)]
        duration_s = len(pcm) / SAMPLE_RATE_HZ
        return _transcript_response(words, asked.fmt, asked.granularities, duration_s)

    def _transcription_options(self, form: FormData) -> _TranscriptionOptions:
        model = form.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "'model' is required", "model")
        self._check_model(model, self.stt_models())
        # "auto" or none: detect, which for an English-only model is English.
        language = form.get("language") or "auto"
        if language not in ("en", "auto"):
            raise ApiError(
                400, f"language {language!r} is not supported (only 'en', or 'auto')", "language"
            )
        fmt = str(form.get("response_format") or "json")
        if fmt not in TRANSCRIPT_FORMATS:
            raise ApiError(
                400,
                f"response_format must be one of {', '.join(TRANSCRIPT_FORMATS)}",
                "response_format",
            )
        granularities = [
            str(g)
            for key in ("timestamp_granularities[]", "timestamp_granularities")
            for g in form.getlist(key)
        ] or ["segment"]
        for g in granularities:
            if g not in ("word", "segment"):
                raise ApiError(
                    400, f"unknown timestamp granularity {g!r}", "timestamp_granularities"
                )
        stream = str(form.get("stream") or "false").lower() == "true"
        return _TranscriptionOptions(fmt, granularities, stream)

    # --- listings --------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        async def handler(_: Request) -> Response:
            ids = [*self.tts_models(), *self.stt_models()]
            data = [{"id": i, "object": "model", "created": 0, "owned_by": "parley"} for i in ids]
            return JSONResponse({"object": "list", "data": data})

        return await self._guard(request, handler)

    async def voices(self, request: Request) -> Response:
        async def handler(_: Request) -> Response:
            if self.tts is None:
                return JSONResponse({"object": "list", "data": []})
            aliases = self.tts.voice_names.alias_table()
            data = [
                {"id": v, "object": "voice", "default": v == self.tts.backend.default_voice}
                for v in sorted(self.tts.backend.voices)
            ] + [
                {"id": a, "object": "voice", "alias_of": target}
                for a, target in sorted(aliases.items())
            ]
            return JSONResponse({"object": "list", "data": data})

        return await self._guard(request, handler)


@dataclass(frozen=True)
class _TranscriptionOptions:
    fmt: str  # one of TRANSCRIPT_FORMATS
    granularities: list[str]  # "word", "segment"
    stream: bool  # server-sent events as words are recognised


async def _upload_form(request: Request) -> FormData:
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_UPLOAD_BYTES:
        # Read (and drop) a bounded amount first: answering while the client is still
        # sending makes it see a broken pipe instead of the 413.
        drained = 0
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > 2 * MAX_UPLOAD_BYTES:
                break
        raise ApiError(413, f"upload over {MAX_UPLOAD_BYTES} bytes", "file")
    try:
        return await request.form(max_files=1, max_fields=50, max_part_size=MAX_UPLOAD_BYTES)
    except Exception as exc:  # python-multipart raises several kinds
        raise ApiError(400, f"expected a multipart/form-data body: {exc}") from None


# --- speech streaming ----------------------------------------------------------------------
async def _speech_pcm(session: Session, speed: float) -> AsyncGenerator[np.ndarray, None]:
    """The session's audio, played `speed` times faster (pitch kept).

    Speed is a time stretch of the voice's natural delivery, so any backend gets it and the
    length is exactly 1/speed: Piper's own `length_scale` moves the length much less than
    asked (0.5 gives ~0.63x, as every phoneme keeps at least one frame)."""
    stretch = tempo_stream(SAMPLE_RATE_HZ, speed) if speed != 1.0 else None
    async for msg in speech_output(session):
        if isinstance(msg, AudioFrame):
            yield msg.pcm if stretch is None else await off_loop(stretch.push, msg.pcm)
    if stretch is not None:
        yield await off_loop(stretch.finish)


async def _speech_audio(
    audio: AsyncGenerator[np.ndarray, None], encoder: StreamEncoder, channel_id: int
) -> AsyncIterator[bytes]:
    try:
        async for pcm in audio:
            data = await off_loop(encoder.encode, pcm)
            if data:
                yield data
        tail = await off_loop(encoder.finish)
        if tail:
            yield tail
    except SynthesisFailed as exc:  # the status line is out; a truncated stream is all we can do
        log.warning("channel %d: synthesis failed in /v1/audio/speech: %s", channel_id, exc)
    finally:  # a client gone mid-stream: free the slot now, not when garbage is collected
        await audio.aclose()


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


async def _speech_sse(
    audio: AsyncGenerator[np.ndarray, None], encoder: StreamEncoder
) -> AsyncIterator[bytes]:
    chunks = 0
    try:
        async for pcm in audio:
            chunks += 1
            data = await off_loop(encoder.encode, pcm)
            if data:
                yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
        tail = await off_loop(encoder.finish)
        if tail:
            yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode()})
        usage = {"input_tokens": 0, "output_tokens": chunks, "total_tokens": chunks}
        yield _sse({"type": "speech.audio.done", "usage": usage})
    except SynthesisFailed as exc:
        yield _sse({"type": "error", "error": {"message": str(exc), "type": "server_error"}})
    finally:
        await audio.aclose()


# --- recognition -----------------------------------------------------------------------------
async def _recognise(session: Session, pcm: np.ndarray) -> AsyncIterator[dict[str, Any]]:
    """Words `{"word","start","end"}` as the streaming recogniser commits them."""
    pending: dict[str, Any] | None = None
    async for msg in recognise_recording(session, pcm):
        if isinstance(msg, asr.Word):
            if pending is not None:
                yield pending
            pending = {"word": msg.text, "start": msg.start_time, "end": msg.start_time}
        elif isinstance(msg, asr.EndWord) and pending is not None:
            pending["end"] = msg.stop_time
            yield pending
            pending = None
        elif isinstance(msg, ErrorMessage):
            raise ApiError(500, msg.message)
    if pending is not None:
        yield pending


async def _transcript_sse(session: Session, pcm: np.ndarray) -> AsyncIterator[bytes]:
    words: list[str] = []
    try:
        async for w in _recognise(session, pcm):
            delta = w["word"] if not words else " " + w["word"]
            words.append(w["word"])
            yield _sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
        yield _sse({"type": "transcript.text.done", "text": " ".join(words), "logprobs": None})
    except ApiError as exc:
        yield _sse({"type": "error", "error": {"message": str(exc), "type": "server_error"}})


def segments_of(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words grouped into segments at sentence ends and pauses of SEGMENT_GAP_S.

    The log-probability and compression fields OpenAI reports are not computed by the streaming
    recogniser; they are given neutral values (0, 1, 0)."""
    groups: list[list[dict[str, Any]]] = []
    for w in words:
        if groups and not (
            w["start"] - groups[-1][-1]["end"] > SEGMENT_GAP_S
            or groups[-1][-1]["word"].endswith((".", "?", "!"))
        ):
            groups[-1].append(w)
        else:
            groups.append([w])
    return [
        {
            "id": i,
            "seek": 0,
            "start": g[0]["start"],
            "end": g[-1]["end"],
            "text": " ".join(w["word"] for w in g),
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": 0.0,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.0,
        }
        for i, g in enumerate(groups)
    ]


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitles(segments: list[dict[str, Any]], vtt: bool) -> str:
    sep = "." if vtt else ","
    cues = []
    for i, seg in enumerate(segments, 1):
        times = f"{_timestamp(seg['start'], sep)} --> {_timestamp(seg['end'], sep)}"
        cues.append((f"{times}\n" if vtt else f"{i}\n{times}\n") + seg["text"] + "\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(cues)


def _transcript_response(
    words: list[dict[str, Any]], fmt: str, granularities: list[str], duration_s: float
) -> Response:
    text = " ".join(w["word"] for w in words)
    if fmt == "json":
        return JSONResponse({"text": text, "usage": {"type": "duration", "seconds": duration_s}})
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    segments = segments_of(words)
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(subtitles(segments, fmt == "vtt"))
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": "english",
        "duration": duration_s,
        "text": text,
        "usage": {"type": "duration", "seconds": duration_s},
    }
    if "segment" in granularities:
        body["segments"] = segments
    if "word" in granularities:
        body["words"] = words
    return JSONResponse(body)


# --- request parsing -----------------------------------------------------------------------
async def _json_body(request: Request) -> dict[str, Any]:
    try:
        return await json_object(request)
    except BadBody as exc:
        raise ApiError(exc.status, str(exc)) from None


def _field(body: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"'{name}' is required", name)
        return None
    if not isinstance(value, kind):
        raise ApiError(400, f"'{name}' must be a {kind.__name__}", name)
    return value
