"""Container tasks through azure-batch 15.1.0: `containerSettings` run the
command line with a real container engine (a private dockerd started by the
fixture, through runc) on a real local node, from a test image imported
from Debian's static busybox (no registry is reachable)."""
import datetime
import os
import subprocess

import pytest
from azure.batch import models

from conftest import DOCKER_IMAGE, Server, batch_client, start_pool, wait_for

POOL = "ctrpool"


@pytest.fixture(scope="module")
def engine_server(docker_engine, tmp_path_factory):
    """A server whose local agents reach the private engine (DOCKER_HOST)."""
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker_engine
    s = Server(str(tmp_path_factory.mktemp("ctr")))
    try:
        s.start()
    finally:
        if old is None:
            del os.environ["DOCKER_HOST"]
        else:
            os.environ["DOCKER_HOST"] = old
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(engine_server):
    c = batch_client(engine_server)
    start_pool(c, POOL, task_slots_per_node=4)
    c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id=POOL)))
    return c


def containers(docker_engine):
    """Names of the engine's containers (running or not)."""
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], env=dict(os.environ, DOCKER_HOST=docker_engine),
                         capture_output=True, text=True, check=True).stdout
    return [n for n in out.split() if n.startswith("openbatch-")]


def run(client, tid, command, timeout=30, **settings):
    client.create_task("j", models.BatchTaskCreateOptions(
        id=tid, command_line=command,
        container_settings=models.BatchTaskContainerSettings(image_name=settings.pop("image", DOCKER_IMAGE), **settings)))
    return wait_for(lambda: (t := client.get_task("j", tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=tid)


def stdout(client, tid):
    return b"".join(client.download_task_file("j", tid, "stdout.txt")).decode()


def test_command_runs_in_the_container_with_the_batch_environment(client, docker_engine):
    t = run(client, "env", "sh -c 'echo task=$AZ_BATCH_TASK_ID; pwd; echo $AZ_BATCH_TASK_WORKING_DIR; "
                           "ls /bin/busybox; echo made > out.txt; echo oops >&2; exit 7'")
    info = t.execution_info
    assert info.exit_code == 7
    assert info.failure_info.code == "FailureExitCode"
    assert info.container_info is not None and len(info.container_info.container_id) >= 12
    lines = stdout(client, "env").splitlines()
    assert lines[0] == "task=env"
    assert lines[1] == lines[2] and lines[1].endswith("/wd"), "starts in the task working directory"
    assert lines[3] == "/bin/busybox", "the image's filesystem"
    assert b"".join(client.download_task_file("j", "env", "stderr.txt")) == b"oops\n"
    # The task directory is mounted: what the command wrote is a task file.
    assert b"".join(client.download_task_file("j", "env", "wd/out.txt")) == b"made\n"
    assert containers(docker_engine) == [], "the container is removed"


def test_image_working_directory_and_run_options(client):
    t = run(client, "opts", "sh -c 'pwd; echo $FOO'", working_directory="containerImageDefault",
            container_run_options="--env FOO=bar")
    assert t.execution_info.exit_code == 0
    assert stdout(client, "opts").splitlines() == ["/", "bar"]


def test_a_missing_image_fails_the_task(client):
    t = run(client, "noimg", "sh -c 'echo ran'", image="localhost/nonexistent:1")
    info = t.execution_info
    assert info.result == models.BatchTaskExecutionResult.FAILURE
    assert info.exit_code is None
    assert info.failure_info.code == "ContainerInvalidImage"


def test_a_registry_that_refuses_the_login_fails_the_task(client):
    # Nothing listens on this registry address: the engine's login fails.
    t = run(client, "reg", "echo ran", registry=models.ContainerRegistryReference(
        registry_server="127.0.0.1:9", username="user", password="secret"))
    info = t.execution_info
    assert info.exit_code is None
    assert info.failure_info.code == "ContainerInvalidRegistry"
    assert "secret" not in info.failure_info.message


def test_wall_clock_and_terminate_stop_the_container(client, docker_engine):
    client.create_task("j", models.BatchTaskCreateOptions(
        id="slow", command_line="sleep 60",
        constraints=models.BatchTaskConstraints(max_wall_clock_time=datetime.timedelta(seconds=2)),
        container_settings=models.BatchTaskContainerSettings(image_name=DOCKER_IMAGE)))
    client.create_task("j", models.BatchTaskCreateOptions(
        id="term", command_line="sleep 60", container_settings=models.BatchTaskContainerSettings(image_name=DOCKER_IMAGE)))
    wait_for(lambda: client.get_task("j", "term").state == models.BatchTaskState.RUNNING, timeout=20, what="running")
    client.terminate_task("j", "term")
    slow = wait_for(lambda: (t := client.get_task("j", "slow")).state == models.BatchTaskState.COMPLETED and t,
                    timeout=30, what="slow completed")
    assert slow.execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    assert client.get_task("j", "term").execution_info.failure_info.code == "TaskEnded"
    wait_for(lambda: containers(docker_engine) == [], timeout=20, what=f"containers gone: {containers(docker_engine)}")


def test_pool_container_images_are_fetched_when_a_node_starts(client, engine_server):
    """containerConfiguration.containerImageNames: each node makes sure it
    has the images as it joins (here the image is local; no registry is
    reachable) and says so in its log; container tasks then run there."""
    start_pool(client, "ctrpool2", virtual_machine_configuration=models.VirtualMachineConfiguration(
        image_reference=models.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="22_04-lts"),
        node_agent_sku_id="batch.node.ubuntu 22.04",
        container_configuration=models.BatchContainerConfiguration(
            type="dockerCompatible", container_image_names=[DOCKER_IMAGE],
            container_registries=[models.ContainerRegistryReference(registry_server="127.0.0.1:9", username="u", password="p")])))
    try:
        log = os.path.join(engine_server.data_dir, "server.log")
        wait_for(lambda: "container image ready" in open(log, errors="replace").read(), timeout=20, what="image prefetched")
        # The pool's registry was tried first (nothing listens there).
        assert "cannot log in to the container registry '127.0.0.1:9'" in open(log, errors="replace").read()
        client.create_job(models.BatchJobCreateOptions(id="j2", pool_info=models.BatchPoolInfo(pool_id="ctrpool2")))
        client.create_task("j2", models.BatchTaskCreateOptions(
            id="t", command_line="echo ok", container_settings=models.BatchTaskContainerSettings(image_name=DOCKER_IMAGE)))
        t = wait_for(lambda: (t := client.get_task("j2", "t")).state == models.BatchTaskState.COMPLETED and t, timeout=30, what="t")
        assert t.execution_info.exit_code == 0
    finally:
        client.begin_delete_pool("ctrpool2", polling_interval=0.2).result()
