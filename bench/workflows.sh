#!/usr/bin/env bash
# Measures the figures of workflows (issue "Workflows"): dependency release
# latency (a task's end to its dependent's start, over a chain), and a wide
# fan-out / fan-in DAG of trivial tasks against the same number of
# independent tasks in the same run (time and server CPU per task).
# `--quick` runs 10,000 tasks instead of 100,000.
set -euo pipefail
cd "$(dirname "$0")/.."
n=100000
[ "${1:-}" = "--quick" ] && n=10000
cargo build --release -q -p openbatch -p bench
bin=target/release/openbatch
bench=target/release/openbatch-bench
out=bench-out
mkdir -p "$out"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" > "$out/wf-server.out" 2> "$out/wf-server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; sleep 0.5; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/wf-server.out" 2>/dev/null && break; sleep 0.1; done
t=(--endpoint "http://127.0.0.1:$port" --account benchacct --key "$key")
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
dep=$("$bench" dep-latency "${t[@]}" --tasks 200)
s0=$(ticks $pid)
ind=$("$bench" dag "${t[@]}" --tasks "$n" --shape independent --name ind)
s1=$(ticks $pid)
dag=$("$bench" dag "${t[@]}" --tasks "$n" --shape dag --name dag)
s2=$(ticks $pid)
python3 - "$out/workflows-summary.json" <<PY
import json, sys
dep, ind, dag = json.loads('''$dep'''), json.loads('''$ind'''), json.loads('''$dag''')
n, hz = $n, $hz
cpu_ind = ($s1 - $s0) / hz * 1e6 / n
cpu_dag = ($s2 - $s1) / hz * 1e6 / n
s = {"dependency_release_ms": dep, "independent": ind, "dag": dag,
     "server_cpu_us_per_task_independent": cpu_ind, "server_cpu_us_per_task_dag": cpu_dag}
json.dump(s, open(sys.argv[1], "w"), indent=2)
print(f"""
dependency release (end of a task -> start of its dependent, chain of {dep.get('samples', 0) + 1}):
  p50 {dep.get('p50_ms', 0):.2f} ms  p99 {dep.get('p99_ms', 0):.2f} ms  max {dep.get('max_ms') or 0:.2f} ms
{n:,} trivial tasks on 1 local node, 2 slots (enable -> all completed):
  independent:            {ind.get('seconds', 0):7.1f} s  {ind.get('tasks_per_second', 0):7,.0f} tasks/s  server CPU {cpu_ind:.0f} us/task
  fan-out/fan-in DAG:     {dag.get('seconds', 0):7.1f} s  {dag.get('tasks_per_second', 0):7,.0f} tasks/s  server CPU {cpu_dag:.0f} us/task
  (root -> {n - 2:,} tasks depending on it -> one sink depending on all of them through one id range)
""")
PY
