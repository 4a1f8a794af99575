"""Every WebSocket route, once: a protocol's sans-I/O connection carried out on a socket.

Admission (401 before the upgrade), the connection's opening (a refusal, or what to push and
send), a slot owned by one scope, then two tasks: client frames -> `connection.receive` ->
session, and session messages -> `connection.from_session` -> client. Whichever ends first
ends the session; its ending reaction (an error frame, a close code) is carried out last, the
slot is freed whatever happened, and an exception is logged once with the channel id and
reported to the client as close 1011.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.audio.codec_pool import off_loop
from parley.engine.module import Module, NoFreeSlot, Session
from parley.protocol.connection import CLOSE_NORMAL, CLOSE_POLICY, Close, Connection, Reaction
from parley.server.auth import KeyCheck, Keys, is_authorized

log = logging.getLogger(__name__)

INTERNAL_ERROR = Close(1011, "internal error")
FINAL_WRITE_S = 5.0  # the last frames and the close, to a client that may have stopped reading
# A frame that cannot be written for this long: the client has stopped reading (while still
# answering pings, or the ping timeout would have closed it), and its slot is wanted.
STALLED_SEND_S = 60.0
STALLED = Close(CLOSE_POLICY, "the client stopped reading")


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
    module.count_connection()
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
    start = opening()
    if start.ends:
        await _carry_out(ws, module, start)
        return
    try:
        session = module.try_acquire()
    except NoFreeSlot:
        log.info(
            "%s: %s from %s refused: no free channels", module.info.name, ws.url.path, ws.client
        )
        await _carry_out(ws, module, connection.refuse("no free channels"))
        return
    log.info("channel %d: %s from %s", session.channel_id, ws.url.path, ws.client)
    async with session:
        for item in start.push:
            session.push(item)
        for frame in start.send:
            await _send(ws, frame)
        quiet = _Quiet(asyncio.get_running_loop())
        receiver = asyncio.create_task(
            _gone_is_none(_from_client(ws, session, connection, idle_timeout_s, quiet))
        )
        sender = asyncio.create_task(_gone_is_none(_to_client(ws, session, connection, quiet)))
        ending: Reaction | None = None
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    log.error(
                        "channel %d (%s): %s",
                        session.channel_id,
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
            # Bounded, never awaiting a task that fails to cancel: whatever happens, the
            # handler returns, and uvicorn then closes the connection.
            _, stuck = await asyncio.wait({receiver, sender}, timeout=FINAL_WRITE_S)
            for task in stuck:
                log.warning("channel %d: a task did not stop: %r", session.channel_id, task)
    closing = asyncio.ensure_future(_carry_out(ws, module, ending or Reaction()))
    done, _ = await asyncio.wait({closing}, timeout=FINAL_WRITE_S)
    if not done:  # the client stopped reading: the transport is closed when we return
        closing.cancel()
    elif closing.exception() is not None:  # the client may have gone already
        log.debug("channel %d: closing: %s", session.channel_id, closing.exception())


async def _gone_is_none(task: Awaitable[Reaction | None]) -> Reaction | None:
    """A client that left mid-send ends the session like one that closed: no error."""
    try:
        return await task
    except WebSocketDisconnect:
        return None


class _Quiet:
    """When the socket last carried a frame, either way: idle means quiet both ways (a client
    waiting for the audio of a long text is not idle)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.since_s = loop.time()

    def touch(self) -> None:
        self.since_s = self.loop.time()

    def left_s(self, idle_timeout_s: float) -> float:
        return self.since_s + idle_timeout_s - self.loop.time()


async def _from_client(
    ws: WebSocket,
    session: Session,
    connection: Connection,
    idle_timeout_s: float | None,
    quiet: _Quiet,
) -> Reaction | None:
    loop = quiet.loop
    while True:
        timeout = None
        if idle_timeout_s is not None and connection.awaits_client:
            timeout = quiet.left_s(idle_timeout_s)
            if timeout <= 0:
                return connection.idle(idle_timeout_s)
        try:
            message = await asyncio.wait_for(ws.receive(), timeout=timeout)
        except TimeoutError:
            continue  # idle only if nothing was sent meanwhile either
        quiet.touch()
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


async def _to_client(
    ws: WebSocket, session: Session, connection: Connection, quiet: _Quiet
) -> Reaction:
    while True:
        msg = await session.receive()
        if connection.encodes_audio:
            reaction = await off_loop(connection.from_session, msg)
        else:
            reaction = connection.from_session(msg)
        if reaction.ends:
            return reaction
        for frame in reaction.send:
            try:
                await asyncio.wait_for(_send(ws, frame), STALLED_SEND_S)
            except TimeoutError:
                return Reaction(close=STALLED, error_kind="stalled")
        if reaction.send:
            quiet.touch()


async def _send(ws: WebSocket, frame: bytes | str) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_text(frame)


async def _carry_out(ws: WebSocket, module: Module, reaction: Reaction) -> None:
    if reaction.error_kind:
        module.count_error(reaction.error_kind)
    for frame in reaction.send:
        await _send(ws, frame)
    close = reaction.close
    await ws.close(close.code if close else CLOSE_NORMAL, close.reason if close else None)
