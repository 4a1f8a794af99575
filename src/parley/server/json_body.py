"""Reading a JSON object from a request body, bounded; routes turn `BadBody` into their own
error shape (moshi-style `{"error": ...}` or OpenAI's)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

MAX_REQUEST_TEXT_CHARS = 100_000  # text one request may ask to speak
MAX_JSON_BYTES = 4 * MAX_REQUEST_TEXT_CHARS  # room for that text JSON-escaped, and the other fields


class BadBody(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def json_object(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():  # bounded as it arrives: never the whole of a huge body
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise BadBody(413, "request body too large")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, huge numbers, deep nesting
        raise BadBody(400, "body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadBody(400, "body must be a JSON object")
    return data
