#!/usr/bin/env bash
# Measures the figures of running tasks (issue "Run tasks"): end-to-end
# throughput of trivial tasks on one local node with 2 slots against the
# machine's raw process-spawn rate measured in the same run, the latency from
# add to start on an idle node, and server and agent CPU and memory.
# `--quick` runs 2,000 tasks instead of 20,000.
set -euo pipefail
cd "$(dirname "$0")/.."
n=20000
[ "${1:-}" = "--quick" ] && n=2000
# OPENBATCH_BIN runs another build of the server (e.g. an older one, for a
# before/after in interleaved runs); the load generator is this tree's.
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p openbatch -p bench
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
bench="$target/release/openbatch-bench"
out=bench-out
mkdir -p "$out"
raw=$("$bench" raw-spawn --count "$n" --threads 2)
data=$(mktemp -d "${TMPDIR:-/tmp}/openbatch-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" > "$out/tasks-server.out" 2> "$out/tasks-server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; sleep 0.5; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/tasks-server.out" 2>/dev/null && break; sleep 0.1; done
t=(--endpoint "http://127.0.0.1:$port" --account benchacct --key "$key")
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
latency=$("$bench" start-latency "${t[@]}" --samples 200)
agent=$(pgrep -f "agent --server http://127.0.0.1:$port --pool latpool" | head -1)
s0=$(ticks $pid)
run=$("$bench" run-tasks "${t[@]}" --tasks "$n" --slots 2)
s1=$(ticks $pid)
agent_run=$(pgrep -f "agent --server http://127.0.0.1:$port --pool runpool" | head -1)
a1=$(ticks "$agent_run")
# After the run: the removal it ends with must not slow the run's own
# directory creation (see bench/README.md).
layout=$("$bench" layout-cost --dir "$data" --count "$n" --threads 2)
srss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
arss=$(awk '/VmHWM/{print $2}' /proc/$agent_run/status)
hz=$(getconf CLK_TCK)
python3 - "$out/tasks-summary.json" <<PY
import json, sys
raw, run, lat, layout = json.loads('''$raw'''), json.loads('''$run'''), json.loads('''$latency'''), json.loads('''$layout''')
n = $n
s = {"raw_spawn": raw, "run_tasks": run, "add_to_start_latency_ms": lat, "task_layout_cost": layout,
     "server_cpu_us_per_task": ($s1 - $s0) / $hz * 1e6 / n, "agent_cpu_us_per_task": $a1 / $hz * 1e6 / n,
     "server_peak_rss_kib": $srss, "agent_peak_rss_kib": $arss}
json.dump(s, open(sys.argv[1], "w"), indent=2)
print(f"""
trivial tasks ({n} x /bin/true, 1 local node, 2 slots)
  end to end:  {run.get('tasks_per_second', 0):>8,.0f} tasks/s (enable -> all completed; {run.get('succeeded')} succeeded)
  while busy:  {run.get('tasks_per_second_running', 0):>8,.0f} tasks/s (first start -> last end)
  raw spawn:   {raw['per_second']:>8,.0f} processes/s (Command + process_group(0), 2 threads, same machine, same run)
  ratio:       {run.get('tasks_per_second', 0) / raw['per_second'] * 100:.0f}% of the raw rate
add -> start on an idle node: p50 {lat.get('p50_ms', 0):.2f} ms  p99 {lat.get('p99_ms', 0):.2f} ms  ({lat.get('samples')} tasks)
CPU per task: server {s['server_cpu_us_per_task']:.0f} us, agent {s['agent_cpu_us_per_task']:.0f} us
  of which the task directory layout alone (task dir, wd/, stdout.txt, stderr.txt on the data
  directory's file system, measured apart): {layout.get('us_per_task', 0):.0f} us
peak RSS: server {$srss/1024:.1f} MiB, agent {$arss/1024:.1f} MiB
""")
PY
