#!/usr/bin/env bash
# The two stores side by side, in one run (issue "PostgreSQL and replicated
# servers"): ingest through addtaskcollection (4 clients x batches of 100,
# 100,000 tasks; acknowledged = committed, synchronous_commit on for
# PostgreSQL, synchronous=FULL for SQLite), GET task latency, and trivial
# tasks end to end (one local node, 2 slots) — each on SQLite and on
# PostgreSQL.
#
# PostgreSQL: OPENBATCH_BENCH_DATABASE=postgresql://... names a server to
# create a fresh database on; without it a private server is started in a
# temporary directory (scripts/pg-server). `--quick` divides the sizes by 10.
# Prints a table and writes bench-out/store-summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=1
[ "${1:-}" = "--quick" ] && scale=10
tasks=$((100000 / scale))
run_n=$((20000 / scale))

cargo build --release -q -p openbatch -p bench
target="${CARGO_TARGET_DIR:-target}"
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
bench="$target/release/openbatch-bench"
out=bench-out
mkdir -p "$out"
key=$(head -c 32 /dev/urandom | base64 -w0)
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c"; done' EXIT

pg_dir=""
admin="${OPENBATCH_BENCH_DATABASE:-}"
if [ -z "$admin" ]; then
  pg_dir=$(mktemp -u /tmp/openbatch-bench-pg.XXXXXX)
  admin=$(scripts/pg-server start "$pg_dir")
  cleanup+=("scripts/pg-server stop '$pg_dir'")
fi
# The PostgreSQL server's processes (for its CPU time; only for a server
# this script started): the postmaster and its children.
pg_pids() {
  [ -n "$pg_dir" ] || return 0
  local pm; pm=$(head -1 "$pg_dir/data/postmaster.pid")
  echo "$pm"; pgrep -P "$pm" || true
}
ticks() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $s; }
hz=$(getconf CLK_TCK)

# Runs the measurements against one server; prints a JSON object.
measure() { # name [serve args...]
  local name=$1; shift
  local data port pid endpoint
  data=$(mktemp -d "${TMPDIR:-/tmp}/openbatch-bench.XXXXXX")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  endpoint="http://127.0.0.1:$port"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" "$@" \
    > "$out/store-$name.out" 2> "$out/store-$name.err" &
  pid=$!
  for _ in $(seq 200); do grep -q "http://" "$out/store-$name.out" 2>/dev/null && break; sleep 0.1; done
  local t=(--endpoint "$endpoint" --account benchacct --key "$key")
  local pgp=(); [ "$name" = postgres ] && mapfile -t pgp < <(pg_pids)
  local c0 p0 c1 p1 ingest latency run
  c0=$(ticks $pid); p0=$(ticks "${pgp[@]}")
  ingest=$("$bench" ingest "${t[@]}" --job job0 --create-job --tasks "$tasks" --clients 4 --batch 100)
  c1=$(ticks $pid); p1=$(ticks "${pgp[@]}")
  latency=$("$bench" latency "${t[@]}" --job job0 --tasks "$tasks" --samples 2000)
  run=$("$bench" run-tasks "${t[@]}" --tasks "$run_n" --slots 2)
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$data"
  python3 -c "
import json
i = json.loads('''$ingest''')
print(json.dumps({'ingest': i, 'ingest_server_cpu_us_per_task': ($c1 - $c0) / $hz * 1e6 / max(i['tasks_acknowledged'], 1),
  'ingest_db_cpu_us_per_task': ($p1 - $p0) / $hz * 1e6 / max(i['tasks_acknowledged'], 1),
  'get_task_latency_ms': json.loads('''$latency'''), 'run_tasks': json.loads('''$run''')}))"
}

db="bench_$(date +%s)_$$"
psql -q -v ON_ERROR_STOP=1 "$admin" -c "CREATE DATABASE $db"
base="${admin%%\?*}"; query=""; [ "$base" != "$admin" ] && query="?${admin#*\?}"
pg_url="${base%/*}/$db$query"

baseline=$("$bench" baseline --tasks "$tasks" --clients 4 --batch 100)
sqlite=$(measure sqlite)
postgres=$(measure postgres --database "$pg_url")
psql -q "$admin" -c "DROP DATABASE $db" || true

python3 - "$out/store-summary.json" <<PY
import json, sys
b, lite, pg = json.loads('''$baseline'''), json.loads('''$sqlite'''), json.loads('''$postgres''')
s = {"tasks": $tasks, "run_tasks": $run_n, "baseline_sink": b, "sqlite": lite, "postgres": pg}
json.dump(s, open(sys.argv[1], "w"), indent=2)
def row(name, r):
    i, l, run = r["ingest"], r["get_task_latency_ms"], r["run_tasks"]
    return (f"  {name:9} ingest {i['tasks_per_second']:>9,.0f} tasks/s ({i['errors']} errors; server CPU {r['ingest_server_cpu_us_per_task']:.1f} us/task"
            + (f", PostgreSQL CPU {r['ingest_db_cpu_us_per_task']:.1f} us/task" if r['ingest_db_cpu_us_per_task'] else "") + ")\n"
            f"            GET task p50 {l['p50_ms']:.3f} ms p99 {l['p99_ms']:.3f} ms\n"
            f"            trivial tasks end to end {run.get('tasks_per_second', 0):>7,.0f} tasks/s ({run.get('succeeded')} succeeded)")
print(f"""
stores side by side: ingest of {$tasks:,} tasks (addtaskcollection, 4 clients x 100), {$run_n:,} trivial tasks (1 node, 2 slots)
{row('SQLite', lite)}
{row('PostgreSQL', pg)}
  baseline (same generator, no-op HTTP sink): {b['tasks_per_second']:,.0f} tasks/s
  PostgreSQL / SQLite: ingest {pg['ingest']['tasks_per_second'] / lite['ingest']['tasks_per_second'] * 100:.0f}%, trivial tasks {pg['run_tasks'].get('tasks_per_second', 0) / max(lite['run_tasks'].get('tasks_per_second', 1), 1) * 100:.0f}%
""")
PY
