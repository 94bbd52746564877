#!/usr/bin/env bash
# The autoscale figures (issue 15): the time from a surge of pending tasks to
# the pool's new nodes being usable, with a formula that targets one node
# per 10 pending tasks (40 tasks of `sleep 5` -> 4 local nodes), against a
# plain resize to the same node count in the same run; and the cost of
# evaluating the documentation's longest formula over 24 h of samples
# (`openbatch-bench autoscale-eval`). `--quick`: one surge instead of three.
# Needs Python 3 with `requests` (tests/compat/.venv15 has it; run
# tests/compat/run.sh once to make it).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
[ "${1:-}" = "--quick" ] && rounds=1
cargo build --release -q -p openbatch -p bench
target="${CARGO_TARGET_DIR:-target}"
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
py=python3
[ -x tests/compat/.venv15/bin/python ] && py=tests/compat/.venv15/bin/python
out=bench-out
mkdir -p "$out"
data=$(mktemp -d)
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" \
  --autoscale-sample-interval 1 > "$out/as-server.out" 2> "$out/as-server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; sleep 1; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/as-server.out" 2>/dev/null && break; sleep 0.1; done
"$py" bench/autoscale.py "http://127.0.0.1:$port" benchacct "$key" "$rounds" 40 > "$out/autoscale-summary.json"
"$target/release/openbatch-bench" autoscale-eval
