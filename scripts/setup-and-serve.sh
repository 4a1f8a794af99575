#!/usr/bin/env bash
# First command of the README: install everything, then serve the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PARLEY_SKIP_BROWSER=1 scripts/install.sh  # Chromium is only for the browser tests
exec .venv/bin/parley serve "$@"
