"""Per-frame codec work (Opus, MP3/AAC/FLAC encoding, time stretch) on worker threads.

Encoding one 80 ms frame as Opus costs ~1.6 ms of CPU (measured here, sphn, 24 kHz): on the
event loop, a few dozen streams would hold every other socket's frames behind it. A thread hop
costs ~0.2 ms, so only work that costs more goes here (Opus and soxr *decoding* of client
audio, ~0.1 ms, stays on the loop). One stream's calls are awaited in order, so each codec
object is only ever used by one thread at a time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="codec")


async def off_loop(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`fn(*args, **kwargs)` on a codec thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, lambda: fn(*args, **kwargs))
