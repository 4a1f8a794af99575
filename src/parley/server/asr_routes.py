"""`/api/asr-streaming`: the moshi STT WebSocket and its one-shot POST form."""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from parley.audio.decode import UndecodableAudio, decode_file
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.module import NoFreeSlot
from parley.engine.sessions import recognise_recording
from parley.protocol import asr
from parley.server.auth import is_authorized
from parley.server.services import RecognitionService
from parley.server.sockets import serve_socket

MAX_POST_BYTES = 200 * 1024 * 1024


class AsrRoutes:
    def __init__(self, service: RecognitionService) -> None:
        self.service = service

    async def websocket(self, ws: WebSocket) -> None:
        connection = asr.AsrConnection()
        loop = asyncio.get_running_loop()
        await serve_socket(
            ws,
            self.service.module,
            self.service.keys,
            connection,
            lambda: connection.start(loop.time()),
            float(self.service.options.idle_timeout_s),  # moshi-server's is 120 s too
        )

    async def post(self, request: Request) -> Response:
        module = self.service.module
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_POST_BYTES:
            return JSONResponse({"error": f"body over {MAX_POST_BYTES} bytes"}, status_code=413)
        authorized = is_authorized(request, self.service.keys)
        body = bytearray()
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_POST_BYTES:
                return JSONResponse({"error": f"body over {MAX_POST_BYTES} bytes"}, status_code=413)
            if authorized:  # a stranger's upload is read and dropped, never held
                body += chunk
        # Answered once the body is read: answering earlier makes clients that are still
        # sending fail with a broken pipe instead of reading the 401.
        if not authorized:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            pcm = await run_in_threadpool(decode_file, bytes(body), SAMPLE_RATE_HZ)
        except UndecodableAudio as exc:
            module.count_error("undecodable")
            return JSONResponse({"error": str(exc)}, status_code=415)
        try:
            session = await self.service.wait_for_slot()
        except NoFreeSlot:
            module.count_error("no_free_channels")
            return JSONResponse({"error": "no free channels"}, status_code=503)
        async with session:
            return JSONResponse(
                [asr.to_wire(msg) async for msg in recognise_recording(session, pcm)]
            )
