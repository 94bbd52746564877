"""`GET /metrics`: scraped while tasks run on local nodes, parsed with the
Prometheus client's own text parser, and checked against what the Batch API
(through azure-batch 15.1.0) says; access without the account key, with
--metrics-token, on --metrics-listen, and off with --no-metrics."""
import tempfile

import pytest
import requests
from azure.batch import models
from azure.core.exceptions import ResourceNotFoundError
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, batch_client, free_port, wait_for
from rawclient import Raw


def scrape(url, **kw):
    r = requests.get(url, timeout=10, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return parse(r.text)


def parse(text):
    """{(sample name, frozenset(labels)): value}"""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def own():
    with tempfile.TemporaryDirectory(prefix="openbatch-metrics-") as d:
        s = Server(d)
        s.start()
        yield s
        s.stop()


def test_metrics_follow_the_api_while_tasks_run(own):
    client = batch_client(own)
    url = own.endpoint + "/metrics"
    pool, job = "metricspool", "metricsjob"
    client.create_pool(models.BatchPoolCreateOptions(
        id=pool, vm_size="standard_d2s_v3", target_dedicated_nodes=2, task_slots_per_node=2,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04")))
    wait_for(lambda: len([n for n in client.list_nodes(pool) if n.state == models.BatchNodeState.IDLE]) == 2, timeout=30, what="2 idle nodes")
    client.create_job(models.BatchJobCreateOptions(id=job, pool_info=models.BatchPoolInfo(pool_id=pool)))

    before = scrape(url)
    # Unauthenticated: no account key was sent, and the scrape is not an API request.
    assert value(before, "openbatch_tasks", state="completed") == 0
    assert value(before, "openbatch_nodes", pool=pool, state="idle") == 2

    # 4 long tasks hold every slot while we scrape; then quick successes and failures.
    tasks = [models.BatchTaskCreateOptions(id=f"long{i}", command_line="/bin/sleep 3") for i in range(4)]
    tasks += [models.BatchTaskCreateOptions(id=f"ok{i}", command_line="/bin/true") for i in range(6)]
    tasks += [models.BatchTaskCreateOptions(id=f"bad{i}", command_line="/bin/false") for i in range(3)]
    client.create_task_collection(job, models.BatchTaskGroup(task_values=tasks))

    def busy():
        m = scrape(url)
        return value(m, "openbatch_tasks", state="running") + value(m, "openbatch_tasks", state="preparing") >= 1 and m
    during = wait_for(busy, timeout=15, what="a running task in the metrics")
    assert sum(value(during, "openbatch_nodes", pool=pool, state=s) for s in ("idle", "running")) == 2
    assert value(during, "openbatch_tasks", state="active") + value(during, "openbatch_tasks", state="preparing") \
        + value(during, "openbatch_tasks", state="running") + value(during, "openbatch_tasks", state="completed") == len(tasks)

    wait_for(lambda: all(t.state == models.BatchTaskState.COMPLETED for t in client.list_tasks(job)), timeout=40, what="all tasks completed")

    # Requests counted by operation and status code: deltas across two scrapes.
    first = scrape(url)
    for _ in range(3):
        client.get_job(job)
    with pytest.raises(ResourceNotFoundError):
        client.get_job("no-such-job")
    counts = client.get_job_task_counts(job)
    listed = list(client.list_tasks(job))
    nodes = list(client.list_nodes(pool))
    after = scrape(url)

    def requests_of(m, op, code):
        return value(m, "openbatch_http_requests_total", operation=op, code=str(code))
    assert requests_of(after, "GetJob", 200) - requests_of(first, "GetJob", 200) == 3
    assert requests_of(after, "GetJob", 404) - requests_of(first, "GetJob", 404) == 1
    assert requests_of(after, "JobTaskCounts", 200) - requests_of(first, "JobTaskCounts", 200) == 1
    assert value(after, "openbatch_http_request_duration_seconds_count", operation="GetJob") \
        == requests_of(after, "GetJob", 200) + requests_of(after, "GetJob", 404)
    assert requests_of(after, "AddTaskCollection", 200) == 1
    assert requests_of(after, "CreatePool", 201) == 1

    # Tasks: the gauges and the completion counters against the API.
    completed = [t for t in listed if t.state == models.BatchTaskState.COMPLETED]
    assert value(after, "openbatch_tasks", state="completed") == len(completed) == len(tasks)
    assert value(after, "openbatch_tasks", state="active") == 0
    assert value(after, "openbatch_tasks_completed_total", result="success") == counts.task_counts.succeeded == 10
    assert value(after, "openbatch_tasks_completed_total", result="failure") == counts.task_counts.failed == 3

    # Nodes by pool and state, as the API lists them.
    for state in ("idle", "running"):
        assert value(after, "openbatch_nodes", pool=pool, state=state) == len([n for n in nodes if n.state == state])

    # Every task started once: one dispatch latency each, all under the test's span.
    assert value(after, "openbatch_task_dispatch_latency_seconds_count") == len(tasks)
    assert value(after, "openbatch_task_dispatch_latency_seconds_bucket", le="+Inf") == len(tasks)
    assert 0 < value(after, "openbatch_task_dispatch_latency_seconds_sum") < 60 * len(tasks)
    # The store committed (pool, job, tasks, assignments, outcomes).
    assert value(after, "openbatch_store_commit_duration_seconds_count") >= 3


def test_openmetrics_when_asked(own):
    r = requests.get(own.endpoint + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
    assert r.text.endswith("# EOF\n")
    assert "# TYPE openbatch_tasks_completed counter" in r.text


def test_token_listen_and_off():
    with tempfile.TemporaryDirectory(prefix="openbatch-metrics-") as d:
        s = Server(d, ["--metrics-token", "s3cret-scrape"])
        s.start()
        try:
            url = s.endpoint + "/metrics"
            r = requests.get(url, timeout=10)
            assert r.status_code == 401 and "Bearer" in r.headers.get("www-authenticate", "")
            assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
            ok = scrape(url, headers={"Authorization": "Bearer s3cret-scrape"})
            assert ("openbatch_tasks", frozenset({("state", "active")})) in ok
            # The token opens /metrics only, not the API.
            assert requests.get(s.endpoint + "/jobs?api-version=2025-06-01", headers={"Authorization": "Bearer s3cret-scrape"}, timeout=10).status_code in (401, 403)
        finally:
            s.stop()
    with tempfile.TemporaryDirectory(prefix="openbatch-metrics-") as d:
        port = free_port()
        s = Server(d, ["--metrics-listen", f"127.0.0.1:{port}"])
        s.start()
        try:
            m = scrape(f"http://127.0.0.1:{port}/metrics")
            assert ("openbatch_tasks", frozenset({("state", "completed")})) in m
            assert requests.get(f"http://127.0.0.1:{port}/jobs", timeout=10).status_code == 404
            # Moved: the API's port treats /metrics as an API path (signature needed).
            assert requests.get(s.endpoint + "/metrics", timeout=10).status_code in (401, 403)
        finally:
            s.stop()
    with tempfile.TemporaryDirectory(prefix="openbatch-metrics-") as d:
        s = Server(d, ["--no-metrics"])
        s.start()
        try:
            assert requests.get(s.endpoint + "/metrics", timeout=10).status_code in (401, 403)
        finally:
            s.stop()


def machine_memory_in_use():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            info[k] = int(v.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


def test_node_cpu_and_memory_as_the_agents_measure_them(own):
    """Each agent measures its machine with every heartbeat: the pool's
    gauges in /metrics and openbatch's own /openbatch/pools/{p}/nodeload
    (what the dashboard shows) report it; local nodes share this machine."""
    client = batch_client(own)
    raw = Raw(own.endpoint, own.account, own.key)
    pool = "loadpool"
    client.create_pool(models.BatchPoolCreateOptions(
        id=pool, vm_size="standard_d2s_v3", target_dedicated_nodes=2,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04")))
    wait_for(lambda: len([n for n in client.list_nodes(pool) if n.state == models.BatchNodeState.IDLE]) == 2, timeout=30, what="2 idle nodes")

    def measured():
        r = raw.request("GET", f"/openbatch/pools/{pool}/nodeload")
        assert r.status_code == 200, r.text
        loads = r.json()["value"]
        return len(loads) == 2 and all(l["cpuPercent"] is not None and l["memoryBytes"] for l in loads) and loads
    loads = wait_for(measured, timeout=20, what="two measurements from each agent")
    assert sorted(l["id"] for l in loads) == sorted(n.id for n in client.list_nodes(pool))
    in_use = machine_memory_in_use()
    for l in loads:
        assert 0 <= l["cpuPercent"] <= 100, l
        assert in_use / 3 < l["memoryBytes"] < in_use * 3, (l, in_use)

    m = scrape(own.endpoint + "/metrics")
    ratio = value(m, "openbatch_node_cpu_utilization_ratio", pool=pool)
    assert ("openbatch_node_cpu_utilization_ratio", frozenset({("pool", pool)})) in m
    assert 0 <= ratio <= 1
    assert 2 * in_use / 3 < value(m, "openbatch_node_memory_used_bytes", pool=pool) < 2 * in_use * 3

    # Errors as for any pool operation; the path is signed like the others.
    r = raw.request("GET", "/openbatch/pools/nosuchpool/nodeload")
    assert r.status_code == 404 and r.json()["code"] == "PoolNotFound", r.text
    assert raw.request("GET", f"/openbatch/pools/{pool}/nodeload", sign=False).status_code == 401
    assert raw.request("POST", f"/openbatch/pools/{pool}/nodeload", {}).json()["code"] == "UnsupportedHttpVerb"
