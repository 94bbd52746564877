#!/usr/bin/env bash
# The metrics figure (issue 18): `/metrics` scrape time and size with
# 1,000,000 tasks stored, against the same scrape of an empty store in the
# same run (the baseline). Starts a fresh `openbatch serve`, scrapes it
# (empty), adds the tasks to one job with `openbatch-bench ingest` (4
# clients, collections of 100; no nodes, so they stay active), and scrapes
# again. Each scrape is a fresh connection (python3's urllib, no
# dependencies); 30 scrapes per phase after 3 warm-ups. `--quick` uses
# 100,000 tasks. Prints JSON and writes bench-out/metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=1000000
[ "${1:-}" = "--quick" ] && tasks=100000

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p openbatch -p bench
target="${CARGO_TARGET_DIR:-target}"
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
bench="$target/release/openbatch-bench"
out=bench-out
mkdir -p "$out"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
endpoint="http://127.0.0.1:$port"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" > "$out/server.out" 2> "$out/server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/server.out" 2>/dev/null && break; sleep 0.1; done

scrape() { # label
  python3 - "$endpoint/metrics" "$1" <<'PY'
import json, statistics, sys, time, urllib.request
url, label = sys.argv[1], sys.argv[2]
def once():
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - t, body
for _ in range(3):
    once()
times, body = [], b""
for _ in range(30):
    dt, body = once()
    times.append(dt * 1000)
tasks = sum(float(l.split()[-1]) for l in body.decode().splitlines() if l.startswith("openbatch_tasks{"))
print(json.dumps({"phase": label, "tasks_stored": int(tasks), "bytes": len(body), "lines": body.count(b"\n"),
                  "median_ms": round(statistics.median(times), 3), "p90_ms": round(sorted(times)[26], 3),
                  "max_ms": round(max(times), 3)}))
PY
}
empty=$(scrape empty)
t0=$(date +%s.%N)
"$bench" ingest --endpoint "$endpoint" --account benchacct --key "$key" --job metricsjob --create-job --tasks "$tasks" --clients 4 --batch 100 > "$out/metrics-ingest.json"
t1=$(date +%s.%N)
full=$(scrape "tasks")
python3 - "$empty" "$full" "$t0" "$t1" <<'PY' | tee "$out/metrics.json"
import json, sys
e, f = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"baseline_empty_store": e, "with_tasks": f, "ingest_s": round(float(sys.argv[4]) - float(sys.argv[3]), 1)}, indent=1))
PY
