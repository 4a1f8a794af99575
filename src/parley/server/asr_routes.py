"""`/api/asr-streaming`: the moshi STT WebSocket and its one-shot POST form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from parley.audio.decode import UndecodableAudio, decode_file
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage
from parley.engine.module import Module, NoFreeSlot, Session
from parley.protocol import asr
from parley.server.auth import Keys, is_authorized
from parley.server.route_options import RecognitionRouteOptions
from parley.server.sockets import serve_socket

MAX_POST_BYTES = 200 * 1024 * 1024


class AsrRoutes:
    def __init__(
        self, module: Module, authorized_ids: Keys, options: RecognitionRouteOptions
    ) -> None:
        self.module = module
        self.authorized_ids = authorized_ids
        self.post_timeout_s = float(options.post_timeout_s)
        self.idle_timeout_s = float(options.idle_timeout_s)  # moshi-server's is 120 s too
        self._labels = {"module": module.info.name}

    def _error(self, kind: str, message: str) -> ErrorMessage:
        self.module.metrics.errors.labels(kind=kind, **self._labels).inc()
        return ErrorMessage(message)

    # --- WebSocket -------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        connection = asr.AsrConnection()
        loop = asyncio.get_running_loop()
        await serve_socket(
            ws,
            self.module,
            self.authorized_ids,
            connection,
            lambda: connection.start(loop.time()),
            self.idle_timeout_s,
        )

    # --- HTTP POST -------------------------------------------------------------------------
    async def post(self, request: Request) -> Response:
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_POST_BYTES:
            return JSONResponse({"error": f"body over {MAX_POST_BYTES} bytes"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_POST_BYTES:
                return JSONResponse({"error": f"body over {MAX_POST_BYTES} bytes"}, status_code=413)
        # Checked once the (bounded) body is read: answering before it makes clients that are
        # still sending fail with a broken pipe instead of reading the 401.
        if not is_authorized(request, self.authorized_ids):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            pcm = await run_in_threadpool(decode_file, bytes(body), SAMPLE_RATE_HZ)
        except UndecodableAudio as exc:
            self._error("undecodable", str(exc))
            return JSONResponse({"error": str(exc)}, status_code=415)
        try:
            session = await self.module.acquire(self.post_timeout_s)
        except NoFreeSlot:
            self._error("no_free_channels", "no free channels")
            return JSONResponse({"error": "no free channels"}, status_code=503)
        async with session:
            return JSONResponse([asr.to_wire(msg) async for msg in recognised(session, pcm)])


async def recognised(
    session: Session, pcm: np.ndarray
) -> AsyncIterator[asr.Word | asr.EndWord | ErrorMessage]:
    """One-shot recognition on a session: pushes `pcm` and a Marker, yields `Word`/`EndWord`
    as they come until the Marker returns (an `Error`, if any, is yielded last)."""
    session.push(asr.Audio(pcm))
    session.push(asr.Marker(0))
    while True:
        msg = await session.receive()
        if isinstance(msg, asr.Marker):
            return
        if isinstance(msg, asr.Word | asr.EndWord | ErrorMessage):
            yield msg
            if isinstance(msg, ErrorMessage):
                return
