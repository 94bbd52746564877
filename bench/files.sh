#!/usr/bin/env bash
# Task file download throughput: a task writes a 1 GiB file of random bytes
# (`SIZE_MIB`, default 1024), which is then downloaded through the API with
# a signed GET (openbatch-bench download: node -> agent data connection ->
# server -> client), next to reading the same file locally (dd to
# /dev/null) in the same run; and the peak RSS of the server and the agent
# during the download (their high-water marks are reset just before it).
# The data directory goes under $TMPDIR (default /tmp; /dev/shm keeps the
# disk out of it) and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${SIZE_MIB:-1024}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p openbatch -p bench
bin=$target/release/openbatch
bench=$target/release/openbatch-bench
out=bench-out
mkdir -p "$out"
data=$(mktemp -d "${TMPDIR:-/tmp}/openbatch-files-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --account benchacct --key "$key" > "$out/files-server.out" 2> "$out/files-server.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; sleep 0.5; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out/files-server.out" 2>/dev/null && break; sleep 0.1; done
t=(--endpoint "http://127.0.0.1:$port" --account benchacct --key "$key")
made=$("$bench" file-task "${t[@]}" --mib "$mib")
path=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("path") or sys.exit("file-task: "+str(d)))' "$made")
agent=$(pgrep -f "agent --server http://127.0.0.1:$port --pool filepool" | head -1)
file=$(find "$data" -name big.bin -path "*filejob*" | head -1)
# The local baseline first (the file is in the page cache either way: the
# task just wrote it).
TIMEFORMAT=%R
local_s=$( { time dd if="$file" of=/dev/null bs=1M status=none; } 2>&1 )
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
before_s=$(rss $pid); before_a=$(rss "$agent")
# Reset the peak-RSS marks (Linux: "5" to clear_refs), then download.
echo 5 > "/proc/$pid/clear_refs"; echo 5 > "/proc/$agent/clear_refs"
got=$("$bench" download "${t[@]}" --path "$path")
srss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
arss=$(awk '/VmHWM/{print $2}' "/proc/$agent/status")
python3 - "$out/files-summary.json" <<PY
import json, sys
made, got = json.loads('''$made'''), json.loads('''$got''')
mib, local_s = $mib, float("$local_s")
assert got.get("status") == 200 and got.get("bytes") == mib * 1048576, got
s = {"file_mib": mib, "task_write_s": made["write_s"], "download": got, "local_read_s": local_s,
     "local_read_mib_per_s": mib / local_s if local_s else None,
     "server_rss_kib_before": $before_s, "agent_rss_kib_before": $before_a,
     "server_peak_rss_kib_during": $srss, "agent_peak_rss_kib_during": $arss}
json.dump(s, open(sys.argv[1], "w"), indent=2)
local = f"{mib / local_s:,.0f} MiB/s" if local_s else "too fast to time"
print(f"""
task file download ({mib} MiB of random bytes written by a task on one local node)
  through the API: {got['mib_per_s']:>8,.0f} MiB/s ({got['seconds']:.2f} s, first byte after {got['first_byte_s']*1000:.1f} ms)
  local read (dd): {local:>13} ({local_s:.2f} s, same file, same run)
peak RSS during the download: server {$srss/1024:.1f} MiB (before: {$before_s/1024:.1f}), agent {$arss/1024:.1f} MiB (before: {$before_a/1024:.1f})
""")
PY
