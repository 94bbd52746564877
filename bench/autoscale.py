"""The autoscale surge figure (bench/autoscale.sh): time from a surge of
pending tasks to the pool's new nodes being ready (joined and usable:
`idle` or `running`), with a formula that targets one node per 10 pending
tasks; baseline: a plain resize to the same node count, in the same run on
the same server. Usage: autoscale.py ENDPOINT ACCOUNT KEY ROUNDS TASKS"""
import json
import statistics
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests/compat")
from rawclient import Raw  # noqa: E402

endpoint, account, key, rounds, tasks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
nodes = tasks // 10
raw = Raw(endpoint, account, key)


def ok(r, *codes):
    assert r.status_code in codes, (r.status_code, r.text)
    return r


def usable(pool):
    items = ok(raw.request("GET", f"/pools/{pool}/nodes"), 200).json()["value"]
    return len([n for n in items if n["state"] in ("idle", "running")])


def wait(pred, timeout=120, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return time.time()
        time.sleep(step)
    raise SystemExit("timed out")


def pool_body(pid, **extra):
    return {"id": pid, "vmSize": "standard_d2s_v3", "taskSlotsPerNode": 10, **extra}


# Baseline: a plain resize from 0 to `nodes`, until they are all idle.
baseline = []
ok(raw.request("POST", "/pools", pool_body("base", targetDedicatedNodes=0)), 201)
for _ in range(rounds):
    t0 = time.time()
    ok(raw.request("POST", "/pools/base/resize", {"targetDedicatedNodes": nodes}), 202)
    baseline.append(wait(lambda: usable("base") == nodes) - t0)
    ok(raw.request("POST", "/pools/base/resize", {"targetDedicatedNodes": 0}), 202)
    wait(lambda: not ok(raw.request("GET", "/pools/base/nodes"), 200).json()["value"])
ok(raw.request("DELETE", "/pools/base"), 202)

# Autoscale: a surge of `tasks` pending tasks of `sleep 5`.
formula = "$TargetDedicatedNodes = min(%d, max($PendingTasks.GetSample(1)) / 10);" % nodes
ok(raw.request("POST", "/pools", pool_body("auto", enableAutoScale=True, autoScaleFormula=formula,
                                           autoScaleEvaluationInterval="PT5S")), 201)
surge, first_start, all_done = [], [], []
for i in range(rounds):
    job = f"surge{i}"
    ok(raw.request("POST", "/jobs", {"id": job, "poolInfo": {"poolId": "auto"}}), 201)
    batch = [{"id": f"t{k}", "commandLine": "sleep 5"} for k in range(tasks)]
    t0 = time.time()
    for k in range(0, tasks, 100):
        ok(raw.request("POST", f"/jobs/{job}/addtaskcollection", {"value": batch[k:k + 100]}), 200)
    surge.append(wait(lambda: usable("auto") == nodes) - t0)

    def counts():
        return ok(raw.request("GET", f"/jobs/{job}/taskcounts"), 200).json()["taskCounts"]
    first_start.append(wait(lambda: counts()["active"] < tasks) - t0)
    all_done.append(wait(lambda: counts()["completed"] == tasks) - t0)
    # Back to no node before the next surge.
    wait(lambda: not ok(raw.request("GET", "/pools/auto/nodes"), 200).json()["value"])
    ok(raw.request("POST", f"/jobs/{job}/terminate"), 202)
run = ok(raw.request("GET", "/pools/auto"), 200).json()["autoScaleRun"]

med = statistics.median
summary = {"rounds": rounds, "tasks": tasks, "nodes": nodes,
           "resize_to_usable_s": baseline, "surge_to_usable_s": surge,
           "surge_to_first_start_s": first_start, "surge_to_all_completed_s": all_done, "last_run": run}
print(json.dumps(summary))
print(f"""
{tasks} tasks of `sleep 5` added at once to an autoscale pool (10 slots per node, formula: one node per
10 pending tasks, evaluated every 5 s, samples every second); {rounds} rounds, median [all]:
  surge -> {nodes} new nodes usable:    {med(surge):6.2f} s  {[round(x, 2) for x in surge]}
  surge -> first task started:      {med(first_start):6.2f} s  {[round(x, 2) for x in first_start]}
  surge -> all tasks completed:     {med(all_done):6.2f} s  {[round(x, 2) for x in all_done]}
baseline, same server: resize 0 -> {nodes} nodes, until all idle:
  resize -> {nodes} nodes usable:       {med(baseline):6.2f} s  {[round(x, 2) for x in baseline]}
""", file=sys.stderr)
