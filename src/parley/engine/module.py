"""A module: one backend, a fixed table of slots, one model thread stepping them together.

The model thread ticks once per 80 ms frame against `time.monotonic()` deadlines. When a
backend reports input still waiting (audio sent faster than real time) it ticks again at once,
so such input is processed as fast as the CPU allows; when nothing waits it sleeps until the
next deadline or until a session pushes input, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from parley import metrics
from parley.engine.backend import FRAME_MS, Backend
from parley.engine.messages import ErrorMessage
from parley.engine.slots import SessionInput, SessionOutput, Slot

log = logging.getLogger(__name__)


class NoFreeSlot(Exception):
    """Every slot of the module is taken."""


@dataclass
class ModuleInfo:
    name: str
    kind: str
    path: str
    batch_size: int
    details: dict[str, Any] = field(default_factory=dict)


class Session:
    """The event-loop side of one slot occupancy: push input, await output, close. Use it as
    the scope that owns the slot (`async with module.try_acquire() as session:`), so the slot
    is released on every path out."""

    def __init__(self, module: Module, slot: Slot, outbox: asyncio.Queue[SessionOutput]) -> None:
        self.module = module
        self.slot = slot
        self.outbox = outbox

    @property
    def channel_id(self) -> int:
        return self.slot.channel_id

    def push(self, item: SessionInput) -> None:
        self.slot.push(item)

    async def receive(self) -> SessionOutput:
        return await self.outbox.get()

    def close(self) -> None:
        self.module.release(self.slot)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()


class Module:
    def __init__(self, info: ModuleInfo, backend: Backend) -> None:
        self.info = info
        self.backend = backend
        self.batch_size = info.batch_size
        self.frame_s = FRAME_MS / 1000
        self._slots: list[Slot | None] = [None] * self.batch_size
        self._attached: list[Slot | None] = [None] * self.batch_size  # as the thread saw them
        self._lock = threading.Lock()
        self._waiting: deque[object] = deque()  # HTTP requests waiting for a slot, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._labels = {"module": info.name}
        self.metrics = metrics.engine(backend.metrics_prefix)
        backend.set_waker(self._wake.set)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"model-{self.info.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.backend.close()

    # --- admission (event loop) ------------------------------------------------------------
    @property
    def used_slots(self) -> int:
        with self._lock:
            return sum(s is not None for s in self._slots)

    def try_acquire(self) -> Session:
        """A slot now, or NoFreeSlot (WebSocket clients are refused at once)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for i, occupant in enumerate(self._slots):
                if occupant is None:
                    outbox: asyncio.Queue[SessionOutput] = asyncio.Queue()
                    slot = Slot(i, loop, outbox, self._wake.set)
                    self._slots[i] = slot
                    break
            else:
                raise NoFreeSlot(self.info.name)
        self.metrics.open_channels.labels(**self._labels).inc()
        self._wake.set()
        log.info("module %s: channel %d took slot %d", self.info.name, slot.channel_id, i)
        return Session(self, slot, outbox)

    async def acquire(self, timeout_s: float, poll_s: float = 0.05) -> Session:
        """A slot, waiting up to `timeout_s` for one (HTTP requests queue for capacity).
        Waiters are served first come, first served."""
        ticket = object()
        self._waiting.append(ticket)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if self._waiting[0] is ticket:
                    try:
                        return self.try_acquire()
                    except NoFreeSlot:
                        pass
                if time.monotonic() >= deadline:
                    raise NoFreeSlot(self.info.name)
                await asyncio.sleep(poll_s)
        finally:
            self._waiting.remove(ticket)

    def count_connection(self) -> None:
        """A client session opened on this module, whatever its protocol."""
        self.metrics.connections.labels(**self._labels).inc()

    def count_error(self, kind: str) -> None:
        """A client's error of `kind` (bad input, no free slot, ...), in the module's metric."""
        self.metrics.errors.labels(kind=kind, **self._labels).inc()

    def release(self, slot: Slot) -> None:
        with self._lock:
            if self._slots[slot.index] is not slot:
                return
            self._slots[slot.index] = None
            slot.closed = True
        self.metrics.open_channels.labels(**self._labels).dec()
        self._wake.set()
        log.info("module %s: channel %d left slot %d", self.info.name, slot.channel_id, slot.index)

    # --- model thread ----------------------------------------------------------------------
    def _sync_occupants(self) -> list[Slot]:
        with self._lock:
            current = list(self._slots)
        for i, (seen, now) in enumerate(zip(self._attached, current, strict=True)):
            if seen is now:
                continue
            if seen is not None:
                self.backend.detach(i)
            if now is not None:
                self.backend.attach(now)
            self._attached[i] = now
        return [s for s in current if s is not None]

    def _run(self) -> None:
        try:
            t0 = time.perf_counter()
            self.backend.warmup()
            log.info("module %s warmed up in %.2f s", self.info.name, time.perf_counter() - t0)
        except BaseException as exc:  # reported by the server at start-up
            self.failed = exc
            log.exception("module %s failed to warm up", self.info.name)
            self.ready.set()
            return
        self.ready.set()
        step_hist = self.metrics.step_duration.labels(**self._labels)
        late = self.metrics.late_steps.labels(**self._labels)
        steps = self.metrics.steps.labels(**self._labels)
        deadline = time.monotonic()
        while not self._stop.is_set():
            live = self._sync_occupants()
            busy = False
            if live:
                start = time.monotonic()
                try:
                    busy = self.backend.step(live)
                except Exception:
                    # A backend bug must not kill the module: drop this tick's sessions.
                    log.exception("module %s: step failed", self.info.name)
                    for slot in live:
                        self.backend.detach(slot.index)
                        self._attached[slot.index] = None
                        slot.emit(_internal_error())
                    busy = False
                elapsed = time.monotonic() - start
                step_hist.observe(elapsed)
                steps.inc()
                if elapsed > self.frame_s:
                    late.inc()
            deadline += self.frame_s
            now = time.monotonic()
            if busy:
                deadline = now
                continue
            if deadline < now:  # fell behind: re-anchor rather than burst to catch up
                deadline = now + self.frame_s
            self._wake.wait(timeout=max(0.0, deadline - now))
            self._wake.clear()


def _internal_error() -> ErrorMessage:
    return ErrorMessage("internal error in the model thread; please reconnect")
