"""`/ws/stream`: seed 004's token socket (wire rules in `protocol/token_socket.py`)."""

from __future__ import annotations

from starlette.websockets import WebSocket

from parley.protocol.token_socket import TokenConnection
from parley.server.services import SpeechService
from parley.server.sockets import serve_socket


class TokenSocket:
    def __init__(self, service: SpeechService) -> None:
        self.service = service

    async def websocket(self, ws: WebSocket) -> None:
        service = self.service
        connection = TokenConnection(service.backend.marks_phrases)
        await serve_socket(
            ws,
            service.module,
            service.keys if service.options.token_socket_auth else None,
            connection,
            lambda: connection.start(ws.query_params, service.check_voice),
            float(service.options.idle_timeout_s),
        )
