"""The interface between the engine and a model.

A backend owns one model and the per-slot state of every stream on it. The engine calls it only
from the module's model thread:

- `warmup()` once, before the module reports ready;
- `attach(slot)` when a session takes a slot (reset that slot's state, say hello);
- `detach(index)` when the session leaves (drop that slot's state);
- `step(slots)` once per tick with the occupied slots; the backend drains each slot's inbox,
  advances every slot that has a frame's worth of input together, masking the others, and
  sends results with `slot.emit`. It returns True while input is still waiting (a client sent
  faster than real time), so the engine ticks again at once instead of waiting for the clock.

Adding a model is adding one file with a subclass of `Backend`; the engine does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from parley.engine.slots import Slot

SAMPLE_RATE_HZ = 24_000
FRAME_MS = 80
FRAME_SAMPLES = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 1920


class Backend(ABC):
    """One model, stepped for a fixed table of slots by one model thread."""

    role: str = ""  # "recognition", "speech" or "chat": which sessions it serves (subclasses)
    metrics_prefix: str = "asr"  # engine metric names: moshi's `asr_*`, or `py_*` for TTS
    attribution: tuple[str, str] = ("", "")  # the model's makers and URL (Wyoming's `info`)
    _waker: Callable[[], None] | None = None

    def set_waker(self, waker: Callable[[], None]) -> None:
        """The engine's hook for work finished off the model thread (wake it up early)."""
        self._waker = waker

    def wake(self) -> None:
        if self._waker is not None:
            self._waker()

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Run the model once on dummy input so the first client does not pay for it."""

    @abstractmethod
    def attach(self, slot: Slot) -> None:
        """A new session took `slot`: reset its state."""

    @abstractmethod
    def detach(self, index: int) -> None:
        """The session in slot `index` left: forget its state."""

    @abstractmethod
    def step(self, slots: Sequence[Slot]) -> bool:
        """Advance all occupied slots by (at most) one frame. True if input is still waiting."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release model resources (threads, sessions)."""

    def describe(self) -> dict[str, Any]:
        """Facts for `/api/modules_info` and the start-up log."""
        return {}
