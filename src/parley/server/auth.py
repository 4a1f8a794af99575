"""moshi-server's auth: header `kyutai-api-key`, or query `auth_id` where headers are awkward."""

from __future__ import annotations

from starlette.requests import HTTPConnection

API_KEY_HEADER = "kyutai-api-key"
AUTH_QUERY = "auth_id"


def is_authorized(conn: HTTPConnection, authorized_ids: set[str]) -> bool:
    key = conn.headers.get(API_KEY_HEADER) or conn.query_params.get(AUTH_QUERY)
    return key is not None and key in authorized_ids
