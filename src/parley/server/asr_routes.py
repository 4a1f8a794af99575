"""`/api/asr-streaming`: the moshi STT WebSocket and its one-shot POST form."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.audio.decode import UndecodableAudio, decode_file
from parley.engine.messages import ErrorMessage
from parley.engine.module import Module, NoFreeSlot
from parley.protocol import asr
from parley.protocol.common import MessageTooBig, ProtocolError
from parley.server.auth import Keys, is_authorized
from parley.server.duplex import admit, run_duplex

log = logging.getLogger(__name__)

MAX_POST_BYTES = 200 * 1024 * 1024
MAX_BUFFERED_S = 600.0  # audio a client may send ahead of processing
CLOSE_BAD_DATA = 1003
CLOSE_TOO_BIG = 1009
CLOSE_NORMAL = 1000
SAMPLE_RATE_HZ = 24_000


class AsrRoutes:
    def __init__(self, module: Module, authorized_ids: Keys) -> None:
        self.module = module
        self.authorized_ids = authorized_ids
        self.post_timeout_s = float(module.info.details.get("post_timeout_s", 100.0))
        # moshi-server closes an ASR stream that sends no data for 120 s
        self.idle_timeout_s = float(module.info.details.get("idle_timeout_s", 120.0))
        self._labels = {"module": module.info.name}

    def _error(self, kind: str, message: str) -> ErrorMessage:
        self.module.metrics.errors.labels(kind=kind, **self._labels).inc()
        return ErrorMessage(message)

    # --- WebSocket -------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        if not await admit(ws, self.module, self.authorized_ids):
            return
        try:
            session = self.module.try_acquire()
        except NoFreeSlot:
            err = self._error("no_free_channels", "no free channels")
            await ws.send_bytes(asr.encode_server(err))
            await ws.close(CLOSE_NORMAL)
            return
        closing: asyncio.Queue[tuple[int, ErrorMessage]] = asyncio.Queue(maxsize=1)

        async def report(error: tuple[int, ErrorMessage]) -> None:
            await ws.send_bytes(asr.encode_server(error[1]))
            await ws.close(error[0])

        await run_duplex(
            ws,
            session,
            self._receive_loop(ws, session, closing),
            self._send_loop(ws, session),
            closing,
            report,
        )

    async def _receive_loop(
        self, ws: WebSocket, session: Any, closing: asyncio.Queue[tuple[int, ErrorMessage]]
    ) -> None:
        opus_reader: Any = None
        sent_samples = 0
        started_s = asyncio.get_running_loop().time()
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=self.idle_timeout_s)
            except TimeoutError:
                idle = f"no data for {self.idle_timeout_s:g} s"
                closing.put_nowait((CLOSE_NORMAL, self._error("idle", idle)))
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                continue  # text frames are ignored, as moshi-server does
            try:
                msg = asr.decode_client(data)
                if isinstance(msg, asr.OggOpus):
                    if opus_reader is None:
                        import sphn

                        opus_reader = sphn.OpusStreamReader(SAMPLE_RATE_HZ)
                    try:
                        pcm = np.asarray(opus_reader.append_bytes(msg.data), dtype=np.float32)
                    except Exception as exc:
                        raise ProtocolError(f"undecodable Ogg/Opus data: {exc}") from None
                    msg = asr.Audio(pcm) if pcm.size else None
            except MessageTooBig as exc:
                closing.put_nowait((CLOSE_TOO_BIG, self._error("too_big", str(exc))))
                return
            except ProtocolError as exc:
                closing.put_nowait((CLOSE_BAD_DATA, self._error("protocol", str(exc))))
                return
            if msg is None:
                continue
            if isinstance(msg, asr.Audio):
                sent_samples += msg.pcm.size
                elapsed_s = asyncio.get_running_loop().time() - started_s
                if sent_samples / SAMPLE_RATE_HZ - elapsed_s > MAX_BUFFERED_S:
                    closing.put_nowait(
                        (
                            CLOSE_TOO_BIG,
                            self._error("too_big", "too much audio sent ahead of real time"),
                        )
                    )
                    return
            session.push(msg)

    async def _send_loop(self, ws: WebSocket, session: Any) -> None:
        while True:
            msg = await session.receive()
            await ws.send_bytes(asr.encode_server(msg))
            if isinstance(msg, ErrorMessage):
                await ws.close(CLOSE_NORMAL)
                return

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
        try:
            return JSONResponse(await self._transcribe(session, pcm))
        finally:
            session.close()

    async def _transcribe(self, session: Any, pcm: np.ndarray) -> list[dict[str, Any]]:
        return [asr.to_wire(msg) async for msg in recognised(session, pcm)]


async def recognised(
    session: Any, pcm: np.ndarray
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


__all__ = ["AsrRoutes", "WebSocketDisconnect"]
