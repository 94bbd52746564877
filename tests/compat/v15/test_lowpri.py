"""Low-priority (spot) nodes through azure-batch 15.1.0: a pool with
dedicated and low-priority targets (its nodes' isDedicated, the pool's
current counts, /nodecounts), a preemption with openbatch's own API (a
running task requeued and completing afterwards, the node recovering by
itself), a resize of the low-priority target only, and an autoscale formula
that sets $TargetLowPriorityNodes and reads $CurrentLowPriorityNodes. The
`openbatch node preempt` command is exercised too."""
import datetime
import os
import subprocess
import tempfile

import pytest
from azure.batch import models
from azure.batch.models import _models as internal

from conftest import BIN, Server, batch_client, wait_for
from rawclient import Raw


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="openbatch-lowpri-") as d:
        s = Server(d, ["--autoscale-sample-interval", "1"])
        s.start()
        yield s
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return batch_client(server)


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key)


def nodes_by_kind(client, pid):
    nodes = list(client.list_nodes(pid))
    return [n for n in nodes if n.is_dedicated], [n for n in nodes if not n.is_dedicated]


def counts_of(client, pid):
    return [c for c in client.list_pool_node_counts() if c.pool_id == pid][0]


def idle(client, pid, total):
    return lambda: len([n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE]) == total


def test_dedicated_and_low_priority_targets(client, uid):
    pid = uid("lp")
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="standard_d2s_v3",
                                                     target_dedicated_nodes=1, target_low_priority_nodes=2))
    wait_for(idle(client, pid, 3), timeout=30, what="3 idle nodes")
    dedicated, low = nodes_by_kind(client, pid)
    assert (len(dedicated), len(low)) == (1, 2)
    pool = client.get_pool(pid)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (1, 2)
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (1, 2)
    wait_for(lambda: client.get_pool(pid).allocation_state == models.AllocationState.STEADY, what="steady")
    c = counts_of(client, pid)
    assert (c.dedicated.total, c.dedicated.idle, c.low_priority.total, c.low_priority.idle) == (1, 1, 2, 2)
    assert c.low_priority.preempted == 0

    # Resize of the low-priority target only: one low-priority node goes,
    # the dedicated one stays.
    client.begin_resize_pool(pid, models.BatchPoolResizeOptions(target_low_priority_nodes=1), polling_interval=0.5).result()
    wait_for(lambda: client.get_pool(pid).current_low_priority_nodes == 1, what="one low-priority node left")
    pool = client.get_pool(pid)
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes, pool.current_dedicated_nodes) == (1, 1, 1)
    assert [n.id for n in nodes_by_kind(client, pid)[0]] == [dedicated[0].id]
    # And up again: the new node is low-priority.
    client.begin_resize_pool(pid, models.BatchPoolResizeOptions(target_low_priority_nodes=2), polling_interval=0.5).result()
    wait_for(idle(client, pid, 3), timeout=30, what="3 idle nodes again")
    d, l = nodes_by_kind(client, pid)
    assert (len(d), len(l)) == (1, 2)
    client.begin_delete_pool(pid, polling_interval=0.2)


