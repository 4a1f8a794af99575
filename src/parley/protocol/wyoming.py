"""Home Assistant's Wyoming protocol (TCP, PyPI `wyoming` 1.10), sans I/O.

An event is one JSON header line (`type`, optional `data`, `data_length`, `payload_length`),
then `data_length` bytes of JSON merged into `data`, then `payload_length` bytes of payload
(PCM audio). `EventReader` cuts a byte stream into events, with every length bounded.

One connection may describe, transcribe and synthesise any number of times, one request at a
time; each transcription or synthesis is a session that takes a slot of the module it uses
(`Reaction.open`) and frees it when it ends (`Reaction.release`), so a connected satellite
holds no slot between requests.

- `describe` -> `info`: one `asr` program (a model per STT module) and one `tts` program
  (every voice of every TTS module), both streaming.
- STT: [`transcribe{name,language,vad_sensitivity}`], `audio-start`, `audio-chunk`* (any rate,
  width 1/2/4, any channel count; converted to 24 kHz mono), `audio-stop` ->
  `transcript-start` at once, `transcript-chunk` per committed word, then `transcript{text}`
  and `transcript-stop`. The module's end of utterance (a pause, `Step.prs[2]`) finishes the
  transcript without waiting for `audio-stop`; audio up to that `audio-stop` is then dropped.
- TTS: `synthesize{text,voice}` -> `audio-start`, `audio-chunk`* (24 kHz s16le mono),
  `audio-stop`. Streaming: `synthesize-start{voice}`, `synthesize-chunk{text}`* (LLM pieces),
  `synthesize-stop` -> the same audio events, then `synthesize-stopped`; the `synthesize` a
  streaming client also sends (for older servers) is ignored.
- `ping` -> `pong`; other event types are dropped, as the protocol asks.
- A malformed event, an oversized one, a bad audio format or an unknown voice: one `error`
  event (`text`, `code`), then the connection closes and its slot, if any, is freed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from parley.engine.backend import FRAME_MS, SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage
from parley.engine.recognition import Audio, Marker, Step, Word
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    SpeechConfig,
    SpeechEnd,
    TextPiece,
)
from parley.protocol.common import MessageTooBig, ProtocolError
from parley.protocol.connection import Close, Reaction
from parley.protocol.tts import MAX_MESSAGE_TEXT_CHARS

MAX_HEADER_BYTES = 16 * 1024  # the JSON line; real ones are under 200 bytes
MAX_DATA_BYTES = 4 * MAX_MESSAGE_TEXT_CHARS + 4096  # a synthesize's text in UTF-8, and more
MAX_PAYLOAD_BYTES = 1024 * 1024  # one audio chunk: 5 s of 48 kHz stereo s16
MAX_AHEAD_S = 600.0  # audio a client may send ahead of real time
MAX_RATE_HZ = 192_000
MAX_CHANNELS = 8
OUTPUT_WIDTH_BYTES = 2  # TTS audio: s16le mono at the engine's rate
PAUSE_PROBABILITY = 0.5  # Step.prs[2] at or above it: the speaker has paused
# How long a pause (Steps with prs[2] >= PAUSE_PROBABILITY, after at least one word) must
# last before the transcript is finished, by the client's `vad_sensitivity`. prs[2] itself
# rises only after ~0.5 s of silence (Whisper's VAD horizon; Kyutai's end-of-turn head).
END_HOLD_S = {"aggressive": 0.0, "default": 0.24, "relaxed": 0.8}


class Refused(ProtocolError):
    """A request this server cannot serve; `kind` is the error's code and metric label."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- framing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class WireEvent:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""


def encode_event(kind: str, data: dict[str, Any] | None = None, payload: bytes = b"") -> bytes:
    """One event; `data` goes after the header line, as the `wyoming` package writes it."""
    header: dict[str, Any] = {"type": kind}
    body = json.dumps(data, ensure_ascii=False).encode() if data else b""
    if body:
        header["data_length"] = len(body)
    if payload:
        header["payload_length"] = len(payload)
    return json.dumps(header, ensure_ascii=False).encode() + b"\n" + body + payload


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"'{key}' must be a non-negative integer")
    if value > limit:
        raise MessageTooBig(f"{key} of {value} bytes exceeds the {limit} limit")
    return value


