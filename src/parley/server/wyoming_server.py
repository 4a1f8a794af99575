"""The Wyoming TCP server: `protocol.wyoming.WyomingConnection` carried out on asyncio streams.

Started by the app's lifespan on the same event loop, modules and slots as the HTTP routes.
Per connection one loop waits on the client's bytes and, while a session is open, on its
messages; each `Reaction` is carried out in order: take a slot (`open`; a full module is an
`error` event and a close, never a wait), push items, write events, free the slot
(`release`), close. However the connection ends, its slot is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import parley
from parley.config import is_loopback
from parley.engine.module import Module, NoFreeSlot, Session
from parley.engine.recognition import RecognitionBackend
from parley.engine.speech import SpeechBackend
from parley.protocol.connection import Reaction
from parley.protocol.wyoming import (
    Attribution,
    Catalog,
    SttModule,
    TtsModule,
    Voice,
    WyomingConnection,
    error_event,
)
from parley.server.voice_names import VoiceNames

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
_connection_ids = itertools.count(1)


def catalog(modules: Sequence[Module], voice_aliases: dict[str, dict[str, str]]) -> Catalog:
    """What `info` lists: the STT and TTS modules among `modules`, in order."""
    stt, tts = [], []
    for m in modules:
        backend = m.backend
        attribution = Attribution(*backend.attribution)
        if isinstance(backend, RecognitionBackend):
            description = f"{m.info.kind} ({m.batch_size} streams)"
            stt.append(SttModule(m.info.name, description, backend.languages, attribution))
        elif isinstance(backend, SpeechBackend):
            voices = [Voice(v, backend.voice_languages(v)) for v in sorted(backend.voices)]
            names = VoiceNames(
                backend.voices, backend.default_voice, voice_aliases.get(m.info.name, {})
            )
            tts.append(TtsModule(m.info.name, voices, backend.default_voice, names, attribution))
    return Catalog(stt, tts, parley.__version__)


class WyomingServer:
    def __init__(
        self, modules: Sequence[Module], catalog: Catalog, idle_timeout_s: float = 120.0
    ) -> None:
        self.modules = {m.info.name: m for m in modules}
        self.catalog = catalog
        self.idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listens on `host:port` (0: any free port); the port it listens on."""
        self._server = await asyncio.start_server(self.handle, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("wyoming: listening on tcp://%s:%d", host, bound)
        if not is_loopback(host):
            log.warning("wyoming: %s is beyond loopback and Wyoming has no keys", host)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = next(_connection_ids)
        run = _Run(self, WyomingConnection(self.catalog), writer)
        try:
            await run.loop(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client left; its slot is freed below
        except Exception as exc:
            log.error("wyoming connection %d: %s", conn_id, exc, exc_info=exc)
            with contextlib.suppress(Exception):  # the client may have gone already
                writer.write(error_event("internal error", "internal"))
                await writer.drain()
        finally:
            run.end_session()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _Run:
    """One connection's state on the I/O side: its session (if any) and the pending reads."""

    def __init__(
        self, server: WyomingServer, connection: WyomingConnection, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.connection = connection
        self.writer = writer
        self.session: Session | None = None
        self.module: Module | None = None  # of the current or last session (error metrics)

    async def loop(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        read: asyncio.Task[bytes] = asyncio.create_task(reader.read(READ_BYTES))
        output: asyncio.Task[Any] | None = None  # the next message of `watched`
        watched: Session | None = None
        try:
            while True:
                pending = {read} if output is None else {read, output}
                timeout = self.server.idle_timeout_s if self.connection.awaits_client else None
                done, _ = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                reactions = []
                if not done:
                    reactions.append(self.connection.idle(self.server.idle_timeout_s))
                if output is not None and output in done:
                    reactions.append(self.connection.from_session(output.result()))
                    output = None
                if read in done:
                    data = read.result()
                    if not data:
                        return
                    reactions.append(self.connection.receive(data, loop.time()))
                    read = asyncio.create_task(reader.read(READ_BYTES))
                for reaction in reactions:
                    if not await self.carry_out(reaction):
                        return
                if output is not None and watched is not self.session:
                    output.cancel()
                    output = None
                if self.session is not None and output is None:
                    watched = self.session
                    output = asyncio.create_task(self.session.receive())
        finally:
            for task in (read, output):
                if task is not None:
                    task.cancel()

    async def carry_out(self, reaction: Reaction) -> bool:
        """False once the connection is to close."""
        if reaction.open is not None:
            self.end_session()  # a protocol rule keeps one session at a time; be sure
            self.module = self.server.modules[reaction.open]
            try:
                self.session = self.module.try_acquire()
            except NoFreeSlot:
                reaction = self.connection.refuse(
                    f"no free slot on module {reaction.open} "
                    f"({self.module.batch_size} sessions in use); try again shortly"
                )
            else:
                self.module.count_connection()
        if reaction.error_kind:
            module = self.module or next(iter(self.server.modules.values()), None)
            if module is not None:
                module.count_error(reaction.error_kind)
        if self.session is not None:
            for item in reaction.push:
                self.session.push(item)
        for frame in reaction.send:
            self.writer.write(frame if isinstance(frame, bytes) else frame.encode())
        await self.writer.drain()
        if reaction.release:
            self.end_session()
        return not reaction.ends

    def end_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
