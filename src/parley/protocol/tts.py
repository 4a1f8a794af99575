"""moshi-server's streaming text-to-speech protocol (`/api/tts_streaming`), sans I/O.

Client -> server: WebSocket text frames (words), msgpack `Text{text}`, `Voice{embeddings,shape}`,
`Eos`, or the single byte `\\0` (end of stream).
Server -> client (msgpack formats): `Ready`, `Audio{pcm}` (1920 float32 at 24 kHz) or
`OggOpus{data}`, `Text{text,start_s,stop_s}` per word (seconds of generated audio), `Error`.
The raw formats (`Pcm`, `OggOpus`) carry audio bytes only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    SpeechConfig,
    SpeechEnd,
    SpeechOutput,
    SpokenWord,
    TextPiece,
    VoiceEmbedding,
)
from parley.protocol.common import (
    MessageTooBig,
    ProtocolError,
    common_wire,
    float_array,
    pack,
    unpack_map,
)
from parley.protocol.connection import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    Close,
    Reaction,
    failure,
)

MAX_MESSAGE_TEXT_CHARS = 64 * 1024  # one message; a paragraph is a few hundred


class OutputFormat(Enum):
    PCM = "Pcm"
    PCM_MSGPACK = "PcmMessagePack"
    OGG_OPUS = "OggOpus"
    OGG_OPUS_MSGPACK = "OggOpusMessagePack"

    @property
    def is_msgpack(self) -> bool:
        return self in (OutputFormat.PCM_MSGPACK, OutputFormat.OGG_OPUS_MSGPACK)

    @property
    def is_opus(self) -> bool:
        return self in (OutputFormat.OGG_OPUS, OutputFormat.OGG_OPUS_MSGPACK)

    @classmethod
    def parse(cls, value: str | None) -> OutputFormat:
        if value is None:
            return cls.OGG_OPUS
        for f in cls:
            if f.value.lower() == value.lower():
                return f
        raise ProtocolError(f"unknown format {value!r} (one of {', '.join(f.value for f in cls)})")


# --- client -> server ----------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Eos:
    pass


ClientMessage = Text | VoiceEmbedding | Eos


def check_text(text: str) -> str:
    if len(text) > MAX_MESSAGE_TEXT_CHARS:
        raise ProtocolError(
            f"text message of {len(text)} characters exceeds the {MAX_MESSAGE_TEXT_CHARS} limit"
        )
    return text


def decode_client_text(data: str) -> Text:
    return Text(check_text(data))


def decode_client(data: bytes) -> ClientMessage:
    if data == b"\0":
        return Eos()
    msg = unpack_map(data)
    kind = msg["type"]
    if kind == "Text":
        text = msg.get("text")
        if not isinstance(text, str):
            raise ProtocolError("'text' must be a string")
        return Text(check_text(text))
    if kind == "Eos":
        return Eos()
    if kind == "Voice":
        shape = msg.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape
        ):
            raise ProtocolError("'shape' must be an array of integers")
        return VoiceEmbedding(float_array(msg.get("embeddings"), "embeddings"), shape)
    raise ProtocolError(f"unknown message type {kind!r} (expected Text, Voice or Eos)")


def encode_client(msg: ClientMessage) -> bytes:
    """For clients (and tests): the inverse of decode_client."""
    if isinstance(msg, Text):
        return pack({"type": "Text", "text": msg.text})
    if isinstance(msg, Eos):
        return pack({"type": "Eos"})
    return pack(
        {
            "type": "Voice",
            "embeddings": msg.embeddings.astype(np.float32).tolist(),
            "shape": msg.shape,
        },
        single_float=True,
    )


# --- server -> client ----------------------------------------------------------------------
@dataclass(frozen=True)
class OggOpus:
    """Ogg pages of the session's audio (`OggOpusMessagePack`)."""

    data: bytes


ServerMessage = Ready | AudioFrame | OggOpus | SpokenWord | ErrorMessage


def to_wire(msg: ServerMessage) -> dict[str, Any]:
    if isinstance(msg, AudioFrame):
        return {"type": "Audio", "pcm": msg.pcm.astype(np.float32).tolist()}
    if isinstance(msg, OggOpus):
        return {"type": "OggOpus", "data": msg.data}
    if isinstance(msg, SpokenWord):  # "Text" on the wire
        return {"type": "Text", "text": msg.text, "start_s": msg.start_s, "stop_s": msg.stop_s}
    return common_wire(msg)


def encode_server(msg: ServerMessage) -> bytes:
    if isinstance(msg, AudioFrame):
        return _audio_bytes(msg.pcm)
    return pack(to_wire(msg))


_AUDIO_ITEM = np.dtype([("tag", "u1"), ("value", ">f4")])


def _audio_bytes(pcm: np.ndarray) -> bytes:
    """`{"type": "Audio", "pcm": [float32...]}` in msgpack, the bytes msgpack writes for
    `to_wire` with single floats, built by numpy: a Python list of every sample cost the
    event loop ~10x more per frame."""
    n = len(pcm)
    if n < 16:
        header = bytes([0x90 | n])
    elif n < 1 << 16:
        header = b"\xdc" + n.to_bytes(2, "big")
    else:
        header = b"\xdd" + n.to_bytes(4, "big")
    items = np.empty(n, _AUDIO_ITEM)
    items["tag"] = 0xCA  # float 32
    items["value"] = pcm
    return b"\x82\xa4type\xa5Audio\xa3pcm" + header + items.tobytes()


