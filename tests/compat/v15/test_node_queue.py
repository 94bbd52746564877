"""Node queues through azure-batch 15.1.0, on a pool of two real local nodes
with one slot each. When every slot is taken, the server hands each node a
few more attempts, which its agent starts the moment a slot frees. None of
that may show through the API: a waiting task is `active`, a node never runs
more slots than it has, a terminated waiting task never runs, and a waiting
task does not stay behind a long task when another node is free."""
import os
import time

import pytest
from azure.batch import models

from conftest import end_job, start_pool, wait_for

POOL = "queuepool"


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, nodes=2, task_slots_per_node=1)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


def add(client, jid, *tasks):
    result = client.create_task_collection(jid, models.BatchTaskGroup(task_values=list(tasks)))
    assert all(r.status == models.BatchTaskAddStatus.SUCCESS for r in result.result_values), result


def task(tid, command_line):
    return models.BatchTaskCreateOptions(id=tid, command_line=command_line)


def all_completed(client, jid, timeout=30):
    return wait_for(lambda: (ts := list(client.list_tasks(jid))) and all(t.state == models.BatchTaskState.COMPLETED for t in ts) and ts,
                    timeout=timeout, what="every task completed")


def test_waiting_tasks_stay_active_and_slots_are_never_exceeded(client, job):
    add(client, job, task("hold0", "/bin/sleep 1.5"), task("hold1", "/bin/sleep 1.5"))
    wait_for(lambda: all(t.state == models.BatchTaskState.RUNNING for t in client.list_tasks(job)), what="both slots busy")
    add(client, job, *[task(f"w{i}", "/bin/sleep 0.2") for i in range(6)])
    time.sleep(0.3)
    # While both slots are busy, the waiting tasks show as the service shows them.
    for t in client.list_tasks(job):
        if t.id.startswith("w"):
            assert t.state == models.BatchTaskState.ACTIVE, (t.id, t.state)
            assert t.node_info is None and t.execution_info.start_time is None
    counts = client.get_job_task_counts(job).task_counts
    assert (counts.active, counts.running) == (6, 2)
    deadline = time.time() + 30
    while time.time() < deadline:
        nodes = list(client.list_nodes(POOL))
        for n in nodes:
            assert (n.running_tasks_count or 0) <= 1 and (n.running_task_slots_count or 0) <= 1, n
        if client.get_job_task_counts(job).task_counts.completed == 8:
            break
        time.sleep(0.05)
    tasks = all_completed(client, job)
    assert all(t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS for t in tasks)
    # Per node, one task at a time: each starts after the previous one ended.
    by_node = {}
    for t in tasks:
        by_node.setdefault(t.node_info.node_id, []).append((t.execution_info.start_time, t.execution_info.end_time, t.id))
    assert len(by_node) == 2
    for runs in by_node.values():
        runs.sort()
        for (_, end, a), (start, _, b) in zip(runs, runs[1:]):
            assert start >= end, f"{b} started before {a} ended"


def test_a_terminated_waiting_task_never_runs(client, job, tmp_path):
    os.chmod(tmp_path, 0o777)
    marker = tmp_path / "ran"
    add(client, job, task("hold0", "/bin/sleep 30"), task("hold1", "/bin/sleep 30"))
    wait_for(lambda: all(t.state == models.BatchTaskState.RUNNING for t in client.list_tasks(job)), what="both slots busy")
    add(client, job, task("late0", f"/bin/touch {marker}"), task("late1", f"/bin/touch {marker}"))
    time.sleep(0.3)
    client.terminate_task(job, "late0")
    client.terminate_task(job, "late1")
    for tid in ("late0", "late1"):
        t = client.get_task(job, tid)
        assert t.state == models.BatchTaskState.COMPLETED
        assert t.execution_info.failure_info.code == "TaskEnded"
        assert t.execution_info.start_time is None
    # The slots free up; what waited there must not start.
    client.terminate_task(job, "hold0")
    client.terminate_task(job, "hold1")
    wait_for(lambda: all(n.state == models.BatchNodeState.IDLE for n in client.list_nodes(POOL)), what="both nodes idle")
    time.sleep(0.5)
    assert not marker.exists()


def test_a_free_node_takes_over_from_a_busy_one(client, job):
    """Two waiting tasks sit one behind each slot; when the short task ends,
    both run on the node it frees instead of waiting 30 s behind the long one."""
    add(client, job, task("long", "/bin/sleep 30"), task("short", "/bin/sleep 1"))
    wait_for(lambda: all(t.state == models.BatchTaskState.RUNNING for t in client.list_tasks(job)), what="both slots busy")
    add(client, job, task("next0", "/bin/true"), task("next1", "/bin/true"))
    for tid in ("next0", "next1"):
        t = wait_for(lambda: (x := client.get_task(job, tid)).state == models.BatchTaskState.COMPLETED and x,
                     timeout=8, what=f"{tid} completed while the long task runs")
        assert t.execution_info.exit_code == 0
    assert client.get_task(job, "long").state == models.BatchTaskState.RUNNING


def test_a_higher_priority_job_overtakes_waiting_tasks(client, pool, uid):
    """Tasks of a low-priority job already waiting at the nodes give way to a
    higher-priority job's tasks added later."""
    jobs = {name: uid(name) for name in ("blocker", "low", "high")}
    for name, jid in jobs.items():
        priority = {"blocker": 0, "low": -100, "high": 500}[name]
        client.create_job(models.BatchJobCreateOptions(id=jid, priority=priority, pool_info=models.BatchPoolInfo(pool_id=pool)))
    try:
        add(client, jobs["blocker"], task("b0", "/bin/sleep 30"), task("b1", "/bin/sleep 30"))
        wait_for(lambda: all(t.state == models.BatchTaskState.RUNNING for t in client.list_tasks(jobs["blocker"])),
                 what="both slots busy")
        add(client, jobs["low"], task("l0", "/bin/sleep 0.2"), task("l1", "/bin/sleep 0.2"))
        time.sleep(0.3)
        add(client, jobs["high"], task("h0", "/bin/sleep 0.2"), task("h1", "/bin/sleep 0.2"))
        time.sleep(0.3)
        client.terminate_task(jobs["blocker"], "b0")
        client.terminate_task(jobs["blocker"], "b1")
        low, high = all_completed(client, jobs["low"]), all_completed(client, jobs["high"])
        assert max(t.execution_info.start_time for t in high) <= min(t.execution_info.start_time for t in low)
    finally:
        for jid in jobs.values():
            end_job(client, jid)
