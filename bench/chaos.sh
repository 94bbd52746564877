#!/usr/bin/env bash
# Fault tolerance figures (issue "Security and fault tolerance"): runs tasks
# on 2 local nodes while the server and the node agents are SIGKILLed at
# random (10 server kills and 10 agent kills by default), then prints what
# was checked: acknowledged tasks lost (target 0), tasks whose process ran
# more than once or two of whose runs overlapped (target 0), runs cut short
# by agent kills (requeued, as Batch does after a node failure), and the
# nodes' states at the end. Every task records each run's start and end in
# a marker file; see tests/chaos/chaos.py.
#   bench/chaos.sh [--server-kills N] [--agent-kills N] [--tasks N] [--seed N]
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
exec "$venv/bin/python" tests/chaos/chaos.py --bin "$bin" "$@"
