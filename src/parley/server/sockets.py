"""Every WebSocket route, once: a protocol's sans-I/O connection carried out on a socket.

Admission (401 before the upgrade), the connection's opening (a refusal, or what to push and
send), a slot owned by one scope, then two tasks: client frames -> `connection.receive` ->
session, and session messages -> `connection.from_session` -> client. Whichever ends first
ends the session; its ending reaction (an error frame, a close code) is carried out last, the
slot is freed whatever happened, and an exception is logged once with the connection id and
reported to the client as close 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.engine.module import Module, NoFreeSlot, Session
from parley.protocol.connection import CLOSE_NORMAL, Close, Connection, Reaction
from parley.server.auth import KeyCheck, Keys, is_authorized

log = logging.getLogger(__name__)

INTERNAL_ERROR = Close(1011, "internal error")
_connection_ids = itertools.count(1)


async def admit(
    ws: WebSocket,
    module: Module,
    keys: Keys,
    check_key: KeyCheck = is_authorized,
    subprotocol: str | None = None,
) -> bool:
    """Refuses a bad key with HTTP 401 before the upgrade (`keys` None: no key needed), else
    accepts the socket (with `subprotocol`, if any) and counts the connection. True if
    accepted."""
    if not check_key(ws, keys):
        await ws.send_denial_response(Response("unauthorized\n", status_code=401))
        return False
    await ws.accept(subprotocol)
    module.metrics.connections.labels(module=module.info.name).inc()
    return True


async def serve_socket(
    ws: WebSocket,
    module: Module,
    keys: Keys,
    connection: Connection,
    opening: Callable[[], Reaction],
    idle_timeout_s: float | None = None,
    check_key: KeyCheck = is_authorized,
    subprotocol: str | None = None,
) -> None:
    """`opening` is the connection's start, called once the socket is accepted; `check_key`
    reads the key in the protocol's forms."""
    if not await admit(ws, module, keys, check_key, subprotocol):
        return
    conn_id = next(_connection_ids)
    start = opening()
    if start.ends:
        await _carry_out(ws, module, start)
        return
    try:
        session = module.try_acquire()
    except NoFreeSlot:
        await _carry_out(ws, module, connection.refuse("no free channels"))
        return
    async with session:
        for item in start.push:
            session.push(item)
        for frame in start.send:
            await _send(ws, frame)
        receiver = asyncio.create_task(
            _gone_is_none(_from_client(ws, session, connection, idle_timeout_s))
        )
        sender = asyncio.create_task(_gone_is_none(_to_client(ws, session, connection)))
        ending: Reaction | None = None
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    log.error(
                        "connection %d (%s): %s",
                        conn_id,
                        module.info.name,
                        task.exception(),
                        exc_info=task.exception(),
                    )
                    ending = Reaction(close=INTERNAL_ERROR)
                elif ending is None:
                    ending = task.result()
        finally:
            session.close()  # at once: a client that reconnects right away finds it free
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)
    with contextlib.suppress(Exception):  # the client may have gone already
        await _carry_out(ws, module, ending or Reaction())


async def _gone_is_none(task: Awaitable[Reaction | None]) -> Reaction | None:
    """A client that left mid-send ends the session like one that closed: no error."""
    try:
        return await task
    except WebSocketDisconnect:
        return None


async def _from_client(
    ws: WebSocket, session: Session, connection: Connection, idle_timeout_s: float | None
) -> Reaction | None:
    loop = asyncio.get_running_loop()
    while True:
        timeout = idle_timeout_s if connection.awaits_client else None
        try:
            message = await asyncio.wait_for(ws.receive(), timeout=timeout)
        except TimeoutError:
            assert idle_timeout_s is not None
            return connection.idle(idle_timeout_s)
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
        if data is None:
            continue
        reaction = connection.receive(data, loop.time())
        for item in reaction.push:
            session.push(item)
        if reaction.ends:
            return reaction
        for frame in reaction.send:
            await _send(ws, frame)


async def _to_client(ws: WebSocket, session: Session, connection: Connection) -> Reaction:
    while True:
        reaction = connection.from_session(await session.receive())
        if reaction.ends:
            return reaction
        for frame in reaction.send:
            await _send(ws, frame)


async def _send(ws: WebSocket, frame: bytes | str) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_text(frame)


async def _carry_out(ws: WebSocket, module: Module, reaction: Reaction) -> None:
    if reaction.error_kind:
        module.metrics.errors.labels(kind=reaction.error_kind, module=module.info.name).inc()
    for frame in reaction.send:
        await _send(ws, frame)
    close = reaction.close
    await ws.close(close.code if close else CLOSE_NORMAL, close.reason if close else None)
