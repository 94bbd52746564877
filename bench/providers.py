"""Node provider figures (bench/providers.sh). For each provider (local, the
default size; docker, `vmSize` "docker"): a pool created with no nodes is
resized to N and timed until N nodes are idle, then deleted; the docker
provider's first pool (which builds the node image) is a warm-up reported
apart. Baseline: the engine starting N containers of the same node image
(`docker run -d --network host IMAGE sleep`) without openbatch. Slurm
(`vmSize` "hpc", when SLURM_CONF names the cluster providers.sh started): a
pool created with N nodes, timed until N nodes are idle, against Slurm alone
running N equivalent jobs (the same sbatch options, a script that writes a
marker file and sleeps) timed until every marker exists; the first sbatch
round, on the fresh cluster, is a warm-up reported apart. Then the
throughput of 300 trivial tasks (`/bin/true`) on one node of each provider
with 4 task slots. Usage: providers.py ENDPOINT ACCOUNT KEY ROUNDS N"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests/compat")
from rawclient import Raw  # noqa: E402
from slurmcluster import PARTITION  # noqa: E402

endpoint, account, key, rounds, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
raw = Raw(endpoint, account, key)


def ok(r, *codes):
    assert r.status_code in codes, (r.status_code, r.text)
    return r


def wait(pred, timeout=300, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(step)
    raise SystemExit("timed out")


def idle(pool):
    items = ok(raw.request("GET", f"/pools/{pool}/nodes"), 200).json()["value"]
    return len([x for x in items if x["state"] == "idle"])


def delete(pool):
    ok(raw.request("DELETE", f"/pools/{pool}"), 202)
    wait(lambda: raw.request("GET", f"/pools/{pool}").status_code == 404)


def resize_to_idle(pool, size):
    ok(raw.request("POST", "/pools", {"id": pool, "vmSize": size, "targetDedicatedNodes": 0}), 201)
    t0 = time.time()
    ok(raw.request("POST", f"/pools/{pool}/resize", {"targetDedicatedNodes": n}), 202)
    wait(lambda: idle(pool) == n)
    took = time.time() - t0
    delete(pool)
    return took


def queue(prefix):
    """Job ids in the Slurm queue whose name starts with `prefix`."""
    out = subprocess.run(["squeue", "--noheader", "--format=%i|%j"], capture_output=True, text=True, check=True).stdout
    return [line.split("|", 1)[0] for line in out.split() if line.split("|", 1)[1].startswith(prefix)]


def create_to_idle(pool, size):
    """A pool created with N nodes, timed until they are idle; then deleted
    (for Slurm, until its jobs have left the queue)."""
    t0 = time.time()
    ok(raw.request("POST", "/pools", {"id": pool, "vmSize": size, "targetDedicatedNodes": n}), 201)
    wait(lambda: idle(pool) == n)
    took = time.time() - t0
    delete(pool)
    wait(lambda: not queue(f"obnode-{size}-"))
    return took


def sbatch_baseline():
    """Slurm alone: N jobs with the options the provider gives sbatch
    (crates/providers/src/slurm.rs), submitted in parallel, timed until each
    one's script has started (written its marker file)."""
    d = tempfile.mkdtemp(prefix="openbatch-bench-sbatch-")
    t0 = time.time()
    procs = []
    for i in range(n):
        p = subprocess.Popen(["sbatch", "--parsable", f"--job-name=bench-{i}", f"--partition={PARTITION}", "--nodes=1",
                              "--ntasks=1", "--output=/dev/null", "--export=ALL", "--time=30", "--cpus-per-task=1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.stdin.write(f"#!/bin/sh\ntouch {d}/started-{i}\nexec sleep 120\n")
        p.stdin.close()
        procs.append(p)
    jobs = []
    for p in procs:
        jobs.append(p.stdout.read().strip().split(";")[0])
        assert p.wait() == 0
    wait(lambda: all(os.path.exists(f"{d}/started-{i}") for i in range(n)), step=0.02)
    took = time.time() - t0
    subprocess.run(["scancel", *jobs], check=True)
    wait(lambda: not queue("bench-"))
    shutil.rmtree(d)
    return took


def throughput(pool, size, tasks=300):
    ok(raw.request("POST", "/pools", {"id": pool, "vmSize": size, "targetDedicatedNodes": 1, "taskSlotsPerNode": 4}), 201)
    wait(lambda: idle(pool) == 1)
    job = f"{pool}-job"
    ok(raw.request("POST", "/jobs", {"id": job, "poolInfo": {"poolId": pool}}), 201)
    t0 = time.time()
    for start in range(0, tasks, 100):
        value = [{"id": f"t{i}", "commandLine": "/bin/true"} for i in range(start, min(start + 100, tasks))]
        ok(raw.request("POST", f"/jobs/{job}/addtaskcollection", {"value": value}), 200)
    def done():
        c = ok(raw.request("GET", f"/jobs/{job}/taskcounts"), 200).json()
        return c.get("taskCounts", c)["completed"] == tasks
    wait(done, step=0.1)
    rate = tasks / (time.time() - t0)
    ok(raw.request("DELETE", f"/jobs/{job}"), 202)
    delete(pool)
    return rate


def engine_baseline():
    image = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "openbatch-node"],
                           capture_output=True, text=True, check=True).stdout.split()[0]
    t0 = time.time()
    procs = [subprocess.Popen(["docker", "run", "-d", "--network", "host", "--name", f"bench-{i}", image, "/bin/sleep", "60"],
                              stdout=subprocess.DEVNULL) for i in range(n)]
    for p in procs:
        assert p.wait() == 0
    took = time.time() - t0
    subprocess.run(["docker", "rm", "-f", *[f"bench-{i}" for i in range(n)]], capture_output=True, check=True)
    return took


slurm = bool(os.environ.get("SLURM_CONF"))
warmup = resize_to_idle("warm", "docker")
sbatch_warmup = sbatch_baseline() if slurm else None
times = {"local": [], "docker": [], "engine": []}
slurm_times = {"openbatch": [], "sbatch": []}
for r in range(rounds):
    times["local"].append(resize_to_idle(f"l{r}", "standard_d2s_v3"))
    times["docker"].append(resize_to_idle(f"d{r}", "docker"))
    times["engine"].append(engine_baseline())
    if slurm:
        slurm_times["openbatch"].append(create_to_idle(f"s{r}", "hpc"))
        slurm_times["sbatch"].append(sbatch_baseline())
rates = {"local": throughput("tl", "standard_d2s_v3"), "docker": throughput("td", "docker")}
if slurm:
    rates["slurm"] = throughput("ts", "hpc")
summary = {
    "nodes": n,
    "rounds": rounds,
    "docker_first_pool_with_image_build_s": round(warmup, 2),
    "resize_to_idle_median_s": {k: round(statistics.median(v), 2) for k, v in times.items()},
    "resize_to_idle_all_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
}
if slurm:
    summary["slurm_first_sbatch_round_s"] = round(sbatch_warmup, 2)
    summary["slurm_create_to_idle_median_s"] = {k: round(statistics.median(v), 2) for k, v in slurm_times.items()}
    summary["slurm_create_to_idle_all_s"] = {k: [round(x, 2) for x in v] for k, v in slurm_times.items()}
summary["trivial_tasks_per_s_one_node_4_slots"] = {k: round(v, 1) for k, v in rates.items()}
print(json.dumps(summary, indent=2))
