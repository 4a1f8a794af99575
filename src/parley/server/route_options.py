"""The config keys a module's routes read, by the role its backend serves."""

from __future__ import annotations

from dataclasses import dataclass

from parley.engine.options import option, positive_seconds


@dataclass
class RecognitionRouteOptions:
    post_timeout_s: float = option(100.0, "how long a POST waits for a free slot", positive_seconds)
    idle_timeout_s: float = option(
        120.0,
        "nothing sent either way for this long: an Error, then the socket closes",
        positive_seconds,
    )


@dataclass
class SpeechRouteOptions:
    post_timeout_s: float = option(100.0, "how long a POST waits for a free slot", positive_seconds)
    idle_timeout_s: float = option(
        120.0,
        "quiet both ways this long (before Eos; token socket: at any time): an Error, then close",
        positive_seconds,
    )
    token_socket_path: str = option("/ws/stream", 'seed 004\'s token socket; "" turns it off')
    token_socket_auth: bool = option(False, "ask the token socket for a key (seed 004 sends none)")
    voice_aliases: dict[str, str] = option(
        {}, "other names (or patterns) for voices, e.g. Unmute's voice paths"
    )

    def problems(self) -> list[tuple[str, str]]:
        found = [
            (f"voice_aliases.{alias}", "expected a string")
            for alias, target in self.voice_aliases.items()
            if not isinstance(target, str)
        ]
        if self.token_socket_path and not self.token_socket_path.startswith("/"):
            found.append(("token_socket_path", "must start with '/' (or be empty)"))
        return found


@dataclass
class ChatRouteOptions:
    """The chat socket has no settings of its own."""


ROUTE_OPTIONS: dict[str, type] = {
    "recognition": RecognitionRouteOptions,
    "speech": SpeechRouteOptions,
    "chat": ChatRouteOptions,
}
