"""What Parley changes in uvicorn: a deadline for request headers, and a quieter error log.

uvicorn's HTTP/1.1 protocol (h11) with a deadline for request headers.

uvicorn times out a connection only between requests (keep-alive); one that never sends a
request, or stops halfway through its headers, stays open for ever. 1,200 such connections
took a server to its file limit, where it stopped answering. Here a connection must complete
a request's headers within HEADERS_TIMEOUT_S of connecting or of its previous response, or it
is closed. A WebSocket, once upgraded, is another protocol and unaffected.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADERS_TIMEOUT_S = 10.0
# Connections (and requests in flight) served at once; each is a file descriptor, and the
# process's limit is raised to hold these and the models' files.
MAX_CONNECTIONS = 4096


def raise_file_limit(wanted: int = 2 * MAX_CONNECTIONS) -> None:
    """Raises the soft open-files limit (often 1,024) towards `wanted`, within the hard one."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class HeadersDeadlineH11(H11Protocol):
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_headers_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self._headers_deadline is not None:
            self._headers_deadline.cancel()  # the request line and headers are in
            self._headers_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_headers_deadline()  # the next request's headers are due in time too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        super().connection_lost(exc)

    def _arm_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        self._headers_deadline = self.loop.call_later(HEADERS_TIMEOUT_S, self._headers_late)

    def _headers_late(self) -> None:
        self._headers_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class ClientFaultsAreNotErrors(logging.Filter):
    """uvicorn's WebSocket protocol logs a client's fault as a server ERROR: a refused upgrade
    (Parley's 401/403/404 denial responses) as "returned without completing handshake", an
    invalid UTF-8 text frame with a traceback. Each is one line at INFO here; every real error
    still reaches the log."""

    REFUSED = "ASGI callable returned without completing handshake."
    BAD_UTF8 = "Invalid UTF-8 sequence received from client."

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == self.REFUSED:
            return False  # the access log already has the 401/403/404 line
        if message == self.BAD_UTF8:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
            record.msg, record.args = (
                "a client sent invalid UTF-8 in a text frame (closed 1007)",
                (),
            )
        return True
