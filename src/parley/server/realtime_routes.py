"""`/v1/realtime?intent=transcription`: OpenAI's Realtime transcription socket on the STT
module the OpenAI API uses (the first), a `RealtimeConnection` run by `serve_socket`."""

from __future__ import annotations

import asyncio

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from parley.protocol.realtime import RealtimeConnection
from parley.server.auth import realtime_authorized, subprotocols
from parley.server.openai_routes import OpenAiRoutes, model_problem
from parley.server.sockets import serve_socket

# Browsers offer `realtime` with the key as a second subprotocol; OpenAI answers `realtime`.
SUBPROTOCOL = "realtime"


class RealtimeRoutes:
    def __init__(self, openai: OpenAiRoutes) -> None:
        self.openai = openai

    async def websocket(self, ws: WebSocket) -> None:
        asr = self.openai.asr
        if asr is None:
            response = PlainTextResponse("no speech-to-text module is configured\n", 404)
            await ws.send_denial_response(response)
            return
        models = self.openai.stt_models()
        connection = RealtimeConnection(
            lambda model: model_problem(model, models),
            intent=ws.query_params.get("intent"),  # `model=` (LiveKit adds it) is ignored
            beta=ws.headers.get("openai-beta", "").startswith("realtime=v1"),
        )
        loop = asyncio.get_running_loop()
        await serve_socket(
            ws,
            asr.module,
            asr.keys,
            connection,
            lambda: connection.start(loop.time()),
            float(asr.options.idle_timeout_s),
            check_key=realtime_authorized,
            subprotocol=SUBPROTOCOL if SUBPROTOCOL in subprotocols(ws) else None,
        )
