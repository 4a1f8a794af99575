"""`/api/chat`: Moshi's full-duplex socket (wire rules in `protocol/chat.py`)."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from parley.engine.module import Module
from parley.protocol.chat import ChatConnection
from parley.server.auth import Keys
from parley.server.sockets import serve_socket


class ChatRoutes:
    def __init__(self, module: Module, authorized_ids: Keys) -> None:
        self.module = module
        self.authorized_ids = authorized_ids

    async def websocket(self, ws: WebSocket) -> None:
        connection = ChatConnection()
        loop = asyncio.get_running_loop()
        await serve_socket(
            ws,
            self.module,
            self.authorized_ids,
            connection,
            lambda: connection.start(loop.time()),
        )