def decode_server(data: bytes) -> ServerMessage:
    """For clients (and tests): the inverse of encode_server."""
    msg = unpack_map(data)
    kind = msg["type"]
    if kind == "Ready":
        return Ready()
    if kind == "Audio":
        return AudioFrame(np.asarray(msg["pcm"], dtype=np.float32))
    if kind == "OggOpus":
        return OggOpus(bytes(msg["data"]))
    if kind == "Text":
        return SpokenWord(str(msg["text"]), float(msg["start_s"]), float(msg["stop_s"]))
    if kind == "Error":
        return ErrorMessage(str(msg["message"]))
    raise ProtocolError(f"unknown server message type {kind!r}")


# --- one connection ------------------------------------------------------------------------
_WIRE_NAMES = {Text: "Text", VoiceEmbedding: "Voice", Eos: "Eos"}


class TtsConnection:
    """One `/api/tts_streaming` socket, sans I/O. Query: `format`, `voice`. Errors reach the
    client as an `Error` message then close 1000 in the msgpack formats (Kyutai's clients read
    until the socket closes), or as the close reason (1008; 1009 for a message too big) in the
    raw ones. A bad `format` closes 1008 at once. An idle timeout applies until `Eos`."""

    def __init__(self, takes_voice_embeddings: bool, voices: Collection[str]) -> None:
        self.takes_voice_embeddings = takes_voice_embeddings
        self.voices = voices
        self.fmt = OutputFormat.OGG_OPUS
        self.ended = False
        self._spoke = False
        self._opus: Any = None

    def start(
        self, query: Mapping[str, str], resolve_voice: Callable[[str | None], str]
    ) -> Reaction:
        """A refusal (`close` set) or what to push and send once the slot is taken."""
        try:
            self.fmt = OutputFormat.parse(query.get("format"))
        except ProtocolError as exc:
            return failure("protocol", [], CLOSE_POLICY, str(exc))
        try:
            voice = resolve_voice(query.get("voice"))
        except ProtocolError as exc:
            return self._fail("unknown_voice", str(exc))
        if self.fmt.is_opus:
            import sphn

            self._opus = sphn.OpusStreamWriter(SAMPLE_RATE_HZ)
        ready = [encode_server(Ready())] if self.fmt.is_msgpack else []
        return Reaction(push=[SpeechConfig(voice)], send=list(ready))

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction:
        return self._fail(kind, message)

    def receive(self, data: bytes | str, now_s: float) -> Reaction:
        try:
            msg = decode_client_text(data) if isinstance(data, str) else decode_client(data)
            if self.ended:
                raise ProtocolError(f"{_WIRE_NAMES[type(msg)]} message after Eos")
        except MessageTooBig as exc:
            return self._fail("too_big", str(exc), CLOSE_TOO_BIG)
        except ProtocolError as exc:
            return self._fail("protocol", str(exc), CLOSE_POLICY)
        if isinstance(msg, Text):
            self._spoke = True
            return Reaction(push=[TextPiece(msg.text, whole_words=True)])
        if isinstance(msg, Eos):
            self.ended = True
            return Reaction(push=[EndOfText()])
        if not self.takes_voice_embeddings:
            return self._fail(
                "protocol",
                "this server's voices cannot take Voice embeddings; choose a voice with ?voice= "
                f"(known: {', '.join(sorted(self.voices))})",
                CLOSE_POLICY,
            )
        if self._spoke:
            return self._fail("protocol", "a Voice message must come before any Text", CLOSE_POLICY)
        return Reaction(push=[msg])  # the backend checks the embedding's shape

    def from_session(self, msg: SpeechOutput) -> Reaction:
        if isinstance(msg, SpeechEnd):
            return Reaction(close=Close(CLOSE_NORMAL))
        if isinstance(msg, ErrorMessage):
            return self._fail("synthesis", msg.message)
        frame = self._encode(msg)
        return Reaction(send=[frame] if frame else [])

    @property
    def encodes_audio(self) -> bool:
        """Opus formats; `from_session` only reads `fmt` (set in `start`) and the writer."""
        return self.fmt.is_opus

    @property
    def awaits_client(self) -> bool:
        """The idle timeout applies (until Eos)."""
        return not self.ended

    def idle(self, timeout_s: float) -> Reaction:
        return self._fail("idle", f"no text for {timeout_s:g} s")

    def _encode(self, msg: SpeechOutput) -> bytes | None:
        if isinstance(msg, SpokenWord):
            return encode_server(msg) if self.fmt.is_msgpack else None
        if not isinstance(msg, AudioFrame):
            return None
        if self.fmt is OutputFormat.PCM:
            return msg.pcm.astype("<f4").tobytes()
        if self.fmt is OutputFormat.PCM_MSGPACK:
            return encode_server(msg)
        pages = bytes(self._opus.append_pcm(msg.pcm.astype(np.float32)))
        if not pages:
            return None
        if self.fmt is OutputFormat.OGG_OPUS:
            return pages
        return encode_server(OggOpus(pages))

    def _fail(self, kind: str, message: str, raw_code: int = CLOSE_POLICY) -> Reaction:
        if self.fmt.is_msgpack:
            return failure(kind, [encode_server(ErrorMessage(message))], CLOSE_NORMAL)
        return failure(kind, [], raw_code, message)
