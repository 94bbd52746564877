"""The Docker node provider through azure-batch 15.1.0: a server whose
configuration declares `[providers.docker] kind = "docker"` gives pools of
`vmSize` "docker" nodes that are containers (on the private dockerd the
session fixture starts, host networking), each running `openbatch agent`
from an image the server builds from its own binary. Real engine, real
containers, the official SDK as the client."""
import json
import os
import subprocess

import pytest
from azure.batch import models
from azure.batch.models import _models as internal
from azure.core.exceptions import HttpResponseError

from conftest import DOCKER_IMAGE, Server, batch_client, wait_for

POOL = "dockerpool"
# A node image whose agent starts 6 s late (made from the built one by
# test_a_node_is_listed_before_its_agent_joins).
SLOW_IMAGE = "openbatch-slow:test"


def docker(engine, *args):
    return subprocess.run(["docker", *args], env=dict(os.environ, DOCKER_HOST=engine), capture_output=True, text=True)


def node_containers(engine, provider="docker"):
    """Names of the provider's containers (running or not)."""
    out = docker(engine, "ps", "-a", "--filter", f"label=openbatch.provider={provider}", "--format", "{{.Names}}")
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


def node_volumes(engine):
    out = docker(engine, "volume", "ls", "--format", "{{.Name}}")
    return sorted(v for v in out.stdout.split() if v.startswith("tvmps_"))


@pytest.fixture(scope="module")
def docker_server(docker_engine, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("dockerprov"))
    config = os.path.join(d, "openbatch.toml")
    with open(config, "w") as f:
        f.write(f'[providers.docker]\nkind = "docker"\nhost = "{docker_engine}"\ncpus = 1\nmemory-mb = 512\nmax-nodes = 4\n\n'
                f'[providers.broken]\nkind = "docker"\nhost = "unix://{d}/no-engine.sock"\n\n'
                f'[providers.slow]\nkind = "docker"\nhost = "{docker_engine}"\nimage = "{SLOW_IMAGE}"\n')
    s = Server(d, extra_args=["--config", config])
    s.start()
    yield s
    s.stop()
    assert node_containers(docker_engine) == [], "the server's nodes stop with it"
    docker(docker_engine, "rmi", SLOW_IMAGE)


@pytest.fixture(scope="module")
def client(docker_server):
    return batch_client(docker_server)


def idle_nodes(client, pool):
    return [n for n in client.list_nodes(pool) if n.state == models.BatchNodeState.IDLE]


def wait_nodes(client, pool, n, timeout=90):
    wait_for(lambda: len(idle_nodes(client, pool)) == n and len(list(client.list_nodes(pool))) == n,
             timeout=timeout, interval=0.2, what=f"{n} idle docker nodes in {pool}")


