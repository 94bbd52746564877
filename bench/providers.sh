#!/usr/bin/env bash
# Node provider figures (issue 17): the time from a resize to N idle nodes
# (N = 4) on the Docker provider against the local provider in the same run
# on the same server, and against the engine alone starting the same four
# containers (the node image, `docker run -d`, host network) without
# openbatch; the time from creating a pool of N Slurm nodes to N idle nodes
# against Slurm alone running N equivalent jobs (sbatch, same partition);
# then trivial-task throughput on one node of each provider.
# Needs root, dockerd and busybox-static, slurm-wlm and munge (scripts/test
# installs them) and tests/compat/.venv15 (run tests/compat/run.sh once).
# The Slurm cluster is a private one-machine cluster, started as the test
# fixture starts it (tests/compat/slurmcluster.py). `--quick`: one round.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
[ "${1:-}" = "--quick" ] && rounds=1
cargo build --release -q -p openbatch
target="${CARGO_TARGET_DIR:-target}"
bin="${OPENBATCH_BIN:-$target/release/openbatch}"
py=tests/compat/.venv15/bin/python
out=bench-out
mkdir -p "$out"
work=$(mktemp -d /tmp/openbatch-bench-prov-XXXXXX)
sock="$work/docker.sock"
dockerd --iptables=false --bridge=none --data-root "$work/docker" --exec-root "$work/exec" \
  --pidfile "$work/docker.pid" -H "unix://$sock" > "$out/prov-dockerd.log" 2>&1 &
dpid=$!
cleanup() {
  kill "${spid:-}" 2>/dev/null || true
  sleep 2
  [ -f "$work/slurm/slurm.conf" ] && { "$py" tests/compat/slurmcluster.py stop "$work/slurm" || true; }
  kill "$dpid" 2>/dev/null || true
  wait "$dpid" 2>/dev/null || true
  umount "$work/exec/netns/default" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export DOCKER_HOST="unix://$sock"
for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | base64 -w0)
printf '[providers.docker]\nkind = "docker"\nhost = "unix://%s"\ncpus = 1\nmemory-mb = 512\n' "$sock" > "$work/openbatch.toml"
# Slurm: one node of 2 CPUs whose cores take up to 8 jobs each, so the
# 4 one-CPU node jobs (and the baseline's 4 jobs) all run at once.
mkdir "$work/slurm"
SLURM_CONF=$("$py" tests/compat/slurmcluster.py start "$work/slurm")
export SLURM_CONF
printf '\n[providers.hpc]\nkind = "slurm"\npartition = "obtest"\ncpus = 1\ntime-limit = "30"\nroot-dir = "%s"\n' \
  "$work/slurm-roots" >> "$work/openbatch.toml"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --account benchacct --key "$key" \
  --config "$work/openbatch.toml" > "$out/prov-server.out" 2> "$out/prov-server.err" &
spid=$!
for _ in $(seq 100); do grep -q "http://" "$out/prov-server.out" 2>/dev/null && break; sleep 0.1; done
"$py" bench/providers.py "http://127.0.0.1:$port" benchacct "$key" "$rounds" 4 | tee "$out/providers-summary.json"