class EventReader:
    """Bytes in (any cut), whole events out; ProtocolError / MessageTooBig on bad input."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: dict[str, Any] | None = None
        self._data_bytes = 0
        self._payload_bytes = 0

    def feed(self, data: bytes) -> Iterator[WireEvent]:
        """The events `data` completes, one by one: those before a bad one are still given."""
        self._buffer += data
        while True:
            if self._header is None and not self._read_header():
                return
            assert self._header is not None
            need = self._data_bytes + self._payload_bytes
            if len(self._buffer) < need:
                return
            event = self._event(bytes(self._buffer[:need]))
            del self._buffer[:need]
            self._header = None
            yield event

    def _read_header(self) -> bool:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise MessageTooBig(f"event header over {MAX_HEADER_BYTES} bytes")
            return False
        if end > MAX_HEADER_BYTES:
            raise MessageTooBig(f"event header over {MAX_HEADER_BYTES} bytes")
        header = _json_object(bytes(self._buffer[:end]), "event header")
        del self._buffer[: end + 1]
        if not isinstance(header.get("type"), str):
            raise ProtocolError("event header has no string 'type'")
        if not isinstance(header.get("data", {}), dict):
            raise ProtocolError("event 'data' must be an object")
        self._data_bytes = _length(header, "data_length", MAX_DATA_BYTES)
        self._payload_bytes = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
        self._header = header
        return True

    def _event(self, body: bytes) -> WireEvent:
        assert self._header is not None
        data = dict(self._header.get("data") or {})
        if self._data_bytes:
            data.update(_json_object(body[: self._data_bytes], "event data"))
        return WireEvent(self._header["type"], data, body[self._data_bytes :])


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


# --- audio in ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioFormat:
    rate_hz: int
    width_bytes: int
    channels: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> AudioFormat:
        fmt = cls(*(_integer(data, key) for key in ("rate", "width", "channels")))
        if not 1000 <= fmt.rate_hz <= MAX_RATE_HZ:
            raise ProtocolError(
                f"audio rate {fmt.rate_hz} Hz is not between 1000 and {MAX_RATE_HZ}"
            )
        if fmt.width_bytes not in (1, 2, 4):
            raise ProtocolError(f"audio width {fmt.width_bytes} is not 1, 2 or 4 bytes")
        if not 1 <= fmt.channels <= MAX_CHANNELS:
            raise ProtocolError(
                f"audio channels {fmt.channels} is not between 1 and {MAX_CHANNELS}"
            )
        return fmt


_SAMPLE_TYPES: dict[int, str] = {1: "u1", 2: "<i2", 4: "<i4"}


class PcmConverter:
    """Integer PCM at any rate and channel count -> float32 mono at the engine's rate."""

    def __init__(self, fmt: AudioFormat) -> None:
        import soxr

        self.fmt = fmt
        self._resampler = (
            None
            if fmt.rate_hz == SAMPLE_RATE_HZ
            else soxr.ResampleStream(fmt.rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32")
        )

    def convert(self, payload: bytes, last: bool = False) -> np.ndarray:
        fmt = self.fmt
        frame_bytes = fmt.width_bytes * fmt.channels
        if len(payload) % frame_bytes:
            raise ProtocolError(
                f"audio chunk of {len(payload)} bytes is not whole frames of {frame_bytes} bytes"
            )
        ints = np.frombuffer(payload, dtype=_SAMPLE_TYPES[fmt.width_bytes]).astype(np.float32)
        if fmt.width_bytes == 1:
            ints -= 128.0  # 8-bit PCM is unsigned
        full_scale = float(2 ** (8 * fmt.width_bytes - 1))
        pcm: np.ndarray = (ints.reshape(-1, fmt.channels).mean(axis=1) / full_scale).astype(
            np.float32
        )
        if self._resampler is not None:
            pcm = np.asarray(self._resampler.resample_chunk(pcm, last=last), dtype=np.float32)
        return pcm


# --- what the server offers ----------------------------------------------------------------
@dataclass(frozen=True)
class Attribution:
    name: str
    url: str


@dataclass(frozen=True)
class SttModule:
    name: str  # the module's name: the model name a `transcribe` asks for
    description: str
    languages: Sequence[str]
    attribution: Attribution


@dataclass(frozen=True)
class Voice:
    name: str
    languages: Sequence[str]


class VoiceResolver(Protocol):
    """`server.voice_names.VoiceNames`: a configured voice for a name or alias, or a
    ValueError naming the voices."""

    def resolve(self, name: str | None) -> str: ...


@dataclass(frozen=True)
class TtsModule:
    name: str
    voices: Sequence[Voice]
    default_voice: str
    names: VoiceResolver
    attribution: Attribution


@dataclass(frozen=True)
class Catalog:
    """The modules a Wyoming server exposes, in the order `info` lists them."""

    stt: Sequence[SttModule]
    tts: Sequence[TtsModule]
    version: str
    program_attribution: Attribution = Attribution("Parley", "")

    def info(self) -> dict[str, Any]:
        """The `info` event's data: programs carry Parley's version, models and voices none."""

        def artifact(
            name: str, description: str, by: Attribution, version: str | None = None
        ) -> dict[str, Any]:
            return {
                "name": name,
                "description": description,
                "attribution": {"name": by.name, "url": by.url},
                "installed": True,
                "version": version,
            }

        programs: dict[str, list[dict[str, Any]]] = {
            kind: [] for kind in ("asr", "tts", "handle", "intent", "wake", "mic", "snd")
        }
        by, version = self.program_attribution, self.version
        if self.stt:
            models = [
                {**artifact(m.name, m.description, m.attribution), "languages": list(m.languages)}
                for m in self.stt
            ]
            programs["asr"].append(
                {
                    **artifact("parley", "Parley streaming speech-to-text", by, version),
                    "models": models,
                    "supports_transcript_streaming": True,
                    "requires_external_vad": False,  # every STT module finds the end itself
                }
            )
        if self.tts:
            voices = [
                {
                    **artifact(v.name, f"voice of module {m.name}", m.attribution),
                    "languages": list(v.languages),
                    "speakers": None,
                }
                for m in self.tts
                for v in m.voices
            ]
            programs["tts"].append(
                {
                    **artifact("parley", "Parley streaming text-to-speech", by, version),
                    "voices": voices,
                    "supports_synthesize_streaming": True,
                }
            )
        return dict(programs)

    def voice_for(self, name: str | None, language: str | None) -> tuple[str, str]:
        """(module, voice) for a `voice` object's name or else language; ProtocolError."""
        if not self.tts:
            raise Refused("this server has no text-to-speech module", "no_module")
        if name:
            for m in self.tts:
                try:
                    return m.name, m.names.resolve(name)
                except ValueError:
                    continue
            known = ", ".join(v.name for m in self.tts for v in m.voices)
            raise Refused(f"unknown voice {name!r} (known: {known})", "unknown_voice")
        if language:
            for m in self.tts:
                for v in m.voices:
                    if any(_same_language(language, lang) for lang in v.languages):
                        return m.name, v.name
            raise Refused(f"no voice speaks {language!r}", "unknown_voice")
        return self.tts[0].name, self.tts[0].default_voice

    def stt_module(self, name: str | None, language: str | None) -> SttModule:
        if not self.stt:
            raise Refused("this server has no speech-to-text module", "no_module")
        module = self.stt[0]
        if name:
            found = [m for m in self.stt if m.name == name]
            if not found:
                known = ", ".join(m.name for m in self.stt)
                raise Refused(f"unknown model {name!r} (known: {known})", "unknown_model")
            module = found[0]
        if language and not any(_same_language(language, lang) for lang in module.languages):
            raise Refused(
                f"model {module.name} does not transcribe {language!r} "
                f"(languages: {', '.join(module.languages)})",
                "unknown_language",
            )
        return module


def _same_language(asked: str, offered: str) -> bool:
    """`en` matches `en_US` and `en-us`; `en_US` matches only `en_US`/`en-us` (or `en`)."""
    a, o = (x.replace("-", "_").lower() for x in (asked, offered))
    return a == o or o.startswith(a + "_") or a.startswith(o + "_")


def _integer(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"'{key}' must be an integer")
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"'{key}' must be a string")
    return value


