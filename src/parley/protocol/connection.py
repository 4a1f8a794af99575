"""What a sans-I/O connection asks its socket adapter to do.

Each protocol's connection (`AsrConnection`, `TtsConnection`, `TokenConnection`,
`ChatConnection`) is fed what arrives (client frames, session messages, the clock) and answers
with a `Reaction`: items for the session, frames for the client, perhaps a close. It does no
I/O, so every rule (what is an error, which close code, what comes first) is tested on bytes
alone; `server/sockets.py` carries reactions out on a real WebSocket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

CLOSE_NORMAL = 1000
CLOSE_BAD_DATA = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


@dataclass(frozen=True)
class Close:
    code: int = CLOSE_NORMAL
    reason: str = ""


@dataclass
class Reaction:
    push: list[Any] = field(default_factory=list)  # session inputs, in order
    send: list[bytes | str] = field(default_factory=list)  # frames to the client, in order
    close: Close | None = None  # after the frames; the session ends
    error_kind: str | None = None  # the client's error, counted in the module's metric
    # Connections that run several sessions one after another (Wyoming):
    open: str | None = None  # take a slot of this module before pushing the items
    release: bool = False  # the session is over: free its slot once the frames are sent

    @property
    def ends(self) -> bool:
        return self.close is not None


def failure(kind: str, frames: list[bytes | str], code: int, reason: str = "") -> Reaction:
    """The client's error: `frames` (the protocol's error message, if it has one), then
    close `code`."""
    return Reaction(send=frames, close=Close(code, reason[:120]), error_kind=kind)


class Connection(Protocol):
    """What every protocol's connection answers to (see the module docstring)."""

    @property
    def awaits_client(self) -> bool:
        """Whether the idle timeout applies now."""

    @property
    def encodes_audio(self) -> bool:
        """Whether `from_session` encodes audio per frame (Opus): the adapter then calls it on a
        codec thread (`audio/codec_pool.py`), so it must touch no state that `receive` does."""

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction: ...

    def receive(self, data: bytes | str, now_s: float) -> Reaction: ...

    def from_session(self, msg: Any) -> Reaction: ...

    def idle(self, timeout_s: float) -> Reaction: ...
