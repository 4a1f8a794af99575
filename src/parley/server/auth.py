"""API keys: moshi-server's header `kyutai-api-key` or query `auth_id`, OpenAI's `Authorization:
Bearer` (and, on the Realtime socket, the browser form: `openai-insecure-api-key.<key>` in
`Sec-WebSocket-Protocol`, since a browser cannot set headers on a WebSocket). `Keys = None`
means the server asks for no key (no `authorized_ids` configured, which the server allows only
on loopback: see `config.check_exposure`)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import HTTPConnection

API_KEY_HEADER = "kyutai-api-key"
AUTH_QUERY = "auth_id"

Keys = frozenset[str] | None
KeyCheck = Callable[[HTTPConnection, Keys], bool]


def is_authorized(conn: HTTPConnection, keys: Keys) -> bool:
    """moshi-server's forms of the key (header, or the query where headers are awkward)."""
    if keys is None:
        return True
    key = conn.headers.get(API_KEY_HEADER) or conn.query_params.get(AUTH_QUERY)
    return key is not None and key in keys


def bearer_authorized(conn: HTTPConnection, keys: Keys) -> bool:
    """OpenAI's form (`Authorization: Bearer <key>`), or moshi-server's header."""
    if keys is None:
        return True
    auth = conn.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    key = key or conn.headers.get(API_KEY_HEADER)
    return key is not None and key in keys


KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."


def subprotocols(conn: HTTPConnection) -> list[str]:
    """The `Sec-WebSocket-Protocol` list the client offered."""
    offered = conn.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in offered.split(",") if p.strip()]


def realtime_authorized(conn: HTTPConnection, keys: Keys) -> bool:
    """OpenAI's forms on the Realtime socket: Bearer, or the key as a subprotocol."""
    if bearer_authorized(conn, keys):
        return True
    assert keys is not None
    offered = subprotocols(conn)
    key_protocols = [p for p in offered if p.startswith(KEY_SUBPROTOCOL_PREFIX)]
    return any(p[len(KEY_SUBPROTOCOL_PREFIX) :] in keys for p in key_protocols)
