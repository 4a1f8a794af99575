#!/usr/bin/env bash
# Second command of the README (and what CI runs): install, lint, type-check, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
