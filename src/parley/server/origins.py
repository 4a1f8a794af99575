"""Which web pages may open a WebSocket on this server.

Browsers apply no same-origin rule to WebSockets: any page the user visits could open
`/ws/stream` (no key by default) or a socket with a key it guessed on a local Parley. A
browser always sends `Origin`; other clients (Kyutai's scripts, LiveKit, the openai SDK) send
none. So an upgrade whose `Origin` is neither this server's own (Parley's web page) nor listed
in `allowed_origins` gets HTTP 403 before the upgrade; one without `Origin` is not a browser's
and is judged by its key alone.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

ANY_ORIGIN = "*"


def origin_allowed(origin: str | None, host: str | None, allowed: Collection[str]) -> bool:
    if origin is None or ANY_ORIGIN in allowed:
        return True
    if origin.rstrip("/").lower() in allowed:
        return True
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and host is not None and netloc == host.lower()


class OriginCheck:
    """ASGI middleware: refuses WebSocket upgrades from pages of other origins (see above)."""

    def __init__(self, app: ASGIApp, allowed_origins: Collection[str]) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            if not origin_allowed(headers.get("origin"), headers.get("host"), self.allowed):
                ws = WebSocket(scope, receive, send)
                refusal = "origin not allowed (add it to allowed_origins in the config)\n"
                await ws.send_denial_response(PlainTextResponse(refusal, status_code=403))
                return
        await self.app(scope, receive, send)
