#!/usr/bin/env bash
# First command of the README: install everything, then serve the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
# Chromium and the third-party clients are only for the tests.
PARLEY_SKIP_BROWSER=1 PARLEY_SKIP_CLIENTS=1 scripts/install.sh
exec .venv/bin/parley serve "$@"
