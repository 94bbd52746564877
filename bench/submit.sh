#!/usr/bin/env bash
# `openbatch submit` of 10,000 trivial tasks (`N`, default 10000) with
# --no-watch: the time until every task is acknowledged, against the same
# through the Python SDK (azure-batch 15.1.0 from the compatibility suites'
# virtualenv: create_task_collection in chunks of 100, 4 in flight, as
# submit sends them) in the same run. Both add to jobs of a pool without
# nodes, so nothing runs meanwhile. `ROUNDS` rounds (default 2), the order
# alternating. Each side is timed as a whole process (start to exit: job
# creation and the adds, plus the interpreter's start and imports for
# Python) and from its own clock (the adds only).
# OPENBATCH_BIN runs another build of the server and the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-10000}
rounds=${ROUNDS:-2}
py=tests/compat/.venv15/bin/python
if [ ! -x "$py" ]; then
  echo "run tests/compat/run.sh (or scripts/test) once first: it installs the SDK venv" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
if [ -z "${OPENBATCH_BIN:-}" ]; then
  cargo build --release -q -p openbatch
fi
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
out=bench-out
mkdir -p "$out"
data=$(mktemp -d "${TMPDIR:-/tmp}/openbatch-submit-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" > "$out/submit-server.out" 2> "$out/submit-server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; sleep 0.5; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/submit-server.out" 2>/dev/null && break; sleep 0.1; done
export AZURE_BATCH_ENDPOINT="http://127.0.0.1:$port" AZURE_BATCH_ACCOUNT=benchacct AZURE_BATCH_ACCESS_KEY="$key"
# A pool without nodes for the jobs to name.
"$py" - <<'PY'
import os
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
c = BatchClient(endpoint=os.environ["AZURE_BATCH_ENDPOINT"],
                credential=AzureNamedKeyCredential(os.environ["AZURE_BATCH_ACCOUNT"], os.environ["AZURE_BATCH_ACCESS_KEY"]))
c.create_pool(models.BatchPoolCreateOptions(id="submitpool", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
PY
now() { date +%s.%N; }
cli_run() { # job
  local t0 t1 line
  t0=$(now)
  line=$("$bin" submit --pool submitpool --job "$1" --command "/bin/true {}" --range "1..$n" --parallel 4 --no-watch 2>> "$out/submit-cli.err")
  t1=$(now)
  # "job J (created): N tasks added in X s"
  echo "$(awk "BEGIN{print $t1 - $t0}") $(echo "$line" | sed -E 's/.* added in ([0-9.]+) s$/\1/')"
}
sdk_run() { # job
  local t0 t1 inner
  t0=$(now)
  inner=$("$py" - "$1" "$n" <<'PY'
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
job, n = sys.argv[1], int(sys.argv[2])
c = BatchClient(endpoint=os.environ["AZURE_BATCH_ENDPOINT"],
                credential=AzureNamedKeyCredential(os.environ["AZURE_BATCH_ACCOUNT"], os.environ["AZURE_BATCH_ACCESS_KEY"]))
c.create_job(models.BatchJobCreateOptions(id=job, pool_info=models.BatchPoolInfo(pool_id="submitpool")))
w = len(str(n))
tasks = [models.BatchTaskCreateOptions(id=f"task-{i:0{w}}", command_line=f"/bin/true {i}") for i in range(1, n + 1)]
chunks = [tasks[i:i + 100] for i in range(0, n, 100)]
t0 = time.monotonic()
def add(chunk):
    r = c.create_task_collection(job, models.BatchTaskGroup(task_values=chunk))
    return sum(1 for v in r.result_values if v.status == models.BatchTaskAddStatus.SUCCESS)
with ThreadPoolExecutor(4) as ex:
    added = sum(ex.map(add, chunks))
assert added == n, added
print(f"{time.monotonic() - t0:.3f}")
PY
)
  t1=$(now)
  echo "$(awk "BEGIN{print $t1 - $t0}") $inner"
}
results=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="cli sdk"; else order="sdk cli"; fi
  for side in $order; do
    res=$(${side}_run "$side-$r")
    results+=("$r $side $res")
  done
done
# Every acknowledged task is stored.
"$py" - "$n" "$rounds" <<'PY'
import os, sys
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
n, rounds = int(sys.argv[1]), int(sys.argv[2])
c = BatchClient(endpoint=os.environ["AZURE_BATCH_ENDPOINT"],
                credential=AzureNamedKeyCredential(os.environ["AZURE_BATCH_ACCOUNT"], os.environ["AZURE_BATCH_ACCESS_KEY"]))
for r in range(1, rounds + 1):
    for side in ("cli", "sdk"):
        got = c.get_job_task_counts(f"{side}-{r}").task_counts.active
        assert got == n, (side, r, got)
PY
python3 - "$out/submit-summary.json" "$n" "${results[@]}" <<'PY'
import json, sys
path, n, rows = sys.argv[1], int(sys.argv[2]), [r.split() for r in sys.argv[3:]]
runs = [{"round": int(r), "side": side, "process_s": float(total), "adds_s": float(adds)} for r, side, total, adds in rows]
json.dump({"tasks": n, "runs": runs}, open(path, "w"), indent=2)
print(f"\nsubmit of {n:,} trivial tasks, --no-watch (time until all are acknowledged; 100 per collection, 4 in flight)")
print(f"  {'round':>5}  {'client':<28} {'whole process':>14} {'adds only':>10} {'tasks/s (adds)':>15}")
for x in runs:
    name = "openbatch submit" if x["side"] == "cli" else "Python SDK 15.1.0"
    print(f"  {x['round']:>5}  {name:<28} {x['process_s']:>12.2f} s {x['adds_s']:>8.2f} s {n / x['adds_s']:>15,.0f}")
PY
