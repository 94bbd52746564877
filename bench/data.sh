#!/usr/bin/env bash
# Measures resource-file download and output-file upload throughput through
# openbatch against Azurite, with the Python storage SDK as the baseline in
# the same run, and the node agent's peak memory (bench/data.py).
# Needs the compatibility suites' tools (tests/compat/run.sh installs them:
# the Python virtualenv with the storage SDK, and Azurite from npm).
# BENCH_BIG_MIB=256 bench/data.sh makes the big file smaller for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
py=tests/compat/.venv15/bin/python
if [ ! -x "$py" ] || [ ! -x tests/compat/node/node_modules/.bin/azurite-blob ]; then
  echo "run tests/compat/run.sh (or scripts/test) once first: it installs the SDK venv and Azurite" >&2
  exit 1
fi
cargo build --release -q -p openbatch
OPENBATCH_BIN="$PWD/target/release/openbatch" "$py" bench/data.py
