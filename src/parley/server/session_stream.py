"""A streaming HTTP response that owns its session's slot."""

from __future__ import annotations

from collections.abc import AsyncIterable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from parley.engine.module import Session


class SessionStream(StreamingResponse):
    """Released when the response ends, however it ends: sent, the client gone mid-way, or
    the body never iterated (a generator's `finally` would not run then)."""

    def __init__(self, session: Session, content: AsyncIterable[bytes], media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.session = session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.session:
            await super().__call__(scope, receive, send)
