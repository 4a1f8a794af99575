#!/usr/bin/env bash
# Installs the real clients that tests/test_real_clients.py drives, as their users install them:
# each Python client in its own virtualenv, .venv-clients/NAME, from the exact pins in
# tests/clients/requirements/NAME.txt (their dependencies clash with ours and with each
# other's), and seed 004's Node.js client's `ws` package into tests/clients/node/node_modules
# from its package-lock.json. Idempotent: a virtualenv is rebuilt only when its requirements
# file changed. Debian packages, installed when missing (as root, or through sudo):
# `nodejs` and `npm`; `libasound2-dev` (VoiceMode's `simpleaudio` builds against ALSA) and
# `libportaudio2` (its `sounddevice` loads PortAudio at import).
# PARLEY_SKIP_CLIENTS=1 skips all of it (the client tests then skip, saying why).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PARLEY_SKIP_CLIENTS:-0}" = 1 ]; then
    exit 0
fi
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
for pkg in libasound2-dev libportaudio2; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing Debian ${missing[*]} for the client tests" >&2
    if ! { $SUDO apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" \
            >/dev/null; }; then
        echo "warning: could not install ${missing[*]}; the client tests that need them will be skipped" >&2
    fi
fi

for req in tests/clients/requirements/*.txt; do
    name="$(basename "$req" .txt)"
    venv=".venv-clients/$name"
    if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; then
        continue
    fi
    echo "installing the $name client into $venv" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    if ! { "$venv/bin/python" -m pip install --quiet --upgrade pip \
        && "$venv/bin/python" -m pip install --quiet -r "$req"; }; then
        echo "warning: could not install the $name client; its tests will be skipped" >&2
        rm -rf "$venv"
        continue
    fi
    cp "$req" "$venv/requirements.txt"  # what was installed: the next run skips it
done

node_dir=tests/clients/node
stamp="$node_dir/node_modules/.installed-package-lock.json"
if command -v npm >/dev/null && ! cmp -s "$node_dir/package-lock.json" "$stamp"; then
    echo "installing the Node.js client's packages into $node_dir/node_modules" >&2
    if (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
        cp "$node_dir/package-lock.json" "$stamp"
    else
        echo "warning: npm ci failed in $node_dir; the Node.js client test will be skipped" >&2
    fi
fi
