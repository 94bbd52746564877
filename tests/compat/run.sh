#!/usr/bin/env bash
# Runs the compatibility suites: the official azure-batch SDKs (15.x and
# 14.x, pinned, each in its own virtualenv because both are the same
# distribution) drive the built openbatch binary. Idempotent: virtualenvs are
# reused while their requirements file is unchanged. Azurite (npm) stands in
# for Azure Blob Storage in the data tests.
#
# With OPENBATCH_TEST_DATABASE=postgresql://... (a PostgreSQL server the
# tests may create databases on, e.g. from scripts/pg-server) the suites run
# against the PostgreSQL store instead of SQLite (see below).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export OPENBATCH_BIN="${OPENBATCH_BIN:-$here/../../target/release/openbatch}"
if [ ! -x "$OPENBATCH_BIN" ]; then
  echo "openbatch binary not found at $OPENBATCH_BIN (build it: cargo build --release)" >&2
  exit 1
fi

venv() { # name requirements-file
  local dir="$here/.venv$1" req="$here/$2"
  if [ ! -f "$dir/.stamp" ] || ! cmp -s "$req" "$dir/.stamp"; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$dir/.stamp"
  fi
}
venv 15 requirements-v15.txt
venv 14 requirements-v14.txt

# The old azure-batch releases that send the older api-versions (old/): each
# on its own, without dependencies (the 14.x virtualenv has msrest and the
# rest), selected per run by PYTHONPATH.
old_sdks() {
  local v p pids=()
  for v in $(sed 's/#.*//' "$here/old-sdks.txt"); do
    if [ ! -f "$here/.sdks/$v/.stamp" ]; then
      (rm -rf "$here/.sdks/$v" &&
        "$here/.venv14/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$here/.sdks/$v" "azure-batch==$v" &&
        touch "$here/.sdks/$v/.stamp") &
      pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
old_sdks

# The pinned Node tools (node/package-lock.json): Azurite (the Azure Storage
# emulator) for the resource-file and output-file tests, and puppeteer-core,
# which drives Debian's firefox-esr for the dashboard's Firefox pass (it
# downloads no browser); reinstalled when the lock changes.
node_tools() {
  local dir="$here/node"
  if ! command -v npm >/dev/null; then
    echo "npm not found (install nodejs and npm; scripts/test does)" >&2
    exit 1
  fi
  if [ ! -f "$dir/node_modules/.stamp" ] || ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.stamp"; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$dir/node_modules/.stamp"
  fi
}
node_tools
export AZURITE_BIN="${AZURITE_BIN:-$here/node/node_modules/.bin/azurite-blob}"

cd "$here"
status=0
if [ -n "${OPENBATCH_TEST_DATABASE:-}" ]; then
  # The PostgreSQL pass: every server the fixtures start keeps its state in
  # a fresh database on that server (`--database`). Which suites:
  # OPENBATCH_PG_SUITES (default: the 15.x suite and the raw HTTP tests).
  command -v psql >/dev/null || { echo "psql not found (install postgresql; scripts/test does)" >&2; exit 1; }
  read -r -a suites <<< "${OPENBATCH_PG_SUITES:-v15 common}"
  echo "-- on PostgreSQL: ${suites[*]}"
  "$here/.venv15/bin/python" -m pytest -q -p no:cacheprovider "${suites[@]}" "$@" || status=1
  exit $status
fi
echo "-- azure-batch 15.1.0, raw HTTP and the dashboard (headless Chromium and Firefox)"
"$here/.venv15/bin/python" -m pytest -q -p no:cacheprovider v15 common ui "$@" || status=1
echo "-- azure-batch 14.2.0, and the older releases (old-sdks.txt) with their api-versions"
"$here/.venv14/bin/python" -m pytest -q -p no:cacheprovider v14 old "$@" || status=1
exit $status
