#!/usr/bin/env python3
"""Before/after figures for the hardening issue (11): attacks on `parley serve` defaults.

    .venv/bin/python scripts/hardening_figures.py idle  [--src OTHER_CHECKOUT/src]
    .venv/bin/python scripts/hardening_figures.py word  [--src ...]
    .venv/bin/python scripts/hardening_figures.py noread [--src ...]

`idle`: 1,200 idle TCP connections (how many are open 15 s later, and a GET meanwhile), then 16
silent clients on the token socket against the 16 TTS slots (when the slots are free). `word`:
a fresh server per single Text of 1,000 / 2,000 / 4,000 / 8,000 letters; server RSS after.
`noread`: a TTS client sends ~200 KB of text and never reads; server RSS and slots over 150 s.
`--src` runs the server from another checkout (PYTHONPATH), e.g. the commit before, for the
"before" column. Minutes long; not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import msgpack
import psutil
import websockets


def serve(port: int, src: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **({"PYTHONPATH": src} if src else {}))
    argv = [sys.executable, "-m", "parley.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/modules_info", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def tts_slots_used(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/modules_info", timeout=5) as r:
        return int({m["name"]: m["used_slots"] for m in json.loads(r.read())}["tts"])


def idle(port: int) -> None:
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(1200)]
    start = time.monotonic()
    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/build_info", timeout=30).read()
    print(f"{len(conns)} idle connections; a GET answered in {time.monotonic() - start:.3f} s")
    time.sleep(15)
    still_open = 0
    for c in conns:
        c.setblocking(False)
        try:
            still_open += c.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    print(f"after 15 s: {still_open} of {len(conns)} still open")

    async def silent_token_clients() -> None:
        held = [await websockets.connect(f"ws://127.0.0.1:{port}/ws/stream") for _ in range(16)]
        start = time.monotonic()
        while time.monotonic() - start < 150:
            await asyncio.sleep(5)
            if tts_slots_used(port) == 0:
                print(f"16 silent token clients: slots free after {time.monotonic() - start:.0f} s")
                return
        print(f"16 silent token clients: {tts_slots_used(port)} of 16 slots held after 150 s")
        for ws in held:
            await ws.close()

    asyncio.run(silent_token_clients())


async def speak_one_word(port: int, letters: int) -> int:
    url = f"ws://127.0.0.1:{port}/api/tts_streaming?format=PcmMessagePack"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(msgpack.packb({"type": "Text", "text": "a" * letters}))
        await ws.send(msgpack.packb({"type": "Eos"}))
        return sum([msgpack.unpackb(m).get("type") == "Audio" async for m in ws])


async def never_read(port: int, proc: psutil.Process) -> None:
    url = f"ws://127.0.0.1:{port}/api/tts_streaming?format=PcmMessagePack"
    async with websockets.connect(url, max_queue=4) as ws:
        for word in ("The quick brown fox jumps over the lazy dog. " * 4500).split():
            await ws.send(msgpack.packb({"type": "Text", "text": word}))
        await ws.send(msgpack.packb({"type": "Eos"}))
        start = time.monotonic()
        print(f"  0 s: RSS {proc.memory_info().rss / 1e6:.0f} MB")
        while time.monotonic() - start < 150:
            await asyncio.sleep(30)
            rss = proc.memory_info().rss / 1e6
            used = tts_slots_used(port)
            print(f"{time.monotonic() - start:3.0f} s: RSS {rss:.0f} MB, TTS slots used {used}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("attack", choices=["idle", "word", "noread"])
    parser.add_argument("--src", help="run the server from this source tree (PYTHONPATH)")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    sizes = (1000, 2000, 4000, 8000) if args.attack == "word" else (0,)
    for letters in sizes:
        server = serve(args.port, args.src)
        proc = psutil.Process(server.pid)
        try:
            if args.attack == "idle":
                idle(args.port)
            elif args.attack == "noread":
                asyncio.run(never_read(args.port, proc))
            else:
                rss0 = proc.memory_info().rss
                frames = asyncio.run(asyncio.wait_for(speak_one_word(args.port, letters), 300))
                before_gb, after_gb = rss0 / 1e9, proc.memory_info().rss / 1e9
                print(f"{letters} letters: RSS {before_gb:.2f} -> {after_gb:.2f} GB", end=", ")
                print(f"{frames} frames")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
