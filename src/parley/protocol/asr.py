"""moshi-server's streaming speech-to-text protocol (`/api/asr-streaming`), sans I/O.

Client -> server: `Audio{pcm}` (24 kHz float32, any length), `OggOpus{data}`, `Marker{id}`.
Server -> client: `Ready`, `Word{text,start_time}`, `EndWord{stop_time}`,
`Step{step_idx,prs,buffered_pcm}`, `Marker{id}`, `Error{message}`. Times in seconds of stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parley.engine.messages import ErrorMessage, Ready
from parley.engine.recognition import Audio, EndWord, Marker, RecognitionOutput, Step, Word
from parley.protocol.common import (
    ProtocolError,
    byte_payload,
    common_wire,
    float_array,
    integer,
    pack,
    unpack_map,
)


# --- client -> server ----------------------------------------------------------------------
@dataclass(frozen=True)
class OggOpus:
    """Ogg pages carrying Opus; decoded into `Audio` by the connection."""

    data: bytes


ClientMessage = Audio | OggOpus | Marker


def decode_client(data: bytes) -> ClientMessage | None:
    """A client message; None for one that is valid but means nothing here (`Init`)."""
    msg = unpack_map(data)
    kind = msg["type"]
    if kind == "Audio":
        return Audio(float_array(msg.get("pcm"), "pcm"))
    if kind == "OggOpus":
        return OggOpus(byte_payload(msg.get("data"), "data"))
    if kind == "Marker":
        return Marker(integer(msg.get("id"), "id"))
    if kind == "Init":  # moshi's internal message; harmless from a client
        return None
    raise ProtocolError(f"unknown message type {kind!r} (expected Audio, OggOpus or Marker)")


# --- server -> client ----------------------------------------------------------------------
ServerMessage = RecognitionOutput


def to_wire(msg: ServerMessage) -> dict[str, Any]:
    if isinstance(msg, Word):
        return {"type": "Word", "text": msg.text, "start_time": msg.start_time}
    if isinstance(msg, EndWord):
        return {"type": "EndWord", "stop_time": msg.stop_time}
    if isinstance(msg, Step):
        return {
            "type": "Step",
            "step_idx": msg.step_idx,
            "prs": msg.prs,
            "buffered_pcm": msg.buffered_pcm,
        }
    if isinstance(msg, Marker):
        return {"type": "Marker", "id": msg.id}
    return common_wire(msg)


def encode_server(msg: ServerMessage) -> bytes:
    return pack(to_wire(msg))


def decode_server(data: bytes) -> ServerMessage:
    """For clients (and tests): the inverse of encode_server."""
    msg = unpack_map(data)
    kind = msg["type"]
    if kind == "Ready":
        return Ready()
    if kind == "Word":
        return Word(str(msg["text"]), float(msg["start_time"]))
    if kind == "EndWord":
        return EndWord(float(msg["stop_time"]))
    if kind == "Step":
        return Step(int(msg["step_idx"]), [float(p) for p in msg["prs"]], int(msg["buffered_pcm"]))
    if kind == "Marker":
        return Marker(int(msg["id"]))
    if kind == "Error":
        return ErrorMessage(str(msg["message"]))
    raise ProtocolError(f"unknown server message type {kind!r}")


__all__ = [
    "Audio",
    "ClientMessage",
    "EndWord",
    "ErrorMessage",
    "Marker",
    "OggOpus",
    "ProtocolError",
    "Ready",
    "ServerMessage",
    "Step",
    "Word",
    "decode_client",
    "decode_server",
    "encode_server",
    "to_wire",
]
