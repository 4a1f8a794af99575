"""One exception hierarchy for everything the client can run into.

`ServerUnreachable` and `Unauthorized` also derive from the built-in errors a caller might
already catch (`ConnectionError`, `PermissionError`); `ServerError` stays a `RuntimeError` as
the first client versions raised.
"""

from __future__ import annotations

NO_FREE_CHANNELS = "no free channels"


class ParleyError(Exception):
    """Base of every error this client raises."""


class ServerUnreachable(ParleyError, ConnectionError):
    """Nothing answers at the URL (refused, unknown host, timed out)."""


class Unauthorized(ParleyError, PermissionError):
    """The server refused the API key (HTTP 401)."""


class ServerError(ParleyError, RuntimeError):
    """The server reported an error: an `Error` message, a close reason, or an HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # HTTP status for one-shot calls, else None


class NoFreeChannels(ServerError):
    """Every slot of the module is taken (WebSocket `no free channels`, or HTTP 503)."""


def server_error(message: str, status: int | None = None) -> ServerError:
    """The most specific exception for a server-side error message."""
    if status == 503 or message == NO_FREE_CHANNELS:
        return NoFreeChannels(message, status)
    return ServerError(message, status)
