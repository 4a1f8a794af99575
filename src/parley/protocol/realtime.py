"""OpenAI's Realtime transcription socket (`/v1/realtime?intent=transcription`), sans I/O.

JSON text frames both ways, named as in the `openai` SDK's `types/realtime` (GA) and
`types/beta/realtime` (beta). Client: `session.update` (GA, `session.type = "transcription"`),
`transcription_session.update` (beta), `input_audio_buffer.append` / `.commit` / `.clear`.
Server: `session.created`, `session.updated` or `transcription_session.updated` (the shape the
client spoke), `input_audio_buffer.speech_started` / `.speech_stopped` / `.committed` /
`.cleared`, `conversation.item.added` (GA) or `conversation.item.created` (beta),
`conversation.item.input_audio_transcription.delta` (one per committed word: append-only text)
and `.completed` (the item's transcript), `error`.

An item is the audio between two turn ends. It ends at a client's commit (a `Marker` pushed to
the recogniser: every word of the audio before it is out when it returns, and then the item is
completed) or, with turn detection on, at a pause read from the recogniser's `Step.prs` (its
VAD for Whisper; the pause heads for Kyutai): a recogniser that holds each `Step` until the
words before it are out (both do) has sent the item's last word by then. A clear pushes a
`Marker` too; words of the audio before it are dropped. Words go to the item whose audio they
start in (their `start_time` against the commit's place in the stream). Recoverable errors (a
bad event, an unknown model, a commit of under 100 ms) get one `error` and the session goes
on; audio too far ahead of real time, the idle timeout, a recogniser failure and a full house
close the socket.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.recognition import Audio, EndWord, Marker, Step, VadSettings, Word
from parley.protocol.common import ProtocolError
from parley.protocol.connection import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    Reaction,
    failure,
)

INTENT = "transcription"
MAX_APPEND_BYTES = 15 * 1024 * 1024  # OpenAI's limit on one append's base64 audio
MIN_COMMIT_MS = 100  # OpenAI refuses to commit less
MAX_AHEAD_S = 600.0  # audio a client may send ahead of real time (as the moshi socket)
G711_RATE_HZ = 8000
FRAME_MS = 1000 * FRAME_SAMPLES // SAMPLE_RATE_HZ
DEFAULT_MODEL = "whisper-1"
# Models OpenAI serves without server-side turn detection: the client commits.
CLIENT_COMMIT_MODELS = ("gpt-realtime-whisper", "gpt-live-transcribe")
# semantic_vad's eagerness: the pause probability (`Step.prs[2]`, the longest horizon) that
# ends a turn, and the pause a VAD-only recogniser (Whisper) waits before its final decode.
EAGERNESS_PAUSE_P = {"low": 0.9, "medium": 0.75, "auto": 0.75, "high": 0.5}
EAGERNESS_SILENCE_S = {"low": 1.0, "medium": 0.5, "auto": 0.5, "high": 0.3}
# Formats: GA `audio.input.format.type` and the beta `input_audio_format` for the same thing.
GA_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
NOISE_REDUCTIONS = ("near_field", "far_field")


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """Sample values (float32, full scale 1) of the 256 μ-law and A-law codes (ITU G.711)."""
    codes = np.arange(256)
    u = ~codes & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    ulaw = (((mantissa << 3) + 0x84) << exponent) - 0x84
    ulaw = np.where(u & 0x80, -ulaw, ulaw)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    alaw = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    alaw = np.where(a & 0x80, alaw, -alaw)
    return (ulaw / 32768).astype(np.float32), (alaw / 32768).astype(np.float32)


ULAW_TABLE, ALAW_TABLE = _g711_tables()


class ClientError(ProtocolError):
    """A bad client event: sent back as an `error` event; the session goes on."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class TurnDetection:
    type: str  # "server_vad" or "semantic_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300  # reported; Parley's pre-roll is fixed at 300 ms
    silence_duration_ms: int = 500
    eagerness: str = "auto"

    def vad_settings(self) -> VadSettings:
        if self.type == "semantic_vad":
            return VadSettings(0.5, EAGERNESS_SILENCE_S[self.eagerness])
        return VadSettings(self.threshold, self.silence_duration_ms / 1000)

    def wire(self) -> dict[str, Any]:
        if self.type == "semantic_vad":
            return {"type": self.type, "eagerness": self.eagerness}
        return {
            "type": self.type,
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }


