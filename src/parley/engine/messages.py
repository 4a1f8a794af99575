"""What every session says, whatever its kind: the slot is live, or it failed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ready:
    """The session's slot is live (sent by backends whose protocol announces it)."""


@dataclass(frozen=True)
class ErrorMessage:
    """The session failed; `message` is safe to show to its client. Nothing follows."""

    message: str
