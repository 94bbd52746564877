"""Fault tolerance through azure-batch 15.1.0, with real processes: an
attempt's processes die with it (also those that left its process group),
a killed agent's leftovers die before its node rejoins, a killed server's
nodes and tasks run on and the restarted server adopts them (no task runs
twice), a node stopped with SIGSTOP past the liveness timeout comes back, and
a chaos run of random server and agent kills loses nothing and runs nothing
twice."""
import os
import signal
import sys
import tempfile
import time

import pytest
from azure.batch import BatchClient, models
from azure.batch.models import _models as internal
from azure.core.credentials import AzureNamedKeyCredential

from conftest import BIN, Server, start_pool, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "chaos"))
import chaos  # noqa: E402


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return open(f"/proc/{pid}/stat").read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(path, timeout=15):
    return int(wait_for(lambda: os.path.exists(path) and open(path).read().strip(), timeout=timeout, what=path))


@pytest.fixture
def own_server():
    """A server of its own: these tests kill servers and agents."""
    with tempfile.TemporaryDirectory(prefix="openbatch-ft-") as d:
        os.chmod(d, 0o755)
        s = Server(d)
        s.start()
        yield s
        s.stop()


def client_of(s):
    return BatchClient(endpoint=s.endpoint, credential=AzureNamedKeyCredential(s.account, s.key))


def shared_dir():
    d = tempfile.mkdtemp(prefix="openbatch-ft-share-")
    os.chmod(d, 0o1777)
    return d


def agent_of(data_dir, node_id):
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(cmd) > 1 and cmd[1] == b"agent" and any(c.endswith(node_id.encode()) for c in cmd):
            return int(p)
    return None


def test_an_escaped_background_process_dies_with_its_attempt(own_server):
    c = client_of(own_server)
    start_pool(c, "p1", nodes=1)
    c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="p1")))
    share = shared_dir()
    # The daemon leaves the attempt's process group (setsid) and outlives
    # the command: it must die with the attempt all the same.
    c.create_task("j", models.BatchTaskCreateOptions(
        id="daemon", command_line=f"/bin/sh -c 'setsid sh -c \"echo \\$\\$ > {share}/pid; exec sleep 300\" & sleep 0.5'"))
    t = wait_for(lambda: (t := c.get_task("j", "daemon")).state == models.BatchTaskState.COMPLETED and t, what="completed")
    assert t.execution_info.exit_code == 0
    pid = read_pid(f"{share}/pid")
    wait_for(lambda: not alive(pid), timeout=5, what="the escaped daemon killed with its attempt")
    # Terminating a running task kills its escaped processes too.
    c.create_task("j", models.BatchTaskCreateOptions(
        id="running", command_line=f"/bin/sh -c 'setsid sh -c \"echo \\$\\$ > {share}/pid2; exec sleep 300\" & sleep 300'"))
    pid2 = read_pid(f"{share}/pid2")
    assert alive(pid2)
    c.terminate_task("j", "running")
    wait_for(lambda: not alive(pid2), timeout=10, what="the escaped process killed with the terminated task")


def test_a_killed_agents_leftovers_die_before_its_node_rejoins(own_server):
    c = client_of(own_server)
    start_pool(c, "p2", nodes=1)
    c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="p2")))
    share = shared_dir()
    c.create_task("j", models.BatchTaskCreateOptions(
        id="victim", command_line=f"/bin/sh -c 'setsid sh -c \"echo \\$\\$ > {share}/pid; exec sleep 300\" & echo $$ > {share}/main; sleep 300'"))
    t = wait_for(lambda: (t := c.get_task("j", "victim")).state == models.BatchTaskState.RUNNING and t, what="running")
    escaped, main = read_pid(f"{share}/pid"), read_pid(f"{share}/main")
    agent = agent_of(own_server.data_dir, t.node_info.node_id)
    assert agent and alive(escaped) and alive(main)
    os.kill(agent, signal.SIGKILL)
    # The task's own process dies with its agent at once; the escaped one
    # when the next agent on the node root starts, before the node rejoins.
    wait_for(lambda: not alive(main), timeout=5, what="the task process killed with its agent")
    wait_for(lambda: not alive(escaped), timeout=20, what="the leftover killed by the next agent")
    t = wait_for(lambda: (t := c.get_task("j", "victim")).execution_info.requeue_count == 1
                 and t.state == models.BatchTaskState.RUNNING and t, timeout=30, what="requeued")
    assert t.execution_info.retry_count == 0
    c.terminate_task("j", "victim")


