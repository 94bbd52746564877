#!/usr/bin/env bash
# Hostile and broken clients (issue "security and fault tolerance"): GET
# latency with 2,000 idle + 2,000 slow connections open vs none, and peak
# server memory while 400 unauthenticated clients send 4 MB bodies slowly
# vs the idle server. Only 127.0.0.1. `--quick` divides the crowd by ten.
#
# OPENBATCH_BIN=path uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${OPENBATCH_BIN:-}" ]; then
  cargo build --release -q -p openbatch
  OPENBATCH_BIN="${CARGO_TARGET_DIR:-target}/release/openbatch"
fi
# The client side holds ~4,500 sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 5000 ]; then
  echo "warning: only $(ulimit -n) open files allowed; the crowd will be smaller than asked" >&2
fi
exec python3 bench/hostile.py "$OPENBATCH_BIN" "$@"
