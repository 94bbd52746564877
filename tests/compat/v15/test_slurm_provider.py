"""The Slurm node provider through azure-batch 15.1.0: a server whose
configuration declares `[providers.hpc] kind = "slurm"` gives pools of
`vmSize` "hpc" nodes that are Slurm jobs (sbatch) running `openbatch
agent`, on a one-machine Slurm cluster the session fixture starts
(slurmctld, slurmd and munge from Debian's packages)."""
import os
import subprocess

import pytest
from azure.batch import models
from azure.batch.models import _models as internal
from azure.core.exceptions import HttpResponseError

from conftest import BIN, SLURM_PARTITION, Server, batch_client, wait_for

POOL = "slurmpool"


def jobs(env, provider="hpc"):
    """node id → (job id, state) of the provider's jobs Slurm knows."""
    out = subprocess.run(["squeue", "--noheader", "--format=%i|%j|%T"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    found = {}
    for line in out.stdout.split():
        job, name, state = line.split("|", 2)
        if name.startswith(f"obnode-{provider}-"):
            found[name[len(f"obnode-{provider}-"):]] = (job, state)
    return found


def running_jobs(env):
    return sorted(n for n, (_, s) in jobs(env).items() if s == "RUNNING")


@pytest.fixture(scope="module")
def slurm_server(slurm_cluster, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("slurmprov"))
    config = os.path.join(d, "openbatch.toml")
    # The `held` provider submits its jobs held (the test releases them) and
    # its agent starts 5 s after the job does.
    slow = os.path.join(d, "slow-agent")
    with open(slow, "w") as f:
        f.write(f'#!/bin/sh\nsleep 5\nexec "{os.path.abspath(BIN)}" "$@"\n')
    os.chmod(slow, 0o755)
    with open(config, "w") as f:
        f.write(f'[providers.hpc]\nkind = "slurm"\npartition = "{SLURM_PARTITION}"\ntime-limit = "10"\n'
                f'root-dir = "{d}/roots"\n\n'
                f'[providers.refused]\nkind = "slurm"\npartition = "nosuchpartition"\n\n'
                f'[providers.held]\nkind = "slurm"\npartition = "{SLURM_PARTITION}"\ntime-limit = "10"\n'
                f'root-dir = "{d}/roots"\nsbatch-args = ["--hold"]\nagent-program = "{slow}"\n')
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = slurm_cluster["SLURM_CONF"]
    s = Server(d, extra_args=["--config", config])
    try:
        s.start()
    finally:
        if old is None:
            del os.environ["SLURM_CONF"]
        else:
            os.environ["SLURM_CONF"] = old
    yield s
    s.stop()
    wait_for(lambda: jobs(slurm_cluster) == {} and jobs(slurm_cluster, "held") == {}, timeout=20,
             what="the server's jobs cancelled when it stops")


@pytest.fixture(scope="module")
def client(slurm_server):
    return batch_client(slurm_server)


def wait_nodes(client, pool, n, timeout=60):
    idle = lambda: [x for x in client.list_nodes(pool) if x.state == models.BatchNodeState.IDLE]  # noqa: E731
    wait_for(lambda: len(idle()) == n and len(list(client.list_nodes(pool))) == n,
             timeout=timeout, interval=0.2, what=f"{n} idle slurm nodes in {pool}")


def test_a_slurm_pool_lifecycle(client, slurm_cluster, slurm_server):
    client.create_pool(models.BatchPoolCreateOptions(id=POOL, vm_size="hpc", target_dedicated_nodes=2))
    wait_nodes(client, POOL, 2)
    nodes = sorted(n.id for n in client.list_nodes(POOL))
    assert running_jobs(slurm_cluster) == nodes, "each node is a running Slurm job"

    # Tasks run in the jobs.
    client.create_job(models.BatchJobCreateOptions(id="sj", pool_info=models.BatchPoolInfo(pool_id=POOL)))
    client.create_task("sj", models.BatchTaskCreateOptions(id="where", command_line="/bin/sh -c 'echo $AZ_BATCH_NODE_ROOT_DIR'"))
    t = wait_for(lambda: (t := client.get_task("sj", "where")).state == models.BatchTaskState.COMPLETED and t,
                 timeout=30, interval=0.1, what="the task")
    assert t.execution_info.exit_code == 0
    out = b"".join(client.download_task_file("sj", "where", "stdout.txt")).decode().strip()
    assert out == os.path.join(slurm_server.data_dir, "roots", t.node_info.node_id), "the node root the Slurm job's agent was given"

    # A job cancelled outside openbatch: the node is unusable, its task runs
    # again on the other node.
    # (Long enough that it cannot end before `scancel` reaches a loaded machine.)
    client.create_task("sj", models.BatchTaskCreateOptions(id="long", command_line="/bin/sh -c 'sleep 10; echo done'"))
    running = wait_for(lambda: (t := client.get_task("sj", "long")).state == models.BatchTaskState.RUNNING and t,
                       timeout=20, interval=0.05, what="the long task running")
    victim = running.node_info.node_id
    subprocess.run(["scancel", jobs(slurm_cluster)[victim][0]], env=slurm_cluster, check=True)
    wait_for(lambda: client.get_node(POOL, victim).state == models.BatchNodeState.UNUSABLE, timeout=30, interval=0.2,
             what="the cancelled node unusable")
    done = wait_for(lambda: (t := client.get_task("sj", "long")).state == models.BatchTaskState.COMPLETED and t,
                    timeout=45, interval=0.2, what="the task requeued and done")
    assert done.node_info.node_id != victim and done.execution_info.exit_code == 0

    # Resize down: the unusable node goes first; then up again.
    client.begin_resize_pool(POOL, models.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=1).result()
    wait_nodes(client, POOL, 1)
    assert victim not in [n.id for n in client.list_nodes(POOL)]
    client.begin_resize_pool(POOL, models.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=1).result()
    wait_nodes(client, POOL, 2)
    assert running_jobs(slurm_cluster) == sorted(n.id for n in client.list_nodes(POOL))

    # Removing a node cancels its job.
    gone = sorted(n.id for n in client.list_nodes(POOL))[0]
    client.begin_remove_nodes(POOL, models.BatchNodeRemoveOptions(node_ids=[gone]), polling_interval=1).result()
    wait_for(lambda: gone not in jobs(slurm_cluster), timeout=20, what="the removed node's job gone")

    # Deleting the pool leaves no job behind.
    client.begin_delete_pool(POOL, polling_interval=0.5).result()
    wait_for(lambda: jobs(slurm_cluster) == {}, timeout=30, what="no Slurm job left")


def test_a_refused_submission_shows_in_resize_errors(client):
    client.create_pool(models.BatchPoolCreateOptions(id="refusedpool", vm_size="refused", target_dedicated_nodes=1))
    pool = wait_for(lambda: (p := client.get_pool("refusedpool")).resize_errors and p, timeout=20, interval=0.2,
                    what="a resize error")
    err = pool.resize_errors[0]
    assert err.code == "AllocationFailed"
    assert "sbatch" in err.message and "'refused'" in err.message, err.message
    client.begin_delete_pool("refusedpool", polling_interval=0.5).result()


def test_queue_time_shows_as_creating_then_starting(client, slurm_cluster):
    pool = "heldpool"
    client.create_pool(models.BatchPoolCreateOptions(id=pool, vm_size="held", target_dedicated_nodes=2))
    # Held in the queue: listed `creating`, counted, the pool resizing.
    listed = wait_for(lambda: len(ns := list(client.list_nodes(pool))) == 2 and ns, timeout=20, interval=0.1,
                      what="two nodes listed")
    assert {n.state for n in listed} == {models.BatchNodeState.CREATING}, [n.state for n in listed]
    ids = sorted(n.id for n in listed)
    # (Listed from the moment they are asked for: their sbatch may still run.)
    queued = wait_for(lambda: len(q := jobs(slurm_cluster, "held")) == 2 and q, timeout=20, interval=0.1,
                      what="two jobs queued")
    assert sorted(queued) == ids and {s for _, s in queued.values()} == {"PENDING"}, queued
    counts = next(c for c in client.list_pool_node_counts() if c.pool_id == pool)
    assert counts.dedicated.creating == 2 and counts.dedicated.total == 2, counts
    assert client.get_pool(pool).allocation_state == models.AllocationState.RESIZING
    assert client.get_pool(pool).current_dedicated_nodes == 2
    with pytest.raises(HttpResponseError) as e:
        client.begin_reboot_node(pool, ids[0], options=internal.BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                 polling_interval=0.2)
    assert e.value.error.code == "NodeBeingCreated"

    # Released: the job runs (`starting` while its agent waits), then the
    # agent joins under the same id (`idle`).
    subprocess.run(["scontrol", "release", queued[ids[0]][0]], env=slurm_cluster, check=True)
    seen = []

    def state():
        n = client.get_node(pool, ids[0])
        if seen[-1:] != [n.state]:
            seen.append(n.state)
        return n.state

    wait_for(lambda: state() == models.BatchNodeState.IDLE, timeout=40, interval=0.1, what="the released node idle")
    assert seen == [models.BatchNodeState.CREATING, models.BatchNodeState.STARTING, models.BatchNodeState.IDLE], seen

    # Removing the node still queued cancels its job.
    client.begin_remove_nodes(pool, models.BatchNodeRemoveOptions(node_ids=[ids[1]]), polling_interval=1).result()
    wait_for(lambda: ids[1] not in jobs(slurm_cluster, "held"), timeout=20, what="the queued node's job cancelled")
    assert [n.id for n in client.list_nodes(pool)] == [ids[0]]
    wait_for(lambda: client.get_pool(pool).allocation_state == models.AllocationState.STEADY, timeout=20, interval=0.2,
             what="the pool steady")
    client.begin_delete_pool(pool, polling_interval=0.5).result()
    wait_for(lambda: jobs(slurm_cluster, "held") == {}, timeout=30, what="no Slurm job left")
