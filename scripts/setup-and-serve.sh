#!/usr/bin/env bash
# First command of the README: install everything, then serve the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/parley serve "$@"
