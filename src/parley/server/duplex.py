"""One WebSocket session: admission, then two tasks, client -> slot and slot -> client.

Whichever ends first ends the session. A loop that finds bad input puts one error in the
`errors` queue; it is reported to the client (`report`) before the socket closes. The slot is
freed whatever happened, so the next client can take it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.websockets import WebSocket

from parley.engine.module import Module, Session
from parley.server.auth import Keys, is_authorized

E = TypeVar("E")
CLOSE_NORMAL = 1000


async def admit(ws: WebSocket, module: Module, keys: Keys) -> bool:
    """Refuses a bad key with HTTP 401 before the upgrade (`keys` None: no key needed), else
    accepts the socket and counts the connection. True if accepted."""
    if not is_authorized(ws, keys):
        await ws.send_denial_response(Response("unauthorized\n", status_code=401))
        return False
    await ws.accept()
    module.metrics.connections.labels(module=module.info.name).inc()
    return True


async def run_duplex(
    ws: WebSocket,
    session: Session,
    receive: Coroutine[Any, Any, None],
    send: Coroutine[Any, Any, None],
    errors: asyncio.Queue[E],
    report: Callable[[E], Awaitable[None]],
) -> None:
    receiver = asyncio.create_task(receive, name="ws-receive")
    sender = asyncio.create_task(send, name="ws-send")
    try:
        await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        if not errors.empty():
            with contextlib.suppress(Exception):
                await report(errors.get_nowait())
    finally:
        session.close()
        for task in (receiver, sender):
            task.cancel()
        await asyncio.gather(receiver, sender, return_exceptions=True)
        with contextlib.suppress(Exception):
            await ws.close(CLOSE_NORMAL)
