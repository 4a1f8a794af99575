"""moshi-server's streaming speech-to-text protocol (`/api/asr-streaming`), sans I/O.

Client -> server: `Audio{pcm}` (24 kHz float32, any length), `OggOpus{data}`, `Marker{id}`.
Server -> client: `Ready`, `Word{text,start_time}`, `EndWord{stop_time}`,
`Step{step_idx,prs,buffered_pcm}`, `Marker{id}`, `Error{message}`. Times in seconds of stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.recognition import Audio, EndWord, Marker, RecognitionOutput, Step, Word
from parley.protocol.common import (
    MessageTooBig,
    ProtocolError,
    byte_payload,
    common_wire,
    float_array,
    integer,
    pack,
    unpack_map,
)
from parley.protocol.connection import (
    CLOSE_BAD_DATA,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    Close,
    Reaction,
    failure,
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


def encode_client(msg: Audio | Marker) -> bytes:
    """For clients (and tests): the inverse of decode_client."""
    if isinstance(msg, Audio):
        return pack({"type": "Audio", "pcm": msg.pcm.astype(np.float32).tolist()}, True)
    return pack({"type": "Marker", "id": msg.id})


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


# --- one connection ------------------------------------------------------------------------
MAX_AHEAD_S = 600.0  # audio a client may send ahead of real time


class AsrConnection:
    """One `/api/asr-streaming` socket, sans I/O. Binary frames are messages (text frames are
    ignored, as moshi-server does); Ogg/Opus is decoded as it comes. A bad message gets one
    `Error`, then close 1003 (1009 for one too big or audio too far ahead of real time)."""

    def __init__(self, max_ahead_s: float = MAX_AHEAD_S) -> None:
        self.max_ahead_s = max_ahead_s
        self._opus: Any = None
        self._samples = 0
        self._started_s = 0.0

    def start(self, now_s: float) -> Reaction:
        self._started_s = now_s
        return Reaction()  # `Ready` comes from the backend once the slot is live

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction:
        return failure(kind, [encode_server(ErrorMessage(message))], CLOSE_NORMAL)

    def receive(self, data: bytes | str, now_s: float) -> Reaction:
        if isinstance(data, str):
            return Reaction()  # text frames are ignored, as moshi-server does
        try:
            msg = decode_client(data)
            if isinstance(msg, OggOpus):
                msg = self._decode_opus(msg.data)
        except MessageTooBig as exc:
            return self._fail("too_big", str(exc), CLOSE_TOO_BIG)
        except ProtocolError as exc:
            return self._fail("protocol", str(exc), CLOSE_BAD_DATA)
        if msg is None:
            return Reaction()
        if isinstance(msg, Audio):
            self._samples += msg.pcm.size
            if self._samples / SAMPLE_RATE_HZ - (now_s - self._started_s) > self.max_ahead_s:
                return self._fail(
                    "too_big", "too much audio sent ahead of real time", CLOSE_TOO_BIG
                )
        return Reaction(push=[msg])

    def from_session(self, msg: ServerMessage) -> Reaction:
        close = Close(CLOSE_NORMAL) if isinstance(msg, ErrorMessage) else None
        return Reaction(send=[encode_server(msg)], close=close)

    awaits_client = True  # the idle timeout always applies
    encodes_audio = False

    def idle(self, timeout_s: float) -> Reaction:
        return self._fail("idle", f"no data for {timeout_s:g} s", CLOSE_NORMAL)

    def _decode_opus(self, data: bytes) -> Audio | None:
        if self._opus is None:
            import sphn

            self._opus = sphn.OpusStreamReader(SAMPLE_RATE_HZ)
        try:
            pcm = np.asarray(self._opus.append_bytes(data), dtype=np.float32)
        except Exception as exc:
            raise ProtocolError(f"undecodable Ogg/Opus data: {exc}") from None
        return Audio(pcm) if pcm.size else None

    def _fail(self, kind: str, message: str, code: int) -> Reaction:
        return failure(kind, [encode_server(ErrorMessage(message))], code)


__all__ = [
    "AsrConnection",
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
    "encode_client",
    "encode_server",
    "to_wire",
]
