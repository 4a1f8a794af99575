"""`/ws/stream`: seed 004's token socket (wire rules in `protocol/token_socket.py`)."""

from __future__ import annotations

from starlette.websockets import WebSocket

from parley.protocol.token_socket import TokenConnection
from parley.server.sockets import serve_socket
from parley.server.tts_routes import TtsRoutes


class TokenSocket:
    def __init__(self, tts_routes: TtsRoutes, require_auth: bool) -> None:
        self.tts = tts_routes
        self.require_auth = require_auth

    async def websocket(self, ws: WebSocket) -> None:
        connection = TokenConnection(self.tts.backend.marks_phrases)
        await serve_socket(
            ws,
            self.tts.module,
            self.tts.authorized_ids if self.require_auth else None,
            connection,
            lambda: connection.start(ws.query_params, self.tts.check_voice),
        )
