"""Options declared once: a dataclass per backend (and per route role) whose fields are the
config keys, with their type, default and help; `check` gives the errors a value can have.

`config.parse` reads these declarations to check a module's table (types, unknown keys,
defaults, checks, and an options class's `problems()`: (key, message) for rules spanning
several options), the backend's `build` gets the same dataclass, and nothing else lists the
keys. A backend registers itself with one `BackendType`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parley.engine.backend import Backend

Check = Callable[[Any], str | None]  # an error message, or None when the value is fine


def option(default: Any, help: str, check: Check | None = None) -> Any:
    """A field of an options dataclass (mutable defaults are copied per instance)."""
    metadata = {"help": help, "check": check}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def positive_seconds(v: float) -> str | None:
    return None if 0 < v < float("inf") else "must be a positive number of seconds"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"one of {', '.join(map(repr, choices))}, got {v!r}"


def option_fields(
    options: type,
) -> dict[str, tuple[type | tuple[type, ...], dataclasses.Field[Any]]]:
    """Each option's name -> (accepted Python types, field)."""
    hints = typing.get_type_hints(options)
    out = {}
    for f in dataclasses.fields(options):
        kind: Any = typing.get_origin(hints[f.name]) or hints[f.name]
        out[f.name] = ((int, float) if kind is float else kind, f)
    return out


@dataclass(frozen=True)
class BackendType:
    """What the config's `type = "NAME"` means: the role served, where its routes go by
    default, its options, and how to build it (heavy imports inside `build`)."""

    name: str
    role: str  # "recognition", "speech" or "chat"
    default_path: str
    options: type  # a dataclass of `option(...)` fields
    build: Callable[[str, int, Any], Backend]  # (module name, batch size, options) -> backend