def test_preemption_requeues_a_running_task_that_completes_afterwards(client, raw, server, uid):
    pid, jid = uid("lp"), uid("job")
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="standard_d2s_v3",
                                                     target_dedicated_nodes=1, target_low_priority_nodes=1))
    wait_for(idle(client, pid, 2), timeout=30, what="2 idle nodes")
    dedicated, low = nodes_by_kind(client, pid)
    spot = low[0].id

    # A dedicated node cannot be preempted.
    r = raw.request("POST", f"/openbatch/pools/{pid}/nodes/{dedicated[0].id}/preempt", {})
    assert r.status_code == 409 and r.json()["code"] == "OperationNotValidOnNode", r.text
    r = raw.request("POST", f"/openbatch/pools/{pid}/nodes/{spot}/preempt", {"recoverAfter": "soon"})
    assert r.status_code == 400 and r.json()["code"] == "InvalidPropertyValue", r.text

    # The dedicated node takes no task, so that the task runs on the low-priority one.
    client.disable_node_scheduling(pid, dedicated[0].id, options=internal.BatchNodeDisableSchedulingOptions(
        node_disable_scheduling_option="requeue"))
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'sleep 3; echo done'"))
    wait_for(lambda: client.get_task(jid, "t").state == models.BatchTaskState.RUNNING, timeout=20, what="the task running")
    assert client.get_task(jid, "t").node_info.node_id == spot

    # Preempted with openbatch's own API: back by itself 3 s later.
    r = raw.request("POST", f"/openbatch/pools/{pid}/nodes/{spot}/preempt", {"recoverAfter": "PT3S"})
    assert r.status_code == 202, r.text
    node = client.get_node(pid, spot)
    assert node.state == models.BatchNodeState.PREEMPTED and node.is_dedicated is False
    t = client.get_task(jid, "t")
    assert t.state == models.BatchTaskState.ACTIVE
    assert (t.execution_info.requeue_count, t.execution_info.retry_count) == (1, 0)
    pool = client.get_pool(pid)
    assert pool.current_low_priority_nodes == 1, "preempted nodes count"
    c = counts_of(client, pid)
    assert (c.low_priority.preempted, c.low_priority.total) == (1, 1)
    r = raw.request("POST", f"/openbatch/pools/{pid}/nodes/{spot}/preempt", {})
    assert r.status_code == 409, "already preempted"

    # It recovers, and the task runs again (there) and completes.
    wait_for(lambda: client.get_node(pid, spot).state in (models.BatchNodeState.IDLE, models.BatchNodeState.RUNNING),
             timeout=20, what="the node back")
    wait_for(lambda: client.get_task(jid, "t").state == models.BatchTaskState.COMPLETED, timeout=30, what="the task completed")
    t = client.get_task(jid, "t")
    assert t.execution_info.exit_code == 0 and t.execution_info.requeue_count == 1 and t.execution_info.retry_count == 0
    assert t.node_info.node_id == spot

    # The command line's preempt, then recover.
    env = dict(os.environ, AZURE_BATCH_ENDPOINT=server.endpoint, AZURE_BATCH_ACCOUNT=server.account,
               AZURE_BATCH_ACCESS_KEY=server.key)
    out = subprocess.run([BIN, "node", "preempt", pid, spot], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "preempted" in out.stdout, out.stderr
    assert client.get_node(pid, spot).state == models.BatchNodeState.PREEMPTED
    out = subprocess.run([BIN, "node", "preempt", pid, dedicated[0].id], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "OperationNotValidOnNode" in out.stderr, out.stderr
    out = subprocess.run([BIN, "node", "recover", pid, spot], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: client.get_node(pid, spot).state == models.BatchNodeState.IDLE, timeout=20, what="recovered")
    client.begin_delete_job(jid, polling_interval=0.2)
    client.begin_delete_pool(pid, polling_interval=0.2)


def test_autoscale_sets_and_reads_low_priority_nodes(client, uid):
    pid = uid("lpas")
    formula = "$TargetDedicatedNodes = 0; $TargetLowPriorityNodes = 2; $seen = $CurrentLowPriorityNodes; $d = $CurrentDedicatedNodes;"
    client.create_pool(models.BatchPoolCreateOptions(
        id=pid, vm_size="standard_d2s_v3", enable_auto_scale=True, auto_scale_formula=formula,
        auto_scale_evaluation_interval=datetime.timedelta(seconds=5)))
    wait_for(idle(client, pid, 2), timeout=30, what="2 low-priority nodes")
    assert nodes_by_kind(client, pid)[0] == []
    pool = client.get_pool(pid)
    assert (pool.target_low_priority_nodes, pool.current_low_priority_nodes, pool.current_dedicated_nodes) == (2, 2, 0)

    def results(run):
        return dict(item.split("=", 1) for item in run.results.split(";"))
    run = client.evaluate_pool_auto_scale(pid, models.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula=formula + " $p = max($PreemptedNodeCount.GetSample(1));"))
    assert run.error is None, run.error
    r = results(run)
    assert (r["$seen"], r["$d"], r["$TargetLowPriorityNodes"]) == ("2", "0", "2"), r
    assert r["$p"] == "0", r
    # The periodic evaluation reads the same.
    wait_for(lambda: results(client.get_pool(pid).auto_scale_run).get("$seen") == "2", timeout=15, what="an evaluation seeing 2")
    client.begin_delete_pool(pid, polling_interval=0.2)
