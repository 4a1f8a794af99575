"""Seed 004's Python client (`speak()` from the token socket document), as written there.

Run with our own venv's python (it needs only `websockets` and numpy):
    seed004_speak.py URL OUT_FILE TOKENS_JSON
prints JSON {messages: [{binary, bytes}], samples, error} and writes the audio (float32 LE) to
OUT_FILE. Changes from the seed's text: `import asyncio` (the seed uses it without importing
it), the URL is an argument, and "Play audio..." / "Process final chunks..." keep what came: each
frame's kind and size is noted before the seed's own `np.frombuffer` runs on it, and the
samples are collected. An exception the seed's code raises (e.g. `np.frombuffer` on a text
frame) is reported as `error`, exit status 1.
"""

import asyncio
import json
import sys

import numpy as np
import websockets

URL = sys.argv[1]
messages: list[dict] = []
chunks: list[np.ndarray] = []


def note(message: bytes | str) -> bytes | str:
    messages.append({"binary": isinstance(message, bytes), "bytes": len(message)})
    return message


# ---- seed 004, "Python with websockets" -----------------------------------------------------
async def speak(text_stream):
    async with websockets.connect(URL) as ws:
        async for token in text_stream:
            # Send token
            await ws.send(json.dumps({"token": token, "pitch_shift": 0}))

            # Receive audio (non-blocking)
            try:
                audio_bytes = note(await asyncio.wait_for(ws.recv(), timeout=0.5))
                audio = np.frombuffer(audio_bytes, dtype=np.float32)
                # Play audio...
                chunks.append(audio)
            except asyncio.TimeoutError:  # noqa: UP041 - the seed's spelling
                continue  # No audio yet

        # Flush remaining
        await ws.send(json.dumps({"flush": True}))

        while True:
            try:
                audio_bytes = note(await asyncio.wait_for(ws.recv(), timeout=1.0))
                # Process final chunks...
                chunks.append(np.frombuffer(audio_bytes, dtype=np.float32))
            except asyncio.TimeoutError:  # noqa: UP041
                break


# ---------------------------------------------------------------------------------------------


async def token_stream(tokens: list[str]):
    for token in tokens:
        yield token


def main() -> None:
    out_file, tokens = sys.argv[2], json.loads(sys.argv[3])
    error = None
    try:
        asyncio.run(speak(token_stream(tokens)))
    except Exception as exc:  # reported, not hidden: the test shows it
        error = f"{type(exc).__name__}: {exc}"
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    pcm.astype("<f4").tofile(out_file)
    print(json.dumps({"messages": messages, "samples": len(pcm), "error": error}))
    sys.exit(1 if error else 0)


if __name__ == "__main__":
    main()