@dataclass(frozen=True)
class SessionConfig:
    """What a session runs with: what `session.updated` reports."""

    audio_format: str = "audio/pcm"  # one of GA_FORMATS
    model: str = DEFAULT_MODEL
    language: str | None = None
    prompt: str = ""  # accepted and reported; the recogniser takes no prompt
    turn_detection: TurnDetection | None = TurnDetection("server_vad")
    noise_reduction: str | None = None  # accepted and reported; no filter is applied
    include: tuple[str, ...] = ()

    def ga(self, session_id: str) -> dict[str, Any]:
        fmt: dict[str, Any] = {"type": self.audio_format}
        if self.audio_format == "audio/pcm":
            fmt["rate"] = SAMPLE_RATE_HZ
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": self._transcription(),
                    "turn_detection": self.turn_detection and self.turn_detection.wire(),
                    "noise_reduction": self.noise_reduction and {"type": self.noise_reduction},
                }
            },
            "include": list(self.include),
        }

    def beta(self, session_id: str) -> dict[str, Any]:
        fmt = next(k for k, v in BETA_FORMATS.items() if v == self.audio_format)
        return {
            "object": "realtime.transcription_session",
            "id": session_id,
            "modalities": ["text"],
            "input_audio_format": fmt,
            "input_audio_transcription": self._transcription(),
            "turn_detection": self.turn_detection and self.turn_detection.wire(),
            "input_audio_noise_reduction": self.noise_reduction and {"type": self.noise_reduction},
            "include": list(self.include),
        }

    def _transcription(self) -> dict[str, Any]:
        return {"model": self.model, "language": self.language, "prompt": self.prompt}


@dataclass
class _Item:
    """A user item: its audio runs from `start_s` (stream seconds) to its turn end."""

    id: str
    start_s: float
    words: list[str] = field(default_factory=list)
    speech_started: bool = False


@dataclass
class _Pending:
    """Audio up to a pushed `Marker`: a committed item awaiting its words, or cleared audio
    (`item` None) whose words are dropped."""

    marker_id: int
    item: _Item | None
    end_s: float


