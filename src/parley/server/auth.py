"""API keys: moshi-server's header `kyutai-api-key` or query `auth_id`, OpenAI's `Authorization:
Bearer`. `Keys = None` means the server asks for no key (no `authorized_ids` configured, which
the server allows only on loopback: see `config.check_exposure`)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

API_KEY_HEADER = "kyutai-api-key"
AUTH_QUERY = "auth_id"

Keys = frozenset[str] | None


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
