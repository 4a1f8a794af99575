"""The engine in isolation, with fake backends (named as such) that echo or fail."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from parley.engine.backend import Backend
from parley.engine.messages import ErrorMessage
from parley.engine.module import Module, ModuleInfo, NoFreeSlot
from parley.engine.slots import MAX_OUTBOX_MESSAGES, Slot


class FakeEchoBackend(Backend):
    """Echoes each input back with the model thread's name; optionally slowly or failing."""

    def __init__(self, delay_s: float = 0.0, fail_on: Any = None) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.attached: list[int] = []
        self.held: list[tuple[Slot, Any]] = []
        self.threads: set[str] = set()

    def attach(self, slot: Slot) -> None:
        self.attached.append(slot.channel_id)
        slot.emit(("ready", slot.channel_id))

    def detach(self, index: int) -> None:
        pass

    def step(self, slots: Sequence[Slot]) -> bool:
        self.threads.add(threading.current_thread().name)
        for slot in slots:
            for item in slot.take_inputs():
                if item == self.fail_on:
                    raise RuntimeError("injected fault")
                if item == "hold":  # answer later, as a slow decode would
                    self.held.append((slot, item))
                    continue
                time.sleep(self.delay_s)
                slot.emit(("echo", item))
        return False

    def release_held(self) -> None:
        for slot, item in self.held:
            slot.emit(("late", item))
        self.held.clear()


def make(backend: Backend, batch: int = 2) -> Module:
    m = Module(ModuleInfo("fake", "Fake", "/fake", batch), backend)
    m.start()
    assert m.ready.wait(5)
    return m


async def recv(session: Any, timeout_s: float = 2.0) -> Any:
    return await asyncio.wait_for(session.receive(), timeout_s)


def test_sessions_get_their_own_outputs_from_the_model_thread() -> None:
    backend = FakeEchoBackend()
    module = make(backend)

    async def run() -> None:
        a, b = module.try_acquire(), module.try_acquire()
        assert (await recv(a))[0] == "ready" and (await recv(b))[0] == "ready"
        a.push("x")
        b.push("y")
        assert await recv(a) == ("echo", "x")
        assert await recv(b) == ("echo", "y")
        a.close()
        b.close()

    asyncio.run(run())
    module.stop()
    assert backend.threads == {"model-fake"}


def test_full_house_and_bounded_wait() -> None:
    module = make(FakeEchoBackend(), batch=1)

    async def run() -> None:
        a = module.try_acquire()
        with pytest.raises(NoFreeSlot):
            module.try_acquire()
        with pytest.raises(NoFreeSlot):
            await module.acquire(timeout_s=0.3)
        asyncio.get_running_loop().call_later(0.2, a.close)
        b = await module.acquire(timeout_s=2.0)
        assert module.used_slots == 1
        b.close()
        assert module.used_slots == 0

    asyncio.run(run())
    module.stop()


def test_waiting_requests_are_served_in_order_and_scopes_free_slots() -> None:
    module = make(FakeEchoBackend(), batch=1)
    order: list[int] = []

    async def waiter(n: int) -> None:
        async with await module.acquire(timeout_s=5.0):
            order.append(n)
            await asyncio.sleep(0.05)

    async def run() -> None:
        held = module.try_acquire()
        tasks = []
        for n in range(4):
            tasks.append(asyncio.create_task(waiter(n)))
            await asyncio.sleep(0.02)  # queued in this order
        held.close()
        await asyncio.gather(*tasks)
        with pytest.raises(RuntimeError):
            async with module.try_acquire():
                raise RuntimeError("a route fails mid-session")
        assert module.used_slots == 0  # released on the way out all the same

    asyncio.run(run())
    assert order == [0, 1, 2, 3]
    module.stop()


def test_late_output_never_reaches_the_next_occupant() -> None:
    backend = FakeEchoBackend()
    module = make(backend, batch=1)

    async def run() -> None:
        first = module.try_acquire()
        await recv(first)
        first.push("hold")
        await asyncio.sleep(0.2)
        first.close()
        second = module.try_acquire()
        assert (await recv(second)) == ("ready", second.channel_id)
        backend.release_held()  # the first occupant's result arrives after it left
        second.push("mine")
        assert await recv(second) == ("echo", "mine")
        assert second.outbox.empty()
        second.close()

    asyncio.run(run())
    module.stop()


def test_an_unread_outbox_is_bounded_and_ends_in_one_error() -> None:
    backend = FakeEchoBackend()
    module = make(backend, batch=2)

    async def run() -> None:
        slow, other = module.try_acquire(), module.try_acquire()
        await recv(slow)
        await recv(other)
        for i in range(MAX_OUTBOX_MESSAGES + 10):
            slow.push(i)  # echoed, never read
        deadline = time.monotonic() + 10
        while slow.outbox.qsize() != 1 and time.monotonic() < deadline:  # noqa: ASYNC110 (no event for a size)
            await asyncio.sleep(0.01)
        assert slow.outbox.qsize() == 1
        msg = await recv(slow)
        assert isinstance(msg, ErrorMessage) and "too slowly" in msg.message
        slow.push("after")
        other.push("fine")
        assert await recv(other) == ("echo", "fine")
        await asyncio.sleep(0.2)
        assert slow.outbox.empty()  # nothing more reaches the overflowed session
        slow.close()
        other.close()
        assert module.used_slots == 0

    asyncio.run(run())
    module.stop()


def test_a_backend_fault_errors_its_sessions_and_the_module_lives_on() -> None:
    module = make(FakeEchoBackend(fail_on="boom"), batch=2)

    async def run() -> None:
        a = module.try_acquire()
        await recv(a)
        a.push("boom")
        got = await recv(a)
        while not isinstance(got, ErrorMessage):
            got = await recv(a)
        a.close()
        b = module.try_acquire()
        await recv(b)
        b.push("fine")
        assert await recv(b) == ("echo", "fine")
        b.close()

    asyncio.run(run())
    module.stop()


def test_slow_steps_are_counted_late() -> None:
    from parley import metrics

    module = make(FakeEchoBackend(delay_s=0.12), batch=1)
    late = metrics.engine("asr").late_steps.labels(module="fake")
    before = late._value.get()

    async def run() -> None:
        a = module.try_acquire()
        await recv(a)
        a.push("slow")
        assert await recv(a) == ("echo", "slow")
        a.close()

    asyncio.run(run())
    module.stop()
    assert late._value.get() >= before + 1