class RealtimeConnection:
    """One `/v1/realtime?intent=transcription` socket, sans I/O (see the module docstring).

    `model_problem(name)` says why a transcription model name is refused (None: accepted);
    `beta` (the client sent `OpenAI-Beta: realtime=v1`) picks the beta event shapes until the
    client's first update says which it speaks."""

    def __init__(
        self,
        model_problem: Callable[[str], str | None],
        intent: str | None = INTENT,
        beta: bool = False,
        max_ahead_s: float = MAX_AHEAD_S,
    ) -> None:
        self.model_problem = model_problem
        self.intent = intent
        self.beta = beta
        self.max_ahead_s = max_ahead_s
        self.config = SessionConfig()
        self.session_id = f"sess_{uuid.uuid4().hex[:24]}"
        self._events = 0
        self._items = 0
        self._markers = 0
        self._samples = 0  # 24 kHz samples received
        self._uncommitted = 0  # of which since the last commit, clear or turn end
        self._started_s = 0.0
        self._resampler: Any = None  # 8 kHz G.711 -> 24 kHz, per stream
        self._item = self._new_item()
        self._pending: deque[_Pending] = deque()
        self._held: list[Word] = []  # words of audio after the oldest pending Marker
        self._previous_item_id: str | None = None
        self._pause_frames = 0

    # --- Connection ------------------------------------------------------------------------
    def start(self, now_s: float) -> Reaction:
        self._started_s = now_s
        if self.intent != INTENT:
            message = (
                "Parley serves only transcription sessions: connect to "
                "/v1/realtime?intent=transcription (conversation sessions are not available)"
            )
            frame = self._error_frame(message, "intent", "unsupported_intent")
            return failure("protocol", [frame], CLOSE_POLICY, "intent=transcription only")
        created = self._event("session.created", session=self.config.ga(self.session_id))
        return Reaction(push=[self._vad_settings()], send=[created])

    awaits_client = True  # the idle timeout always applies
    encodes_audio = False  # JSON events only

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction:
        return failure(kind, [self._error_frame(message, None, kind, "server_error")], CLOSE_NORMAL)

    def idle(self, timeout_s: float) -> Reaction:
        frame = self._error_frame(f"no data for {timeout_s:g} s", None, "idle_timeout")
        return failure("idle", [frame], CLOSE_NORMAL)

    def receive(self, data: bytes | str, now_s: float) -> Reaction:
        event_id = None
        try:
            event = _json_event(data)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event["type"]
            if kind == "input_audio_buffer.append":
                return self._append(event, now_s)
            if kind == "input_audio_buffer.commit":
                return self._commit()
            if kind == "input_audio_buffer.clear":
                return self._clear()
            if kind == "session.update":
                return self._update(_object(event, "session", None), beta=False)
            if kind == "transcription_session.update":
                return self._update(_object(event, "session", None), beta=True)
            raise ClientError(
                f"event type {kind!r} is not served in a transcription session (served: "
                "session.update, transcription_session.update, input_audio_buffer.append, "
                "input_audio_buffer.commit, input_audio_buffer.clear)",
                "type",
                "unknown_event",
            )
        except ClientError as exc:
            return Reaction(
                send=[self._error_frame(str(exc), exc.param, exc.code, event_id=event_id)]
            )
        except _TooFarAhead as exc:
            frame = self._error_frame(str(exc), None, "audio_ahead_of_real_time", event_id=event_id)
            return failure("too_big", [frame], CLOSE_TOO_BIG)

    def from_session(self, msg: Any) -> Reaction:
        if isinstance(msg, Word):
            return self._word(msg)
        if isinstance(msg, Step):
            return self._step(msg)
        if isinstance(msg, Marker):
            return self._marker(msg)
        if isinstance(msg, ErrorMessage):
            frame = self._error_frame(msg.message, None, "recognition_failed", "server_error")
            return failure("recognition", [frame], CLOSE_NORMAL)
        assert isinstance(msg, Ready | EndWord), msg
        return Reaction()

    # --- client events ---------------------------------------------------------------------
    def _append(self, event: dict[str, Any], now_s: float) -> Reaction:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ClientError("'audio' must be a base64 string", "audio")
        if len(audio) > MAX_APPEND_BYTES:
            raise ClientError(
                f"'audio' of {len(audio)} bytes is over the {MAX_APPEND_BYTES} limit",
                "audio",
                "audio_too_large",
            )
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("'audio' is not valid base64", "audio", "invalid_base64") from None
        pcm = self._decode_audio(raw)
        self._samples += pcm.size
        self._uncommitted += pcm.size
        if self._samples / SAMPLE_RATE_HZ - (now_s - self._started_s) > self.max_ahead_s:
            raise _TooFarAhead(f"more than {self.max_ahead_s:g} s of audio ahead of real time")
        return Reaction(push=[Audio(pcm)] if pcm.size else [])

    def _decode_audio(self, raw: bytes) -> np.ndarray:
        if self.config.audio_format == "audio/pcm":
            if len(raw) % 2:
                raise ClientError(
                    "audio/pcm is 16-bit samples: the decoded audio has an odd number of bytes",
                    "audio",
                    "invalid_audio",
                )
            return np.frombuffer(raw, "<i2").astype(np.float32) / 32768
        table = ULAW_TABLE if self.config.audio_format == "audio/pcmu" else ALAW_TABLE
        if self._resampler is None:
            import soxr

            self._resampler = soxr.ResampleStream(G711_RATE_HZ, SAMPLE_RATE_HZ, 1, dtype="float32")
        pcm8k = table[np.frombuffer(raw, np.uint8)]
        return np.asarray(self._resampler.resample_chunk(pcm8k), np.float32)

    def _commit(self) -> Reaction:
        buffered_ms = 1000 * self._uncommitted / SAMPLE_RATE_HZ
        if buffered_ms < MIN_COMMIT_MS:
            raise ClientError(
                f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, "
                f"but the buffer holds {buffered_ms:.2f} ms",
                None,
                "input_audio_buffer_commit_empty",
            )
        marker = self._next_marker()
        item = self._item
        self._pending.append(_Pending(marker.id, item, self._stream_s()))
        frames = self._committed(item)
        self._item = self._new_item()
        return Reaction(push=[marker], send=frames)

    def _clear(self) -> Reaction:
        marker = self._next_marker()
        self._pending.append(_Pending(marker.id, None, self._stream_s()))
        self._uncommitted = 0
        self._item = self._new_item()
        return Reaction(push=[marker], send=[self._event("input_audio_buffer.cleared")])

    def _update(self, session: dict[str, Any], beta: bool) -> Reaction:
        self.beta = beta
        old = self.config
        config = _beta_session(old, session) if beta else _ga_session(old, session)
        if config.model != old.model:
            problem = self.model_problem(config.model)
            if problem:
                where = "input_audio_transcription" if beta else "audio.input.transcription"
                raise ClientError(problem, f"session.{where}.model", "model_not_found")
        if config.model.startswith(CLIENT_COMMIT_MODELS) and config.turn_detection is not None:
            if _turn_given(session, beta):
                raise ClientError(
                    f"turn_detection must be null for {config.model}: the client commits",
                    "session.turn_detection" if beta else "session.audio.input.turn_detection",
                )
            config = replace(config, turn_detection=None)
        self.config = config
        if config.audio_format != old.audio_format:
            self._resampler = None
        kind = "transcription_session.updated" if beta else "session.updated"
        shape = config.beta if beta else config.ga
        return Reaction(
            push=[self._vad_settings()], send=[self._event(kind, session=shape(self.session_id))]
        )

    # --- recogniser output -----------------------------------------------------------------
    def _word(self, word: Word) -> Reaction:
        # A word belongs to the audio its start lies in: a recogniser may send words of audio
        # after a commit before that commit's Marker (Whisper's final decode takes what it has).
        if self._pending and word.start_time >= self._pending[0].end_s:
            self._held.append(word)  # a later item's: sent once the earlier one completes
            return Reaction()
        if self._pending:
            item = self._pending[0].item
            if item is None:  # cleared audio
                return Reaction()
            frames = []
        else:
            item = self._item
            frames = self._speech_started(item, word.start_time)
        delta = word.text if not item.words else " " + word.text
        item.words.append(word.text)
        frames.append(
            self._event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=0,
                delta=delta,
            )
        )
        return Reaction(send=frames)

    def _step(self, step: Step) -> Reaction:
        turn = self.config.turn_detection
        if turn is None or self._pending or not step.prs:
            self._pause_frames = 0
            return Reaction()
        end_s = (step.step_idx + 1) * FRAME_MS / 1000
        paused = step.prs[0] >= 1.0 - turn.threshold
        if not paused:
            self._pause_frames = 0
            return Reaction(send=self._speech_started(self._item, end_s - FRAME_MS / 1000))
        self._pause_frames += 1
        if turn.type == "semantic_vad":
            over = step.prs[-1] >= EAGERNESS_PAUSE_P[turn.eagerness]
        else:
            over = self._pause_frames * FRAME_MS >= turn.silence_duration_ms
        if not (over and self._item.speech_started):
            return Reaction()
        item = self._item
        stopped_ms = round(1000 * end_s) - self._pause_frames * FRAME_MS
        frames: list[bytes | str] = [
            self._event(
                "input_audio_buffer.speech_stopped", item_id=item.id, audio_end_ms=stopped_ms
            )
        ]
        frames += self._committed(item)
        frames.append(self._completed(item, end_s))
        self._item = self._new_item(end_s)
        self._uncommitted = 0
        return Reaction(send=frames)

    def _marker(self, marker: Marker) -> Reaction:
        if not self._pending or self._pending[0].marker_id != marker.id:
            return Reaction()
        done = self._pending.popleft()
        frames: list[bytes | str] = []
        if done.item is not None:
            frames.append(self._completed(done.item, done.end_s))
        held, self._held = self._held, []
        for word in held:
            frames += self._word(word).send
        return Reaction(send=frames)

    # --- events ----------------------------------------------------------------------------
    def _speech_started(self, item: _Item, start_s: float) -> list[bytes | str]:
        if self.config.turn_detection is None or item.speech_started:
            return []
        item.speech_started = True
        padding_ms = self.config.turn_detection.prefix_padding_ms
        start_ms = max(round(1000 * item.start_s), round(1000 * start_s) - padding_ms)
        return [
            self._event(
                "input_audio_buffer.speech_started", item_id=item.id, audio_start_ms=start_ms
            )
        ]

    def _committed(self, item: _Item) -> list[bytes | str]:
        previous, self._previous_item_id = self._previous_item_id, item.id
        self._uncommitted = 0
        user_item = {
            "id": item.id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        added = "conversation.item.created" if self.beta else "conversation.item.added"
        return [
            self._event("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous),
            self._event(added, previous_item_id=previous, item=user_item),
        ]

    def _completed(self, item: _Item, end_s: float) -> str:
        seconds = round(max(0.0, end_s - item.start_s), 3)
        return self._event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=" ".join(item.words),
            usage={"type": "duration", "seconds": seconds},
        )

    def _event(self, kind: str, **fields: Any) -> str:
        self._events += 1
        return json.dumps({"type": kind, "event_id": f"event_{self._events}", **fields})

    def _error_frame(
        self,
        message: str,
        param: str | None,
        code: str,
        kind: str = "invalid_request_error",
        event_id: str | None = None,
    ) -> str:
        error = {"type": kind, "code": code, "message": message, "param": param}
        return self._event("error", error={**error, "event_id": event_id})

    # --- helpers ---------------------------------------------------------------------------
    def _new_item(self, start_s: float | None = None) -> _Item:
        self._items += 1
        return _Item(f"item_{self._items:06d}", self._stream_s() if start_s is None else start_s)

    def _next_marker(self) -> Marker:
        self._markers += 1
        return Marker(self._markers)

    def _stream_s(self) -> float:
        return self._samples / SAMPLE_RATE_HZ

    def _vad_settings(self) -> VadSettings:
        turn = self.config.turn_detection or TurnDetection("server_vad")
        return turn.vad_settings()


class _TooFarAhead(Exception):
    pass


# --- parsing client events -----------------------------------------------------------------
def _json_event(data: bytes | str) -> dict[str, Any]:
    try:
        text = data.decode() if isinstance(data, bytes) else data
        event = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise ClientError("the event is not valid JSON", None, "invalid_json") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ClientError("an event is a JSON object with a string 'type'", "type", "invalid_event")
    return event


def _object(parent: dict[str, Any], name: str, path: str | None) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise ClientError(f"'{name}' must be an object", f"{path}.{name}" if path else name)
    return value


def _optional_str(parent: dict[str, Any], name: str, path: str) -> str | None:
    value = parent.get(name)
    if value is not None and not isinstance(value, str):
        raise ClientError(f"'{name}' must be a string", f"{path}.{name}")
    return value


def _transcription(config: SessionConfig, t: Any, path: str) -> SessionConfig:
    if t is None:  # "turn off": transcription is what this session is for; keep it on
        return config
    if not isinstance(t, dict):
        raise ClientError("must be an object or null", path)
    model = _optional_str(t, "model", path) or config.model
    language = _optional_str(t, "language", path) if "language" in t else config.language
    if language not in (None, "", "en", "auto"):
        raise ClientError(
            f"language {language!r} is not supported (only 'en', or none)", f"{path}.language"
        )
    prompt = _optional_str(t, "prompt", path) if "prompt" in t else config.prompt
    return replace(config, model=model, language=language or None, prompt=prompt or "")


def _turn(value: Any, path: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ClientError("must be an object or null", path)
    kind = value.get("type") or "server_vad"  # the beta shape may leave it out
    if kind == "semantic_vad":
        eagerness = value.get("eagerness") or "auto"
        if eagerness not in EAGERNESS_PAUSE_P:
            raise ClientError(
                "eagerness must be one of low, medium, high, auto", f"{path}.eagerness"
            )
        return TurnDetection(kind, eagerness=eagerness)
    if kind != "server_vad":
        raise ClientError("type must be server_vad or semantic_vad", f"{path}.type")
    default = TurnDetection(kind)
    threshold = value.get("threshold")
    if threshold is None:
        threshold = default.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ClientError("threshold must be a number", f"{path}.threshold")
    if not 0.0 <= threshold <= 1.0:
        raise ClientError("threshold must be between 0.0 and 1.0", f"{path}.threshold")
    silence = _milliseconds(value, "silence_duration_ms", default.silence_duration_ms, path)
    # Parley's pre-roll is fixed: the effective padding is reported, whatever was asked.
    _milliseconds(value, "prefix_padding_ms", default.prefix_padding_ms, path)
    return TurnDetection(kind, float(threshold), default.prefix_padding_ms, silence)


def _milliseconds(value: dict[str, Any], name: str, default: int, path: str) -> int:
    ms = value.get(name)
    if ms is None:
        return default
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= 10_000:
        raise ClientError(f"{name} must be a whole number from 0 to 10000", f"{path}.{name}")
    return ms


def _noise_reduction(value: Any, path: str) -> str | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in NOISE_REDUCTIONS:
        raise ClientError("noise reduction type must be near_field or far_field", f"{path}.type")
    return str(kind)


def _include(config: SessionConfig, session: dict[str, Any]) -> SessionConfig:
    include = session.get("include", list(config.include))
    if include is None:
        include = []
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise ClientError("'include' must be a list of strings", "session.include")
    return replace(config, include=tuple(include))


def _ga_session(config: SessionConfig, session: dict[str, Any]) -> SessionConfig:
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise ClientError(
            f"session.type {kind!r} is not served: Parley serves transcription sessions only "
            "(session.type = 'transcription')",
            "session.type",
        )
    config = _include(config, session)
    audio = session.get("audio")
    if audio is None:
        return config
    if not isinstance(audio, dict):
        raise ClientError("'audio' must be an object", "session.audio")
    inp = audio.get("input")
    if inp is None:
        return config
    if not isinstance(inp, dict):
        raise ClientError("'input' must be an object", "session.audio.input")
    path = "session.audio.input"
    if "format" in inp and inp["format"] is not None:
        fmt = _object(inp, "format", path)
        kind = fmt.get("type", "audio/pcm")
        if kind not in GA_FORMATS:
            raise ClientError(
                f"format type must be one of {', '.join(GA_FORMATS)}", f"{path}.format.type"
            )
        if kind == "audio/pcm" and fmt.get("rate", SAMPLE_RATE_HZ) != SAMPLE_RATE_HZ:
            raise ClientError("audio/pcm is 24000 Hz only", f"{path}.format.rate")
        config = replace(config, audio_format=kind)
    if "transcription" in inp:
        config = _transcription(config, inp["transcription"], f"{path}.transcription")
    if "turn_detection" in inp:
        config = replace(
            config, turn_detection=_turn(inp["turn_detection"], f"{path}.turn_detection")
        )
    if "noise_reduction" in inp:
        noise = _noise_reduction(inp["noise_reduction"], f"{path}.noise_reduction")
        config = replace(config, noise_reduction=noise)
    return config


def _beta_session(config: SessionConfig, session: dict[str, Any]) -> SessionConfig:
    config = _include(config, session)
    fmt = session.get("input_audio_format")
    if fmt is not None:
        if fmt not in BETA_FORMATS:
            raise ClientError(
                f"input_audio_format must be one of {', '.join(BETA_FORMATS)}",
                "session.input_audio_format",
            )
        config = replace(config, audio_format=BETA_FORMATS[fmt])
    if "input_audio_transcription" in session:
        t = session["input_audio_transcription"]
        config = _transcription(config, t, "session.input_audio_transcription")
    if "turn_detection" in session:
        turn = _turn(session["turn_detection"], "session.turn_detection")
        config = replace(config, turn_detection=turn)
    if "input_audio_noise_reduction" in session:
        noise = _noise_reduction(
            session["input_audio_noise_reduction"], "session.input_audio_noise_reduction"
        )
        config = replace(config, noise_reduction=noise)
    return config


def _turn_given(session: dict[str, Any], beta: bool) -> bool:
    if beta:
        return session.get("turn_detection") is not None
    inp = (session.get("audio") or {}).get("input") or {}
    return inp.get("turn_detection") is not None
