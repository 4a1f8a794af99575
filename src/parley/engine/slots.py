"""Slots: the fixed table of places a module has for concurrent streams.

A session borrows a slot for its lifetime. Each occupancy gets a fresh channel id; everything
the model thread sends is addressed to (slot index, channel id), so a result that is computed
for a session that has since left never reaches the slot's next occupant.

Threads: the event loop writes inboxes and reads outboxes; the model thread reads inboxes and
writes outboxes. They meet only at a lock-protected deque (event loop -> model thread) and at
`loop.call_soon_threadsafe` (model thread -> event loop).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from parley.engine.messages import ErrorMessage

if TYPE_CHECKING:  # the role modules import this one (through engine.backend)
    from parley.engine.chat import ChatInput, ChatOutput
    from parley.engine.recognition import RecognitionInput, RecognitionOutput
    from parley.engine.speech import SpeechInput, SpeechOutput

# What crosses a slot, whatever the module's role (each backend checks what it takes).
SessionInput: TypeAlias = "RecognitionInput | SpeechInput | ChatInput"
SessionOutput: TypeAlias = "RecognitionOutput | SpeechOutput | ChatOutput"

_channel_ids = itertools.count(1)
# A session whose client stops reading would otherwise grow without bound (a TTS model makes
# audio 10x faster than real time). 4096 messages is ~4.5 min of speech with its word times
# (~30 MB of float32 frames): far more than a client reading at any sane pace leaves waiting.
MAX_OUTBOX_MESSAGES = 4096
# Backpressure: a backend that can pause a session (speech) makes nothing more for a slot whose
# client has this many messages unread (~17 s of speech with its word times), and goes on once
# it reads. A client reading at the pace it plays is then never near MAX_OUTBOX_MESSAGES.
PAUSE_AT_UNREAD_MESSAGES = 256


class Slot:
    """One occupancy of one slot, as the model thread sees it."""

    def __init__(
        self,
        index: int,
        loop: asyncio.AbstractEventLoop,
        outbox: asyncio.Queue[SessionOutput],
        wake: Callable[[], None],
    ) -> None:
        self.index = index
        self.channel_id = next(_channel_ids)
        self._loop = loop
        self._outbox = outbox
        self._wake = wake
        self._inbox: deque[SessionInput] = deque()
        self._lock = threading.Lock()
        self.closed = False

    # --- event-loop side -------------------------------------------------------------------
    def push(self, item: SessionInput) -> None:
        with self._lock:
            self._inbox.append(item)
        self._wake()

    # --- model-thread side -----------------------------------------------------------------
    @property
    def unread(self) -> int:
        """Messages delivered to the session and not yet taken by its route."""
        return self._outbox.qsize()

    @property
    def backed_up(self) -> bool:
        return self.unread >= PAUSE_AT_UNREAD_MESSAGES

    def take_inputs(self) -> list[SessionInput]:
        with self._lock:
            items = list(self._inbox)
            self._inbox.clear()
        return items

    def emit(self, message: SessionOutput) -> None:
        """Sends a message to this occupant's session (dropped if it has left)."""
        if self.closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, message)
        except RuntimeError:  # event loop closed during shutdown
            pass

    def _deliver(self, message: SessionOutput) -> None:
        if self.closed:
            return
        if self._outbox.qsize() < MAX_OUTBOX_MESSAGES:
            self._outbox.put_nowait(message)
            return
        # Overflow: what waits is dropped for one error the session ends on, and nothing more
        # reaches this occupant (its route frees the slot when it reads the error).
        self.closed = True
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._outbox.put_nowait(
            ErrorMessage(f"the client reads too slowly: {MAX_OUTBOX_MESSAGES} messages waited")
        )