def _text(data: dict[str, Any]) -> str:
    text = data.get("text")
    if not isinstance(text, str):
        raise ProtocolError("'text' must be a string")
    if len(text) > MAX_MESSAGE_TEXT_CHARS:
        raise MessageTooBig(f"text of {len(text)} characters exceeds {MAX_MESSAGE_TEXT_CHARS}")
    return text


def error_event(message: str, kind: str) -> bytes:
    return encode_event("error", {"text": message, "code": kind})


# --- one connection ------------------------------------------------------------------------
@dataclass
class _Transcription:
    """One STT session, from `audio-start` to its transcript."""

    module: str
    end_hold_steps: int  # pause Steps that end the utterance (see END_HOLD_S)
    converter: PcmConverter | None = None
    started_s: float = 0.0
    samples: int = 0
    words: list[str] = field(default_factory=list)
    pause_steps: int = 0
    finishing: bool = False  # the Marker is pushed: the transcript comes when it returns


@dataclass
class _Synthesis:
    """One TTS session, from `synthesize`/`synthesize-start` to its last audio."""

    module: str
    streaming: bool
    text_ended: bool = False
    audio_started: bool = False


class WyomingConnection:
    """One Wyoming TCP connection, sans I/O: bytes and session messages in, `Reaction`s out
    (see the module docstring). `open` asks the adapter for a slot of that module before the
    reaction's items are pushed; `release` frees it once the frames are sent."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._reader = EventReader()
        self._request: dict[str, Any] = {}  # the last `transcribe`'s fields
        self._stt: _Transcription | None = None
        self._tts: _Synthesis | None = None
        self._dropping_audio = False  # the transcript came early: drop audio up to audio-stop
        self._markers = 0

    @property
    def awaits_client(self) -> bool:
        """The idle timeout applies, except while the server still owes the client output."""
        if self._stt is not None:
            return not self._stt.finishing
        return self._tts is None or not self._tts.text_ended

    @property
    def module(self) -> str | None:
        """The module of the request in progress (None between requests)."""
        session = self._stt or self._tts
        return session.module if session else None

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction:
        self._stt = self._tts = None
        return self._fail(kind, message)

    def idle(self, timeout_s: float) -> Reaction:
        return self._fail("idle", f"no event for {timeout_s:g} s")

    def receive(self, data: bytes | str, now_s: float) -> Reaction:
        raw = data.encode() if isinstance(data, str) else data
        reaction = Reaction()
        try:
            for event in self._reader.feed(raw):
                step = self._on_event(event, now_s)
                reaction.push += step.push
                reaction.send += step.send
                reaction.open = reaction.open or step.open
                reaction.release = reaction.release or step.release
        except ProtocolError as exc:
            kind = exc.kind if isinstance(exc, Refused) else "protocol"
            failed = self._fail("too_big" if isinstance(exc, MessageTooBig) else kind, str(exc))
            # What the events before the bad one asked for still happens, then the error.
            return Reaction(
                reaction.push,
                reaction.send + failed.send,
                failed.close,
                failed.error_kind,
                reaction.open,
            )
        return reaction

    def from_session(self, msg: Any) -> Reaction:
        if isinstance(msg, ErrorMessage):
            return self._fail("session", msg.message)
        if self._stt is not None:
            return self._recognised(self._stt, msg)
        if self._tts is not None:
            return self._spoken(self._tts, msg)
        return Reaction()

    # --- client events ---------------------------------------------------------------------
    def _on_event(self, event: WireEvent, now_s: float) -> Reaction:
        kind, data = event.type, event.data
        if kind == "describe":
            return Reaction(send=[encode_event("info", self.catalog.info())])
        if kind == "ping":
            return Reaction(send=[encode_event("pong", {"text": _optional_str(data, "text")})])
        if kind == "transcribe":
            self._idle_or_refuse(kind)
            self._request = {
                "name": _optional_str(data, "name"),
                "language": _optional_str(data, "language"),
                "vad_sensitivity": _optional_str(data, "vad_sensitivity") or "default",
            }
            if self._request["vad_sensitivity"] not in END_HOLD_S:
                raise ProtocolError(f"vad_sensitivity must be one of {', '.join(END_HOLD_S)}")
            self.catalog.stt_module(self._request["name"], self._request["language"])
            return Reaction()
        if kind in ("audio-start", "audio-chunk", "audio-stop"):
            return self._audio(event, now_s)
        if kind in ("synthesize", "synthesize-start"):
            if kind == "synthesize" and self._tts is not None and self._tts.streaming:
                return Reaction()  # the copy of the whole text a streaming client also sends
            return self._synthesize(data, streaming=kind == "synthesize-start")
        if kind == "synthesize-chunk":
            self._streaming_synthesis(kind)
            return Reaction(push=[TextPiece(_text(data), whole_words=False)])
        if kind == "synthesize-stop":
            tts = self._streaming_synthesis(kind)
            tts.text_ended = True
            return Reaction(push=[EndOfText()])
        return Reaction()  # unknown events are dropped (the protocol says so)

    def _idle_or_refuse(self, kind: str) -> None:
        if self._stt is not None or self._tts is not None:
            busy = "a transcription" if self._stt is not None else "a synthesis"
            raise ProtocolError(f"{kind} while {busy} is in progress")

    def _audio(self, event: WireEvent, now_s: float) -> Reaction:
        if self._tts is not None:
            raise ProtocolError(f"{event.type} during a synthesis")
        if self._dropping_audio:
            # The transcript came early; the client's stream ends at its audio-stop, or a
            # new audio-start begins the next utterance.
            self._dropping_audio = event.type not in ("audio-stop", "audio-start")
            if self._dropping_audio or event.type == "audio-stop" or self._stt is not None:
                return Reaction()
        stt, opened = self._stt, None
        if stt is None:
            if event.type == "audio-stop":
                raise ProtocolError("audio-stop without audio-start")
            module = self.catalog.stt_module(
                self._request.get("name"), self._request.get("language")
            )
            hold_s = END_HOLD_S[self._request.get("vad_sensitivity", "default")]
            stt = self._stt = _Transcription(
                module.name, 1 + round(hold_s * 1000 / FRAME_MS), started_s=now_s
            )
            opened = module.name
        start: list[bytes | str] = [encode_event("transcript-start")] if opened else []
        if event.type == "audio-stop":
            return Reaction(push=self._finish(stt, last_audio=True))
        if stt.finishing:
            return Reaction()  # the utterance has ended; the transcript is on its way
        fmt = AudioFormat.of(event.data)
        if stt.converter is None:
            stt.converter = PcmConverter(fmt)
        elif fmt != stt.converter.fmt:
            raise ProtocolError(f"audio format changed mid-stream ({stt.converter.fmt} -> {fmt})")
        if event.type == "audio-start":
            return Reaction(send=start, open=opened)
        pcm = stt.converter.convert(event.payload)
        stt.samples += pcm.size
        if stt.samples / SAMPLE_RATE_HZ - (now_s - stt.started_s) > MAX_AHEAD_S:
            raise MessageTooBig("too much audio sent ahead of real time")
        return Reaction(push=[Audio(pcm)] if pcm.size else [], send=start, open=opened)

    def _finish(self, stt: _Transcription, last_audio: bool) -> list[Any]:
        """The items that end the utterance: the resampler's tail, then a Marker."""
        if stt.finishing:
            return []
        stt.finishing = True
        items: list[Any] = []
        if last_audio and stt.converter is not None:
            tail = stt.converter.convert(b"", last=True)
            if tail.size:
                items.append(Audio(tail))
        self._markers += 1
        return [*items, Marker(self._markers)]

    def _synthesize(self, data: dict[str, Any], streaming: bool) -> Reaction:
        self._idle_or_refuse("synthesize-start" if streaming else "synthesize")
        voice = data.get("voice") or {}
        if not isinstance(voice, dict):
            raise ProtocolError("'voice' must be an object")
        if data.get("text_format") not in (None, "text"):
            raise Refused(f"text_format {data['text_format']!r} is not supported", "protocol")
        name, language = _optional_str(voice, "name"), _optional_str(voice, "language")
        if _optional_str(voice, "speaker"):
            raise Refused("Parley's voices have no speakers", "unknown_voice")
        text = None if streaming else _text(data)
        module, resolved = self.catalog.voice_for(name, language)
        self._tts = _Synthesis(module, streaming)
        push: list[Any] = [SpeechConfig(resolved)]
        if text is not None:
            self._tts.text_ended = True
            push += [TextPiece(text, whole_words=False), EndOfText()]
        return Reaction(push=push, open=module)

    def _streaming_synthesis(self, kind: str) -> _Synthesis:
        if self._tts is None or not self._tts.streaming:
            raise ProtocolError(f"{kind} without synthesize-start")
        if self._tts.text_ended:
            raise ProtocolError(f"{kind} after synthesize-stop")
        return self._tts

    # --- session messages ------------------------------------------------------------------
    def _recognised(self, stt: _Transcription, msg: Any) -> Reaction:
        if isinstance(msg, Word):
            stt.words.append(msg.text)
            chunk = msg.text if len(stt.words) == 1 else " " + msg.text
            return Reaction(send=[encode_event("transcript-chunk", {"text": chunk})])
        if isinstance(msg, Step):
            paused = len(msg.prs) > 2 and msg.prs[2] >= PAUSE_PROBABILITY
            stt.pause_steps = stt.pause_steps + 1 if paused and stt.words else 0
            if stt.pause_steps >= stt.end_hold_steps and not stt.finishing:
                self._dropping_audio = True  # until the client's audio-stop
                return Reaction(push=self._finish(stt, last_audio=False))
            return Reaction()
        if isinstance(msg, Marker) and msg.id == self._markers:
            self._stt = None
            text = " ".join(stt.words)
            return Reaction(
                send=[
                    encode_event("transcript", {"text": text}),
                    encode_event("transcript-stop"),
                ],
                release=True,
            )
        return Reaction()  # Ready, EndWord, a stale Marker

    def _spoken(self, tts: _Synthesis, msg: Any) -> Reaction:
        if not isinstance(msg, AudioFrame | SpeechEnd):
            return Reaction()  # Ready, SpokenWord, PhraseEnd: Wyoming has no word times
        send: list[bytes | str] = (
            [] if tts.audio_started else [encode_event("audio-start", _AUDIO_FORMAT)]
        )
        tts.audio_started = True
        if isinstance(msg, AudioFrame):
            pcm = np.clip(msg.pcm, -1.0, 1.0) * 32767.0
            send.append(encode_event("audio-chunk", _AUDIO_FORMAT, pcm.astype("<i2").tobytes()))
            return Reaction(send=send)
        self._tts = None
        send.append(encode_event("audio-stop"))
        if tts.streaming:
            send.append(encode_event("synthesize-stopped"))
        return Reaction(send=send, release=True)

    def _fail(self, kind: str, message: str) -> Reaction:
        return Reaction(send=[error_event(message, kind)], close=Close(), error_kind=kind)


_AUDIO_FORMAT = {"rate": SAMPLE_RATE_HZ, "width": OUTPUT_WIDTH_BYTES, "channels": 1}
