"""The command line the OpenAI-style drivers share, run with a client's own virtualenv:
`DRIVER tts BASE_URL TEXT OUT_PATH` or `DRIVER stt BASE_URL WAV...`; prints the result as JSON
(the speech itself goes to OUT_PATH as raw s16le)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any


def run_driver(
    tts: Callable[..., Awaitable[dict[str, Any]]], stt: Callable[..., Awaitable[Any]]
) -> None:
    mode, base_url, *rest = sys.argv[1:]
    result = asyncio.run(tts(base_url, *rest) if mode == "tts" else stt(base_url, *rest))
    if mode == "tts":
        path, pcm = result.pop("pcm")
        with open(path, "wb") as f:
            f.write(pcm)
    print(json.dumps(result))
