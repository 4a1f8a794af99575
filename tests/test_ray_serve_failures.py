"""`parley serve --ray` when no replica can load its model: Ray's controller logs the
backend's error for each replica it tries, and the command stops with a clear message and
no Ray process left (instead of serving nothing). Skipped without the `ray` extra."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray.serve")

from tests.conftest import ROOT, free_port  # noqa: E402


def test_replicas_that_cannot_load_their_model_stop_the_server(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    cfg = tmp_path / "parley.toml"
    cfg.write_text(
        f"""
[modules.asr]
type = "WhisperStreaming"
batch_size = 2
model = "{empty}"
[ray]
num_cpus = 0.5
"""
    )
    ray_tmp = tempfile.mkdtemp(prefix="pr-")
    log_path = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--ray", "--replicas", "1"]
        + ["--config", str(cfg), "--port", str(free_port())],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    spawned: dict[int, psutil.Process] = {}  # Ray's processes, to check they all end
    deadline = time.monotonic() + 150
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                spawned.update((c.pid, c) for c in psutil.Process(proc.pid).children(True))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _, alive = psutil.wait_procs(list(spawned.values()), timeout=20)
        for p in alive:  # only what this server started, by pid
            p.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = log_path.read_text(errors="replace")
    assert proc.returncode == 2, text[-3000:]
    assert "parley: the replicas did not start" in text
    assert f"no CTranslate2 Whisper model (model.bin) in {empty}" in text
    assert not alive, f"Ray processes left: {alive}"