def test_a_killed_server_adopts_its_nodes_and_tasks_run_once(own_server):
    c = client_of(own_server)
    start_pool(c, "p3", nodes=2, task_slots_per_node=2)
    nodes = sorted(n.id for n in c.list_nodes("p3"))
    c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="p3")))
    share = shared_dir()
    cmd = f"/bin/sh -c 'echo run >> {share}/$AZ_BATCH_TASK_ID; sleep 3'"
    c.create_task("j", models.BatchTaskCreateOptions(id="long", command_line=cmd))
    wait_for(lambda: c.get_task("j", "long").state == models.BatchTaskState.RUNNING, what="running")
    # Short tasks finish while the server is down: their outcomes wait in
    # the agents' journals.
    short = [models.BatchTaskCreateOptions(id=f"s{i}", command_line=f"/bin/sh -c 'echo run >> {share}/$AZ_BATCH_TASK_ID; sleep 1'")
             for i in range(3)]
    c.create_task_collection("j", models.BatchTaskGroup(task_values=short))
    wait_for(lambda: all(c.get_task("j", f"s{i}").state == models.BatchTaskState.RUNNING for i in range(3)), what="short tasks running")
    own_server.restart(kill=True)
    c = client_of(own_server)
    for tid in ["long", "s0", "s1", "s2"]:
        t = wait_for(lambda: (t := c.get_task("j", tid)).state == models.BatchTaskState.COMPLETED and t, timeout=30, what=f"{tid} completed")
        assert t.execution_info.exit_code == 0
        assert t.execution_info.requeue_count == 0, f"{tid} was requeued"
        assert open(f"{share}/{tid}").read() == "run\n", f"{tid} ran more than once"
    assert sorted(n.id for n in c.list_nodes("p3")) == nodes, "the same nodes came back"
    assert all(n.state == models.BatchNodeState.IDLE for n in c.list_nodes("p3"))
    # Exactly one agent per node root.
    for n in nodes:
        procs = [p for p in os.listdir("/proc") if p.isdigit() and agent_of_pid(p, n)]
        assert len(procs) == 1, procs


def agent_of_pid(p, node_id):
    try:
        cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return False
    return len(cmd) > 1 and cmd[1] == b"agent" and any(c.endswith(node_id.encode()) for c in cmd)


def test_a_node_stopped_past_the_liveness_timeout_comes_back(own_server):
    c = client_of(own_server)
    start_pool(c, "p4", nodes=1)
    node = list(c.list_nodes("p4"))[0].id
    c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="p4")))
    c.create_task("j", models.BatchTaskCreateOptions(id="before", command_line="sleep 300"))
    wait_for(lambda: c.get_task("j", "before").state == models.BatchTaskState.RUNNING, what="running")
    agent = agent_of(own_server.data_dir, node)
    os.kill(agent, signal.SIGSTOP)
    try:
        wait_for(lambda: c.get_node("p4", node).state == models.BatchNodeState.UNKNOWN, timeout=30, what="node unknown")
    finally:
        os.kill(agent, signal.SIGCONT)
    wait_for(lambda: c.get_node("p4", node).state in (models.BatchNodeState.IDLE, models.BatchNodeState.RUNNING),
             timeout=20, what="the node back")
    # Its stale attempt was killed and the task requeued; new tasks run.
    t = wait_for(lambda: (t := c.get_task("j", "before")).execution_info.requeue_count >= 1 and t, timeout=20, what="requeued")
    assert t.execution_info.retry_count == 0
    c.terminate_task("j", "before")
    c.create_task("j", models.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
    t = wait_for(lambda: (t := c.get_task("j", "after")).state == models.BatchTaskState.COMPLETED and t, timeout=20, what="after done")
    assert t.execution_info.exit_code == 0 and t.node_info.node_id == node


def test_chaos_nothing_lost_nothing_twice():
    r = chaos.run(os.path.abspath(BIN), server_kills=3, agent_kills=2, tasks=250, seed=12)
    assert r["server_kills"] == 3 and r["tasks_acknowledged"] > 0
    assert r["lost"] == 0, r
    assert r["ran_twice"] == 0, r
    assert r["tasks_that_ran"] >= r["tasks_acknowledged"]
