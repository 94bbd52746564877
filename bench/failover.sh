#!/usr/bin/env bash
# Failover figures (issue "PostgreSQL and replicated servers"): three
# `openbatch serve --replica` processes on one PostgreSQL database (a private
# server from scripts/pg-server) run tasks on two remote agents that list all
# three; the leader is SIGKILLed 10 times (and restarted as a standby) and
# SIGSTOPped once past its lease. Prints the failover time per kill — from
# the SIGKILL to the start of a probe task added right after it, i.e. the
# first task the new leader starts — with p50 and max, and what was checked:
# acknowledged tasks lost (target 0), tasks that ran twice or whose runs
# overlapped (target 0), the paused leader's exit status (3: it found its
# lease lost). See tests/chaos/failover.py.
#   bench/failover.sh [--kills N] [--pauses N] [--ttl-ms MS] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p openbatch
venv=tests/compat/.venv15
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r tests/compat/requirements-v15.txt
  cp tests/compat/requirements-v15.txt "$venv/.stamp"
fi
bin="${CARGO_TARGET_DIR:-target}/release/openbatch"
pg=$(mktemp -d -u /tmp/openbatch-failover-pg.XXXXXX)
url=$(PG_INSTALL=1 scripts/pg-server start "$pg")
trap 'scripts/pg-server stop "$pg" >/dev/null 2>&1 || true' EXIT
db="failover_$$"
psql -q "$url" -c "CREATE DATABASE $db"
"$venv/bin/python" tests/chaos/failover.py --bin "$bin" --database "${url%/*}/$db" "$@"
