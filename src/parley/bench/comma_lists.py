"""The bench commands' comma-separated options (`--streams 1,4,8`, `--modes fast,realtime`)."""

from __future__ import annotations

from collections.abc import Iterable


def comma_list(text: str) -> list[str]:
    """The items of `a, b,,c`, blanks dropped: ["a", "b", "c"]."""
    return [item.strip() for item in str(text).split(",") if item.strip()]


def comma_choices(text: str, flag: str, choices: Iterable[str]) -> list[str]:
    """The items, each one of `choices`; at least one. Else a clear error naming `flag`."""
    allowed = list(choices)
    items = comma_list(text)
    if not items or set(items) - set(allowed):
        raise SystemExit(f"{flag}: choose from {', '.join(allowed)}")
    return items


def comma_counts(text: str, flag: str) -> list[int]:
    """Positive whole numbers (stream or client counts); at least one. Else a clear error."""
    try:
        counts = [int(item) for item in comma_list(text)]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"{flag}: give one or more counts of at least 1, comma-separated")
    return counts
