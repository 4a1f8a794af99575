"""moshi-server's streaming text-to-speech protocol (`/api/tts_streaming`), sans I/O.

Client -> server: WebSocket text frames (words), msgpack `Text{text}`, `Voice{embeddings,shape}`,
`Eos`, or the single byte `\\0` (end of stream).
Server -> client (msgpack formats): `Ready`, `Audio{pcm}` (1920 float32 at 24 kHz) or
`OggOpus{data}`, `Text{text,start_s,stop_s}` per word (seconds of generated audio), `Error`.
The raw formats (`Pcm`, `OggOpus`) carry audio bytes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from parley.engine.messages import ErrorMessage, Ready
from parley.engine.speech import AudioFrame, SpokenWord, VoiceEmbedding
from parley.protocol.common import (
    ProtocolError,
    common_wire,
    float_array,
    pack,
    unpack_map,
)

MAX_TEXT_CHARS = 64 * 1024  # one message; a paragraph is a few hundred


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
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(
            f"text message of {len(text)} characters exceeds the {MAX_TEXT_CHARS} limit"
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
    return pack(to_wire(msg), single_float=isinstance(msg, AudioFrame))


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
