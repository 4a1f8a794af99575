"""The Moshi web client's full-duplex protocol (`/api/chat`), sans I/O.

Binary frames whose first byte is the kind: `0x00` handshake (sent once the slot is live),
`0x01` Ogg/Opus audio (both directions), `0x02` a UTF-8 text piece (server to client), `0x05`
an error (then the socket closes, 1000). Other kinds from the client (control, metadata, ping),
text frames and empty frames are ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.chat import ChatAudio, ChatOutput, ChatText, UserAudio
from parley.engine.messages import ErrorMessage
from parley.protocol.connection import CLOSE_NORMAL, Reaction, failure

HANDSHAKE, AUDIO, TEXT, ERROR = 0x00, 0x01, 0x02, 0x05
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_UNDECODED_BYTES = 256 * 1024  # Ogg pages that yield no audio at all: not Opus
MAX_AHEAD_S = 30.0  # user audio a client may send ahead of real time


class ChatConnection:
    awaits_client = False  # a listener may stay silent
    encodes_audio = True  # Opus pages out; `receive` only touches the reader's state

    def __init__(self) -> None:
        self._reader: Any = None
        self._writer: Any = None
        self._started_s = 0.0
        self._received = 0  # samples of user audio
        self._undecoded = 0  # bytes since the last decoded audio

    def start(self, now_s: float) -> Reaction:
        import sphn

        self._reader = sphn.OpusStreamReader(SAMPLE_RATE_HZ)
        self._writer = sphn.OpusStreamWriter(SAMPLE_RATE_HZ)
        self._started_s = now_s
        return Reaction(send=[bytes([HANDSHAKE])])

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction:
        return failure(kind, [bytes([ERROR]) + message.encode("utf-8")], CLOSE_NORMAL)

    def receive(self, data: bytes | str, now_s: float) -> Reaction:
        if isinstance(data, str) or not data:
            return Reaction()
        if len(data) > MAX_MESSAGE_BYTES:
            return self.refuse(
                f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}", "too_big"
            )
        if data[0] != AUDIO:
            return Reaction()
        if data[1:5] != b"OggS":
            return self.refuse("audio messages must carry Ogg pages (Opus)", "protocol")
        try:
            pcm = np.asarray(self._reader.append_bytes(bytes(data[1:])), dtype=np.float32)
        except Exception as exc:
            return self.refuse(f"undecodable Ogg/Opus audio: {exc}", "protocol")
        self._undecoded += len(data)
        if not pcm.size:
            if self._undecoded > MAX_UNDECODED_BYTES:
                return self.refuse(
                    "no Opus audio could be decoded from the Ogg pages received", "protocol"
                )
            return Reaction()
        self._undecoded = 0
        self._received += pcm.size
        if self._received / SAMPLE_RATE_HZ - (now_s - self._started_s) > MAX_AHEAD_S:
            return self.refuse("audio sent too far ahead of real time", "too_big")
        return Reaction(push=[UserAudio(pcm)])

    def idle(self, timeout_s: float) -> Reaction:
        return self.refuse(f"no audio for {timeout_s:g} s", "idle")

    def from_session(self, msg: ChatOutput) -> Reaction:
        if isinstance(msg, ChatAudio):
            pages = bytes(self._writer.append_pcm(msg.pcm))
            return Reaction(send=[bytes([AUDIO]) + pages] if pages else [])
        if isinstance(msg, ChatText):
            return Reaction(send=[bytes([TEXT]) + msg.piece.encode("utf-8")])
        if isinstance(msg, ErrorMessage):
            return self.refuse(msg.message, "model")
        return Reaction()
