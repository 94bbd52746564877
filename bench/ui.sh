#!/usr/bin/env bash
# The dashboard's figure (issue 18): time to first render of a job page with
# 100,000 tasks, and the bytes transferred for it. Starts a fresh
# `openbatch serve`, adds 100,000 tasks to one job with `openbatch-bench
# ingest` (4 clients, collections of 100; no nodes, so they stay active),
# then measures the page in headless Chromium with bench/ui.py (Playwright,
# from the compatibility suite's virtualenv; Debian's chromium).
# `--quick` uses 10,000 tasks. Prints JSON and writes bench-out/ui.json.
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=100000
[ "${1:-}" = "--quick" ] && tasks=10000
command -v chromium >/dev/null || { echo "install Debian's chromium (apt-get install chromium)" >&2; exit 1; }

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p openbatch -p bench
target="${CARGO_TARGET_DIR:-target}"
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
bench="$target/release/openbatch-bench"
venv=tests/compat/.venv15
if [ ! -f "$venv/.stamp" ] || ! cmp -s tests/compat/requirements-v15.txt "$venv/.stamp"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/requirements-v15.txt
  cp tests/compat/requirements-v15.txt "$venv/.stamp"
fi
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
"$bench" ingest --endpoint "$endpoint" --account benchacct --key "$key" --job uijob --create-job --tasks "$tasks" --clients 4 --batch 100 > "$out/ui-ingest.json"
"$venv/bin/python" bench/ui.py "$endpoint" benchacct "$key" uijob "${UI_RUNS:-9}" | tee "$out/ui.json"
