"""`/api/chat`: the Moshi web client's full-duplex protocol.

Binary frames whose first byte is the kind: `0x00` handshake (sent once the slot is live),
`0x01` Ogg/Opus audio (both directions), `0x02` a UTF-8 text piece (server to client), `0x05`
an error (then the socket closes). Other kinds from the client (control, metadata, ping) are
accepted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from parley.engine.chat import ChatAudio, ChatText, UserAudio
from parley.engine.messages import ErrorMessage
from parley.engine.module import Module, NoFreeSlot, Session
from parley.server.auth import Keys
from parley.server.duplex import admit, run_duplex

log = logging.getLogger(__name__)

HANDSHAKE, AUDIO, TEXT, ERROR = 0x00, 0x01, 0x02, 0x05
SAMPLE_RATE_HZ = 24_000
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_UNDECODED_BYTES = 256 * 1024  # Ogg pages that yield no audio at all: not Opus
MAX_BUFFERED_S = 30.0  # user audio a client may send ahead of real time


class ChatRoutes:
    def __init__(self, module: Module, authorized_ids: Keys) -> None:
        self.module = module
        self.authorized_ids = authorized_ids

    async def websocket(self, ws: WebSocket) -> None:
        if not await admit(ws, self.module, self.authorized_ids):
            return
        try:
            session = self.module.try_acquire()
        except NoFreeSlot:
            await _error(ws, "no free channels")
            return
        await ws.send_bytes(bytes([HANDSHAKE]))
        errors: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        await run_duplex(
            ws,
            session,
            self._receive_loop(ws, session, errors),
            self._send_loop(ws, session),
            errors,
            lambda message: _error(ws, message),
        )

    async def _receive_loop(
        self, ws: WebSocket, session: Session, errors: asyncio.Queue[str]
    ) -> None:
        import sphn

        reader = sphn.OpusStreamReader(SAMPLE_RATE_HZ)
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0
        undecoded = 0  # bytes since the last decoded audio
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if not data:
                continue  # text frames and empty frames mean nothing here
            if len(data) > MAX_MESSAGE_BYTES:
                errors.put_nowait(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
                return
            if data[0] != AUDIO:
                continue
            if not data[1:5] == b"OggS":
                errors.put_nowait("audio messages must carry Ogg pages (Opus)")
                return
            try:
                pcm = np.asarray(reader.append_bytes(bytes(data[1:])), dtype=np.float32)
            except Exception as exc:
                errors.put_nowait(f"undecodable Ogg/Opus audio: {exc}")
                return
            undecoded += len(data)
            if pcm.size:
                undecoded = 0
                received += pcm.size
                if received / SAMPLE_RATE_HZ - (loop.time() - started) > MAX_BUFFERED_S:
                    errors.put_nowait("audio sent too far ahead of real time")
                    return
                session.push(UserAudio(pcm))
            elif undecoded > MAX_UNDECODED_BYTES:
                errors.put_nowait("no Opus audio could be decoded from the Ogg pages received")
                return

    async def _send_loop(self, ws: WebSocket, session: Session) -> None:
        import sphn

        writer = sphn.OpusStreamWriter(SAMPLE_RATE_HZ)
        while True:
            msg: Any = await session.receive()
            if isinstance(msg, ChatAudio):
                pages = bytes(writer.append_pcm(msg.pcm))
                if pages:
                    await ws.send_bytes(bytes([AUDIO]) + pages)
            elif isinstance(msg, ChatText):
                await ws.send_bytes(bytes([TEXT]) + msg.piece.encode("utf-8"))
            elif isinstance(msg, ErrorMessage):
                await _error(ws, msg.message)
                return


async def _error(ws: WebSocket, message: str) -> None:
    await ws.send_bytes(bytes([ERROR]) + message.encode("utf-8"))
    await ws.close(1000)
