#!/usr/bin/env bash
# Ray Serve's proxy against a direct connection, in one run: `parley serve` and
# `parley serve --ray --replicas 1` with the same config side by side; `parley bench stt` and
# `parley bench tts` against each in turn, ROUNDS times interleaved (the spread is the
# difference between rounds); the CPU seconds of Ray's proxy process over each proxied bench.
# Usage: flock /work/bench.lock scripts/bench-ray-proxy.sh [ROUNDS] (needs the ray extra).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
PY=.venv/bin/python
WORK="$(mktemp -d)"
DIRECT_PORT=18610
RAY_PORT=18611
cat >"$WORK/parley.toml" <<'EOF'
[modules.asr]
type = "WhisperStreaming"
batch_size = 8  # above the most streams benched: a slot freed by a close is reused only once the replica hears the close
[modules.tts]
type = "PiperTts"
batch_size = 8  # above the most streams benched: a slot freed by a close is reused only once the replica hears the close
[ray]
num_cpus = 1
drain_timeout_s = 5
EOF
$PY -m parley serve --config "$WORK/parley.toml" --port $DIRECT_PORT >"$WORK/direct.log" 2>&1 &
DIRECT_PID=$!
RAY_TMPDIR="$WORK" $PY -m parley serve --ray --replicas 1 --config "$WORK/parley.toml" \
    --port $RAY_PORT >"$WORK/ray.log" 2>&1 &
RAY_PID=$!
trap 'kill $DIRECT_PID $RAY_PID 2>/dev/null; wait $RAY_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for port in $DIRECT_PORT $RAY_PORT; do
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 1; done
done

proxy_cpu_s() {  # CPU seconds (user + system) of Ray's proxy actor under this server
    $PY - "$RAY_PID" <<'EOF'
import sys, psutil
for p in psutil.Process(int(sys.argv[1])).children(recursive=True):
    if "ProxyActor" in " ".join(p.cmdline()):
        t = p.cpu_times()
        print(f"{t.user + t.system:.2f}")
EOF
}

for round in $(seq "$ROUNDS"); do
    for target in direct ray; do
        port=$DIRECT_PORT
        if [ $target = ray ]; then port=$RAY_PORT; fi
        before=$(proxy_cpu_s)
        echo "== round $round, $target (port $port)"
        $PY -m parley bench stt --url "ws://127.0.0.1:$port" --streams 1,4 --clips 2 --no-baseline
        $PY -m parley bench tts --url "ws://127.0.0.1:$port" --streams 1,4 --no-baseline
        after=$(proxy_cpu_s)
        echo "== round $round, $target: Ray proxy CPU over the benches: $before s -> $after s"
    done
done
