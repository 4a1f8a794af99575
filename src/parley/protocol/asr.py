"""moshi-server's streaming speech-to-text protocol (`/api/asr-streaming`), sans I/O.

Client -> server: `Audio{pcm}` (24 kHz float32, any length), `OggOpus{data}`, `Marker{id}`.
Server -> client: `Ready`, `Word{text,start_time}`, `EndWord{stop_time}`,
`Step{step_idx,prs,buffered_pcm}`, `Marker{id}`, `Error{message}`. Times in seconds of stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.protocol.common import (
    ErrorMessage,
    ProtocolError,
    Ready,
    byte_payload,
    float_array,
    integer,
    pack,
    unpack_map,
)


# --- client -> server ----------------------------------------------------------------------
@dataclass(frozen=True)
class Audio:
    pcm: np.ndarray  # float32 samples at 24 kHz


@dataclass(frozen=True)
class OggOpus:
    data: bytes  # Ogg pages carrying Opus


@dataclass(frozen=True)
class Marker:
    id: int

    def to_wire(self) -> dict[str, Any]:
        return {"type": "Marker", "id": self.id}


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
@dataclass(frozen=True)
class Word:
    text: str
    start_time: float  # seconds from stream start

    def to_wire(self) -> dict[str, Any]:
        return {"type": "Word", "text": self.text, "start_time": self.start_time}


@dataclass(frozen=True)
class EndWord:
    stop_time: float  # seconds from stream start

    def to_wire(self) -> dict[str, Any]:
        return {"type": "EndWord", "stop_time": self.stop_time}


@dataclass(frozen=True)
class Step:
    step_idx: int
    prs: list[float] = field(default_factory=list)  # pause probabilities, short to long horizon
    buffered_pcm: int = 0  # samples received but not yet processed

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "Step",
            "step_idx": self.step_idx,
            "prs": self.prs,
            "buffered_pcm": self.buffered_pcm,
        }


ServerMessage = Ready | Word | EndWord | Step | Marker | ErrorMessage


def encode_server(msg: ServerMessage) -> bytes:
    return pack(msg.to_wire())


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
]