def run_task(client, job, tid, command, timeout=30):
    client.create_task(job, models.BatchTaskCreateOptions(id=tid, command_line=command))
    return wait_for(lambda: (t := client.get_task(job, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, interval=0.1, what=tid)


def test_supported_images_list_the_providers(client):
    skus = {i.image_reference.sku: i for i in client.list_supported_images()}
    assert "docker" in skus and "broken" in skus
    caps = skus["docker"].capabilities
    assert "openbatch.kind=docker" in caps and "openbatch.vmSize=docker" in caps, caps


def test_a_docker_pool_lifecycle(client, docker_engine):
    # Create: each node is a container with the provider's limits.
    client.create_pool(models.BatchPoolCreateOptions(id=POOL, vm_size="Docker", target_dedicated_nodes=2, task_slots_per_node=2))
    wait_nodes(client, POOL, 2)
    nodes = sorted(n.id for n in client.list_nodes(POOL))
    assert node_containers(docker_engine) == nodes
    inspect = json.loads(docker(docker_engine, "inspect", nodes[0]).stdout)[0]
    assert inspect["HostConfig"]["NanoCpus"] == 1_000_000_000
    assert inspect["HostConfig"]["Memory"] == 512 * 1024 * 1024
    assert any(m["Destination"] == "/node" and m["Type"] == "volume" for m in inspect["Mounts"]), inspect["Mounts"]

    # Tasks run inside the containers.
    client.create_job(models.BatchJobCreateOptions(id="dj", pool_info=models.BatchPoolInfo(pool_id=POOL)))
    t = run_task(client, "dj", "where", "/bin/sh -c 'hostname; echo $AZ_BATCH_NODE_ROOT_DIR; id -un'")
    assert t.execution_info.exit_code == 0, t.execution_info
    out = b"".join(client.download_task_file("dj", "where", "stdout.txt")).decode().split()
    assert out == [t.node_info.node_id, "/node", "_azbatch"], out

    # Resize up, then down: containers follow.
    client.begin_resize_pool(POOL, models.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=1).result()
    wait_nodes(client, POOL, 3)
    assert len(node_containers(docker_engine)) == 3
    client.begin_resize_pool(POOL, models.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=1).result()
    wait_nodes(client, POOL, 2)
    wait_for(lambda: len(node_containers(docker_engine)) == 2, timeout=20, what="a container removed on resize down")

    # Removing a node removes its container and volume; the pool gets a new one.
    gone = sorted(n.id for n in client.list_nodes(POOL))[0]
    client.begin_remove_nodes(POOL, models.BatchNodeRemoveOptions(node_ids=[gone]), polling_interval=1).result()
    wait_for(lambda: gone not in node_containers(docker_engine) and gone + "-root" not in node_volumes(docker_engine),
             timeout=20, what="the removed node's container and volume gone")
    client.begin_resize_pool(POOL, models.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=1).result()
    wait_nodes(client, POOL, 2)

    # A container killed outside openbatch: its node is unusable and its
    # task runs again elsewhere.
    client.create_task("dj", models.BatchTaskCreateOptions(id="long", command_line="/bin/sh -c 'sleep 3; echo done'"))
    running = wait_for(lambda: (t := client.get_task("dj", "long")).state == models.BatchTaskState.RUNNING and t,
                       timeout=20, interval=0.05, what="the long task running")
    victim = running.node_info.node_id
    assert docker(docker_engine, "kill", victim).returncode == 0
    wait_for(lambda: client.get_node(POOL, victim).state == models.BatchNodeState.UNUSABLE, timeout=20, interval=0.2,
             what="the killed node unusable")
    done = wait_for(lambda: (t := client.get_task("dj", "long")).state == models.BatchTaskState.COMPLETED and t,
                    timeout=30, interval=0.2, what="the task requeued and done")
    assert done.execution_info.exit_code == 0
    assert done.node_info.node_id != victim
    assert victim not in node_containers(docker_engine), "the dead container is removed"

    # Deleting the pool leaves no container or volume behind.
    client.begin_delete_pool(POOL, polling_interval=0.5).result()
    wait_for(lambda: node_containers(docker_engine) == [] and node_volumes(docker_engine) == [], timeout=30,
             what="no container or volume left")


def task_containers(engine, node=None):
    """The engine's container tasks (of a node), running or not."""
    label = f"openbatch.node={node}" if node else "openbatch.task-of=docker"
    return docker(engine, "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").stdout.split()


def test_container_tasks_on_docker_nodes_run_beside_the_node(client, docker_engine):
    """A node is a container with no engine inside; its container tasks run
    through the provider's engine (the server's engine gateway), as siblings
    of the node's container, under rules a task cannot widen."""
    pool = "dctr"
    client.create_pool(models.BatchPoolCreateOptions(id=pool, vm_size="docker", target_dedicated_nodes=1, task_slots_per_node=2))
    wait_nodes(client, pool, 1)
    node = next(iter(client.list_nodes(pool))).id
    client.create_job(models.BatchJobCreateOptions(id="dcj", pool_info=models.BatchPoolInfo(pool_id=pool)))

    def add(tid, command, **settings):
        client.create_task("dcj", models.BatchTaskCreateOptions(id=tid, command_line=command,
            container_settings=models.BatchTaskContainerSettings(image_name=settings.pop("image", DOCKER_IMAGE), **settings)))

    def done(tid, timeout=40):
        return wait_for(lambda: (t := client.get_task("dcj", tid)).state == models.BatchTaskState.COMPLETED and t,
                        timeout=timeout, interval=0.2, what=tid)

    def file(tid, name):
        return b"".join(client.download_task_file("dcj", tid, name)).decode()

    try:
        # The task's image (not the node's: it has no openbatch), the Batch
        # environment, the node root at the same path, output and exit code.
        add("c1", "sh -c 'echo task=$AZ_BATCH_TASK_ID; pwd; echo $AZ_BATCH_TASK_WORKING_DIR; "
                  "test -e /usr/local/bin/openbatch && echo node-image || echo task-image; "
                  "echo made > out.txt; echo oops >&2; exit 7'")
        t = done("c1")
        info = t.execution_info
        assert info.exit_code == 7 and info.failure_info.code == "FailureExitCode", info
        assert info.container_info is not None and len(info.container_info.container_id) >= 12
        lines = file("c1", "stdout.txt").splitlines()
        assert lines[0] == "task=c1"
        assert lines[1] == lines[2] and lines[1].startswith("/node/") and lines[1].endswith("/wd"), lines
        assert lines[3] == "task-image", lines
        assert file("c1", "stderr.txt") == "oops\n"
        assert file("c1", "wd/out.txt") == "made\n", "the node's volume is mounted"
        wait_for(lambda: task_containers(docker_engine) == [], timeout=10, what="the finished task's container removed")

        # While one runs: a sibling of the node's container, labelled with
        # its node, no more CPU or memory than the node, not privileged,
        # nothing mounted but the node's volume. Terminate removes it.
        add("c2", "sleep 60")
        wait_for(lambda: task_containers(docker_engine, node), timeout=30, interval=0.2, what="c2's container")
        (name,) = task_containers(docker_engine, node)
        inspect = json.loads(docker(docker_engine, "inspect", name).stdout)[0]
        host = inspect["HostConfig"]
        assert host["Privileged"] is False
        assert "no-new-privileges" in (host.get("SecurityOpt") or [])
        assert host["NanoCpus"] == 1_000_000_000 and host["Memory"] == 512 * 1024 * 1024
        assert [(m["Type"], m.get("Name"), m["Destination"]) for m in inspect["Mounts"]] == [("volume", f"{node}-root", "/node")]
        client.terminate_task("dcj", "c2")
        assert done("c2").execution_info.failure_info.code == "TaskEnded"
        wait_for(lambda: task_containers(docker_engine) == [], timeout=15, what="the terminated task's container removed")

        # Chosen directories only: the task's own and the shared one, read-only.
        add("c3", "sh -c 'ls /node; echo x > $AZ_BATCH_NODE_SHARED_DIR/f 2>/dev/null && echo wrote || echo read-only'",
            container_host_batch_bind_mounts=[models.ContainerHostBatchBindMountEntry(source="Shared", is_read_only=True)])
        t = done("c3")
        assert t.execution_info.exit_code == 0, t.execution_info
        assert file("c3", "stdout.txt").split() == ["shared", "workitems", "read-only"]

        # What would widen the container fails the task, saying why.
        add("c4", "echo ran", container_run_options="--privileged")
        t = done("c4")
        assert t.execution_info.exit_code is None
        assert t.execution_info.failure_info.code == "ContainerInvalidSettings", t.execution_info.failure_info
        assert "--privileged is not allowed" in file("c4", "stderr.txt")
        add("c5", "echo ran", container_run_options="-v /:/host")
        assert done("c5").execution_info.failure_info.code == "ContainerInvalidSettings"

        # Allowed options apply; an image the engine lacks is a clear failure.
        add("c6", "sh -c 'echo $FOO; pwd'", container_run_options="--env FOO=bar -w /tmp --network none")
        t = done("c6")
        assert t.execution_info.exit_code == 0 and file("c6", "stdout.txt").split() == ["bar", "/tmp"]
        add("c7", "echo ran", image="localhost/nonexistent:1")
        t = done("c7")
        assert t.execution_info.exit_code is None
        assert t.execution_info.failure_info.code == "ContainerInvalidImage", t.execution_info.failure_info
    finally:
        client.begin_delete_pool(pool, polling_interval=0.5).result()
        wait_for(lambda: node_containers(docker_engine) == [] and task_containers(docker_engine) == [], timeout=30,
                 what="no node or task container left")


def test_an_unreachable_engine_shows_in_resize_errors(client):
    client.create_pool(models.BatchPoolCreateOptions(id="brokenpool", vm_size="broken", target_dedicated_nodes=1))
    pool = wait_for(lambda: (p := client.get_pool("brokenpool")).resize_errors and p, timeout=20, interval=0.2,
                    what="a resize error")
    err = pool.resize_errors[0]
    assert err.code == "AllocationFailed"
    assert "'broken'" in err.message and "no-engine.sock" in err.message, err.message
    assert pool.allocation_state == models.AllocationState.RESIZING
    client.begin_delete_pool("brokenpool", polling_interval=0.5).result()


def container(engine, name):
    return json.loads(docker(engine, "inspect", name).stdout)[0]


def node_image(client, engine):
    """The node image the server built from its binary (built now, by a
    one-node pool, when no test made one yet)."""
    def built():
        return docker(engine, "images", "openbatch-node", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    if not built():
        client.create_pool(models.BatchPoolCreateOptions(id="imagepool", vm_size="docker", target_dedicated_nodes=1))
        wait_nodes(client, "imagepool", 1)
        client.begin_delete_pool("imagepool", polling_interval=0.5).result()
    return built()[0]


def test_reboot_restarts_and_reimage_recreates_a_docker_node(client, docker_engine):
    pool = "rebootpool"
    client.create_pool(models.BatchPoolCreateOptions(id=pool, vm_size="docker", target_dedicated_nodes=1))
    wait_nodes(client, pool, 1)
    node = next(iter(client.list_nodes(pool)))
    client.create_job(models.BatchJobCreateOptions(id="rj", pool_info=models.BatchPoolInfo(pool_id=pool)))
    t = run_task(client, "rj", "before", "/bin/sh -c 'echo kept > $AZ_BATCH_NODE_SHARED_DIR/marker'")
    assert t.execution_info.exit_code == 0
    first = container(docker_engine, node.id)

    # Reboot with a task running (requeue): the container restarts — the
    # same container, the node root volume kept — and the task runs again.
    client.create_task("rj", models.BatchTaskCreateOptions(id="long", command_line="/bin/sh -c 'sleep 4; echo done'"))
    wait_for(lambda: client.get_task("rj", "long").state == models.BatchTaskState.RUNNING, timeout=20, interval=0.05,
             what="the task running")
    poller = client.begin_reboot_node(pool, node.id, options=internal.BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                      polling_interval=0.2)
    assert client.get_node(pool, node.id).state == models.BatchNodeState.REBOOTING
    poller.result()
    rebooted = wait_for(lambda: (n := client.get_node(pool, node.id)).state == models.BatchNodeState.IDLE and n
                        or n.state == models.BatchNodeState.RUNNING and n, timeout=30, interval=0.2, what="the node back")
    assert rebooted.last_boot_time > node.last_boot_time
    after = container(docker_engine, node.id)
    assert after["Id"] == first["Id"] and after["State"]["StartedAt"] != first["State"]["StartedAt"], "restarted, not recreated"
    done = wait_for(lambda: (t := client.get_task("rj", "long")).state == models.BatchTaskState.COMPLETED and t,
                    timeout=30, interval=0.2, what="the requeued task done")
    assert done.execution_info.exit_code == 0 and done.node_info.node_id == node.id
    t = run_task(client, "rj", "kept", "/bin/sh -c 'cat $AZ_BATCH_NODE_SHARED_DIR/marker'")
    assert t.execution_info.exit_code == 0
    assert b"".join(client.download_task_file("rj", "kept", "stdout.txt")).decode().strip() == "kept"

    # Reimage with a task running (terminate): the container is made anew
    # with an empty node root, under the same node id.
    client.create_task("rj", models.BatchTaskCreateOptions(id="cut", command_line="/bin/sh -c 'sleep 60'"))
    wait_for(lambda: client.get_task("rj", "cut").state == models.BatchTaskState.RUNNING, timeout=20, interval=0.05,
             what="the task running")
    poller = client.begin_reimage_node(pool, node.id,
                                       options=internal.BatchNodeReimageOptions(node_reimage_option="terminate"),
                                       polling_interval=0.2)
    assert client.get_node(pool, node.id).state == models.BatchNodeState.REIMAGING
    poller.result()
    wait_for(lambda: client.get_node(pool, node.id).state == models.BatchNodeState.IDLE, timeout=30, interval=0.2,
             what="the node idle after its reimage")
    cut = client.get_task("rj", "cut")
    assert cut.state == models.BatchTaskState.COMPLETED and cut.execution_info.failure_info is not None, "terminated"
    assert container(docker_engine, node.id)["Id"] != first["Id"], "a new container"
    assert [n.id for n in client.list_nodes(pool)] == [node.id]
    t = run_task(client, "rj", "wiped", "/bin/sh -c 'test ! -e $AZ_BATCH_NODE_SHARED_DIR/marker'")
    assert t.execution_info.exit_code == 0, "the node root was reset"
    client.begin_delete_pool(pool, polling_interval=0.5).result()
    wait_for(lambda: node_containers(docker_engine) == [], timeout=30, what="no container left")


def test_a_node_is_listed_before_its_agent_joins(client, docker_engine):
    # A node image whose agent waits 6 s: its nodes show `starting` (after
    # `creating` while the container is made) until the agent joins.
    base = node_image(client, docker_engine)
    assert docker(docker_engine, "create", "--name", "obslowbase", base, "/bin/true").returncode == 0
    try:
        r = docker(docker_engine, "commit", "--change", 'ENTRYPOINT ["/bin/sh", "-c", "sleep 6; exec \\"$0\\" \\"$@\\""]',
                   "obslowbase", SLOW_IMAGE)
        assert r.returncode == 0, r.stderr
    finally:
        docker(docker_engine, "rm", "obslowbase")
    pool = "slowpool"
    client.create_pool(models.BatchPoolCreateOptions(id=pool, vm_size="slow", target_dedicated_nodes=2))
    seen = {}

    def states():
        nodes = list(client.list_nodes(pool))
        for n in nodes:
            if seen.setdefault(n.id, [])[-1:] != [n.state]:
                seen[n.id].append(n.state)
        return nodes

    listed = wait_for(lambda: len(ns := states()) == 2 and all(n.state == models.BatchNodeState.STARTING for n in ns) and ns,
                      timeout=30, interval=0.1, what="two nodes starting")
    ids = sorted(n.id for n in listed)
    assert node_containers(docker_engine, "slow") == ids, "the listed ids are the containers'"
    counts = next(c for c in client.list_pool_node_counts() if c.pool_id == pool)
    assert counts.dedicated.starting == 2 and counts.dedicated.total == 2, counts
    assert client.get_pool(pool).allocation_state == models.AllocationState.RESIZING
    with pytest.raises(HttpResponseError) as e:
        client.begin_reboot_node(pool, ids[0], options=internal.BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                 polling_interval=0.2)
    assert e.value.error.code == "NodeBeingStarted"

    # Removing a node that has not joined removes its container.
    client.begin_remove_nodes(pool, models.BatchNodeRemoveOptions(node_ids=[ids[1]]), polling_interval=1).result()
    wait_for(lambda: node_containers(docker_engine, "slow") == [ids[0]], timeout=20, what="the removed node's container gone")

    # The other joins under the id it was listed with.
    wait_for(lambda: [(n.id, n.state) for n in states()] == [(ids[0], models.BatchNodeState.IDLE)], timeout=30, interval=0.1,
             what="the node idle")
    order = [models.BatchNodeState.CREATING, models.BatchNodeState.STARTING, models.BatchNodeState.IDLE]
    assert seen[ids[0]] in (order, order[1:]), seen
    client.begin_delete_pool(pool, polling_interval=0.5).result()
    wait_for(lambda: node_containers(docker_engine, "slow") == [], timeout=30, what="no container left")
