#!/usr/bin/env bash
# Measures the figures of the job/task API (issue "Serve the Azure Batch REST
# API"): ingest throughput through addtaskcollection (4 clients, batches of
# 100), GET task latency, filtered list page latency on a 100,000-task job,
# and server memory with 1,000,000 tasks stored. Each figure comes with a
# baseline measured in the same run. `--quick` divides the sizes by 10.
# OPENBATCH_BENCH_DATABASE=postgresql://... runs the server on a fresh
# database created there (the PostgreSQL store) instead of SQLite;
# bench/store.sh compares both stores in one run.
#
# Prints a table and writes bench-out/summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=1
[ "${1:-}" = "--quick" ] && scale=10
tasks=$((100000 / scale))
total=$((1000000 / scale))

cargo build --release -q -p openbatch -p bench
# OPENBATCH_BIN runs another build of the server (for a before/after).
target="${CARGO_TARGET_DIR:-target}"
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
bench="$target/release/openbatch-bench"
out=bench-out
mkdir -p "$out"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
endpoint="http://127.0.0.1:$port"
db_args=()
if [ -n "${OPENBATCH_BENCH_DATABASE:-}" ]; then
  db="bench_$(date +%s)_$$"
  psql -q -v ON_ERROR_STOP=1 "$OPENBATCH_BENCH_DATABASE" -c "CREATE DATABASE $db"
  base="${OPENBATCH_BENCH_DATABASE%%\?*}"; query=""
  [ "$base" != "$OPENBATCH_BENCH_DATABASE" ] && query="?${OPENBATCH_BENCH_DATABASE#*\?}"
  db_args=(--database "${base%/*}/$db$query")
fi
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" "${db_args[@]}" > "$out/server.out" 2> "$out/server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/server.out" 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/{print $2}' /proc/$pid/status; }
hwm() { awk '/VmHWM/{print $2}' /proc/$pid/status; }
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }  # utime+stime, clock ticks
t=(--endpoint "$endpoint" --account benchacct --key "$key")

idle_rss=$(rss)
baseline=$("$bench" baseline --tasks "$tasks" --clients 4 --batch 100)
cpu0=$(cpu)
ingest=$("$bench" ingest "${t[@]}" --job job0 --create-job --tasks "$tasks" --clients 4 --batch 100)
cpu1=$(cpu)
counts=$(python3 - "$endpoint" "$key" <<'PY'
import sys, base64, hmac, hashlib, urllib.request
from email.utils import formatdate
ep, key = sys.argv[1], sys.argv[2]
path = "/jobs/job0/taskcounts"
date = formatdate(usegmt=True)
sts = f"GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:{date}\n/benchacct{path}\napi-version:2025-06-01"
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{ep}{path}?api-version=2025-06-01", headers={"ocp-date": date, "Authorization": f"SharedKey benchacct:{sig}"})
print(urllib.request.urlopen(req).read().decode())
PY
)
latency=$("$bench" latency "${t[@]}" --job job0 --tasks "$tasks" --samples 5000)
filter_state=$("$bench" filter "${t[@]}" --job job0 --filter "state eq 'active'")
filter_json=$("$bench" filter "${t[@]}" --job job0 --filter "commandLine eq '/bin/true' and startswith(id,'t00')")
filter_none=$("$bench" filter "${t[@]}" --job job0 --filter "executionInfo/exitCode eq 3")
# Fill up to $total tasks, then read memory.
jobs=$((total / tasks))
for j in $(seq 1 $((jobs - 1))); do
  "$bench" ingest "${t[@]}" --job "job$j" --create-job --tasks "$tasks" --clients 4 --batch 100 > /dev/null
done
sleep 1
full_rss=$(rss)
full_hwm=$(hwm)
hz=$(getconf CLK_TCK)

python3 - "$out/summary.json" <<PY
import json, sys
b, i, l = json.loads('''$baseline'''), json.loads('''$ingest'''), json.loads('''$latency''')
fs, fj, fn = json.loads('''$filter_state'''), json.loads('''$filter_json'''), json.loads('''$filter_none''')
counts = json.loads('''$counts''')
cpu_s = ($cpu1 - $cpu0) / $hz
s = {
  "ingest": {"tasks": $tasks, "clients": 4, "batch": 100, **i, "server_cpu_seconds": cpu_s,
             "server_cpu_us_per_task": cpu_s * 1e6 / max(i["tasks_acknowledged"], 1),
             "durable_count_after": counts["taskCounts"]["active"]},
  "ingest_baseline_sink": b,
  "get_task_latency_ms": l,
  "list_page_filter_state": fs, "list_page_filter_json": fj, "list_page_filter_exitcode_none": fn,
  "memory_kib": {"idle_rss": $idle_rss, "tasks_stored": $total, "rss": $full_rss, "peak_rss": $full_hwm},
}
json.dump(s, open(sys.argv[1], "w"), indent=2)
print(f"""
ingest (addtaskcollection, 4 clients x batches of 100, {s['ingest']['tasks']} tasks)
  server:   {i['tasks_per_second']:>12,.0f} tasks/s acknowledged+durable ({i['errors']} errors; {counts['taskCounts']['active']} counted after)
  baseline: {b['tasks_per_second']:>12,.0f} tasks/s (same generator against a no-op HTTP sink)
  server CPU: {s['ingest']['server_cpu_us_per_task']:.1f} us/task
GET task:            p50 {l['p50_ms']:.3f} ms   p99 {l['p99_ms']:.3f} ms   ({l['samples']} requests)
list page, state eq 'active' (1000 items):        p50 {fs['p50_ms']:.2f} ms  p99 {fs['p99_ms']:.2f} ms
list page, json property + startswith ({fj['items_per_page']} items): p50 {fj['p50_ms']:.2f} ms  p99 {fj['p99_ms']:.2f} ms
list page, executionInfo/exitCode eq 3 (0 items):  p50 {fn['p50_ms']:.2f} ms  p99 {fn['p99_ms']:.2f} ms
memory: idle RSS {$idle_rss/1024:.1f} MiB; with {$total:,} tasks stored RSS {$full_rss/1024:.1f} MiB (peak {$full_hwm/1024:.1f} MiB)
""")
PY
