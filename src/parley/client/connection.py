"""URLs, auth and connection errors shared by every client call."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import websockets

from parley.client.errors import ParleyError, ServerUnreachable, Unauthorized, server_error

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_API_KEY = "public_token"
API_KEY_HEADER = "kyutai-api-key"
OPEN_TIMEOUT_S = 10.0

_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def _with_scheme(base: str, schemes: dict[str, str], path: str) -> str:
    if "://" not in base:
        base = "http://" + base
    parts = urlsplit(base)
    scheme = schemes.get(parts.scheme)
    if scheme is None:
        raise ParleyError(f"unsupported URL scheme in {base!r} (use http, https, ws or wss)")
    # A base URL given with a route (e.g. ws://host/api/asr-streaming) keeps only its host.
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def ws_url(base: str, path: str) -> str:
    """`path` on the server at `base` (http(s):// or ws(s)://), as a ws(s):// URL."""
    return _with_scheme(base, _WS_SCHEMES, path)


def http_url(base: str, path: str) -> str:
    return _with_scheme(base, _HTTP_SCHEMES, path)


async def open_websocket(url: str, api_key: str | None) -> websockets.ClientConnection:
    """websockets.connect with this client's exceptions for what can go wrong before the
    upgrade (the server answers 401 with a plain HTTP response, not a WebSocket)."""
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    try:
        return await websockets.connect(
            url, additional_headers=headers, max_size=None, open_timeout=OPEN_TIMEOUT_S
        )
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        if status == 401:
            raise Unauthorized(f"the server at {url} refused the API key (HTTP 401)") from None
        body = exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
        raise server_error(
            f"HTTP {status} from {url}" + (f": {body}" if body else ""), status
        ) from None
    except websockets.InvalidURI as exc:
        raise ParleyError(f"invalid URL {url!r}: {exc}") from None
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        raise ServerUnreachable(f"cannot reach the server at {url}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def http_request(
    url: str,
    body: bytes,
    api_key: str | None,
    content_type: str,
    timeout_s: float = 300.0,
) -> tuple[bytes, str]:
    """POSTs `body`; returns (response body, content type) or raises a ParleyError."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", content_type)
    if api_key:
        request.add_header(API_KEY_HEADER, api_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise Unauthorized(f"the server at {url} refused the API key (HTTP 401)") from None
        raise server_error(_error_text(exc.read()) or f"HTTP {exc.code}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ServerUnreachable(f"cannot reach the server at {url}: {reason}") from None


async def http_request_async(
    url: str, body: bytes, api_key: str | None, content_type: str, timeout_s: float = 300.0
) -> tuple[bytes, str]:
    return await asyncio.to_thread(http_request, url, body, api_key, content_type, timeout_s)


def _error_text(body: bytes) -> str:
    """The `error` field of a JSON error body, else the body as text."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return body.decode("utf-8", "replace").strip()


class SocketSession:
    """A client WebSocket session usable as `async with`; closing it ends the session."""

    _ws: websockets.ClientConnection

    async def close(self) -> None:
        await self._ws.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def finish_task(task: asyncio.Task[Any]) -> None:
    """Cancels `task` if it still runs and waits for it; its own failure still raises."""
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
