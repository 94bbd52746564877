"""Running tasks on local nodes, the ordinary Azure Batch program, through
azure-batch 15.1.0: pool → nodes → job → tasks → completed → stdout.txt."""
import datetime
import os
import signal

import pytest
from azure.batch import BatchClient, models
from azure.batch.models import _models as internal
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from conftest import wait_for


@pytest.fixture(scope="module")
def pool(client):
    pid = "runpool"
    client.create_pool(models.BatchPoolCreateOptions(
        id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=2, task_slots_per_node=2,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04")))
    wait_for(lambda: len([n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE]) == 2, what="2 idle nodes")
    return pid


def new_job(client, pool, jid, **kw):
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pool), **kw))


def wait_completed(client, jid, tid, timeout=20):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t, timeout=timeout, what=f"{tid} completed")


def read(client, jid, tid, name, **kw):
    return b"".join(client.download_task_file(jid, tid, name, **kw))


def test_pool_and_nodes(client, pool):
    p = client.get_pool(pool)
    assert p.current_dedicated_nodes == 2 and p.allocation_state == models.AllocationState.STEADY
    assert p.vm_size == "standard_d2s_v3" and p.task_slots_per_node == 2
    assert client.pool_exists(pool)
    # The 15.x SDK's error policy turns the 404 into an exception.
    with pytest.raises(ResourceNotFoundError):
        client.pool_exists("no-such-pool")
    nodes = list(client.list_nodes(pool))
    assert all(n.scheduling_state == models.SchedulingState.ENABLED and n.is_dedicated for n in nodes)
    counts = list(client.list_pool_node_counts())
    mine = [c for c in counts if c.pool_id == pool][0]
    assert mine.dedicated.idle + mine.dedicated.running == 2
    images = list(client.list_supported_images())
    assert any(i.os_type == models.OSType.LINUX for i in images)


def test_environment_exit_codes_and_files(client, pool, uid):
    jid = uid("job")
    new_job(client, pool, jid, common_environment_settings=[models.EnvironmentSetting(name="JOBVAR", value="fromjob")])
    client.create_task(jid, models.BatchTaskCreateOptions(
        id="env", command_line="/bin/sh -c 'echo $AZ_BATCH_TASK_ID $AZ_BATCH_JOB_ID $JOBVAR $MYVAR; pwd; echo oops >&2'",
        environment_settings=[models.EnvironmentSetting(name="MYVAR", value="mine")]))
    t = wait_completed(client, jid, "env")
    assert t.execution_info.exit_code == 0
    assert t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert t.node_info.pool_id == pool and t.node_info.node_id
    assert t.node_info.task_root_directory == f"workitems/{jid}/job-1/env"
    out = read(client, jid, "env", "stdout.txt").decode().splitlines()
    assert out[0] == f"env {jid} fromjob mine"
    assert out[1].endswith(f"workitems/{jid}/job-1/env/wd")
    assert read(client, jid, "env", "stderr.txt") == b"oops\n"
    assert read(client, jid, "env", "stdout.txt", ocp_range="bytes=0-2") == b"env"
    props = client.get_task_file_properties(jid, "env", "stdout.txt")
    assert props.content_length == len("\n".join(out)) + 1
    names = {f.name for f in client.list_task_files(jid, "env", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd"} <= names
    # Files stay inside the task directory.
    with pytest.raises(Exception):
        read(client, jid, "env", "../../../../volatile/node-id")
    stats = client.get_task(jid, "env", expand=["stats"]).task_statistics
    assert stats is not None and stats.wall_clock_time > datetime.timedelta(0)
    job_stats = client.get_job(jid, expand=["stats"]).job_statistics
    assert job_stats.succeeded_tasks_count == 1
    assert job_stats.wall_clock_time == stats.wall_clock_time, "job statistics add up the tasks'" 


def test_failures_retries_and_limits(client, pool, uid):
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="exit3", command_line="/bin/sh -c 'exit 3'",
                                                          constraints=models.BatchTaskConstraints(max_task_retry_count=2)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="missing", command_line="/no/such/program arg"))
    client.create_task(jid, models.BatchTaskCreateOptions(id="slow", command_line="sleep 30",
                                                          constraints=models.BatchTaskConstraints(max_wall_clock_time=datetime.timedelta(seconds=1))))
    t = wait_completed(client, jid, "exit3")
    assert t.execution_info.exit_code == 3 and t.execution_info.retry_count == 2
    assert t.execution_info.failure_info.code == "FailureExitCode"
    assert t.execution_info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
    t = wait_completed(client, jid, "missing")
    assert t.execution_info.failure_info.code == "CommandProgramNotFound"
    t = wait_completed(client, jid, "slow")
    assert t.execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    assert t.execution_info.end_time - t.execution_info.start_time < datetime.timedelta(seconds=10)


def test_terminate_running_task(client, pool, uid):
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="long", command_line="sleep 60"))
    wait_for(lambda: client.get_task(jid, "long").state == models.BatchTaskState.RUNNING, what="running")
    client.terminate_task(jid, "long")
    t = client.get_task(jid, "long")
    assert t.state == models.BatchTaskState.COMPLETED and t.execution_info.failure_info.code == "TaskEnded"
    # The slot frees: another task runs.
    client.create_task(jid, models.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
    assert wait_completed(client, jid, "after").execution_info.exit_code == 0


def test_reboot_requeues(client, pool, uid):
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="rq", command_line="sleep 60"))
    t = wait_for(lambda: (t := client.get_task(jid, "rq")).state == models.BatchTaskState.RUNNING and t, what="running")
    client.begin_reboot_node(pool, t.node_info.node_id, options=internal.BatchNodeRebootOptions(node_reboot_kind="requeue"), polling_interval=0.2).result()
    t = wait_for(lambda: (t := client.get_task(jid, "rq")).execution_info.requeue_count == 1 and t, what="requeued")
    assert t.execution_info.retry_count == 0, "a requeue is not a retry"
    wait_for(lambda: client.get_task(jid, "rq").state == models.BatchTaskState.RUNNING, what="running again")
    client.terminate_task(jid, "rq")


def test_job_terminate_kills_running_tasks(client, pool, uid):
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="k", command_line="sleep 60"))
    wait_for(lambda: client.get_task(jid, "k").state == models.BatchTaskState.RUNNING, what="running")
    client.begin_terminate_job(jid, options=internal.BatchJobTerminateOptions(termination_reason="stop"), polling_interval=0.1).result()
    t = client.get_task(jid, "k")
    assert t.state == models.BatchTaskState.COMPLETED and t.execution_info.failure_info.code == "TaskEnded"


def test_node_files_and_scheduling(client, pool):
    node = list(client.list_nodes(pool))[0]
    names = {f.name for f in client.list_node_files(pool, node.id)}
    assert {"shared", "startup", "workitems"} <= names
    client.disable_node_scheduling(pool, node.id, options=internal.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="taskcompletion"))
    assert client.get_node(pool, node.id).scheduling_state == models.SchedulingState.DISABLED
    client.enable_node_scheduling(pool, node.id)
    assert client.get_node(pool, node.id).scheduling_state == models.SchedulingState.ENABLED


def test_agent_killed_mid_task_is_requeued(client, pool, server, uid):
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="victim", command_line="sleep 120"))
    t = wait_for(lambda: (t := client.get_task(jid, "victim")).state == models.BatchTaskState.RUNNING and t, what="running")
    node_id = t.node_info.node_id
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    killed = False
    for p in pids:
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"agent" in cmd and any(node_id.encode() in c for c in cmd):
            os.kill(int(p), signal.SIGKILL)
            killed = True
    assert killed, "found the agent process"
    t = wait_for(lambda: (t := client.get_task(jid, "victim")).execution_info.requeue_count >= 1 and t, timeout=40, what="requeued after node loss")
    assert t.execution_info.retry_count == 0
    client.terminate_task(jid, "victim")


def test_start_task(client, uid):
    good, bad = uid("stpool"), uid("stbad")
    client.create_pool(models.BatchPoolCreateOptions(
        id=good, vm_size="small", target_dedicated_nodes=1,
        start_task=models.BatchStartTask(
            command_line="/bin/sh -c 'echo ready > $AZ_BATCH_NODE_SHARED_DIR/marker; echo started $STVAR'",
            environment_settings=[models.EnvironmentSetting(name="STVAR", value="yes")],
            wait_for_success=True, user_identity=models.UserIdentity(auto_user=models.AutoUserSpecification(elevation_level="admin")))))
    client.create_pool(models.BatchPoolCreateOptions(
        id=bad, vm_size="small", target_dedicated_nodes=1,
        start_task=models.BatchStartTask(command_line="/bin/sh -c 'exit 7'", max_task_retry_count=1, wait_for_success=True)))
    node = wait_for(lambda: [n for n in client.list_nodes(good) if n.state == models.BatchNodeState.IDLE], what="start task done")[0]
    assert node.start_task_info.state == models.BatchStartTaskState.COMPLETED
    assert node.start_task_info.exit_code == 0 and node.start_task_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert node.start_task.command_line.startswith("/bin/sh")
    out = b"".join(client.download_node_file(good, node.id, "startup/stdout.txt"))
    assert out == b"started yes\n"
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=good)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="reads", command_line="/bin/sh -c 'cat $AZ_BATCH_NODE_SHARED_DIR/marker'"))
    wait_for(lambda: client.get_task(jid, "reads").state == models.BatchTaskState.COMPLETED, what="task done")
    assert b"".join(client.download_task_file(jid, "reads", "stdout.txt")) == b"ready\n"
    failed = wait_for(lambda: [n for n in client.list_nodes(bad) if n.state == models.BatchNodeState.START_TASK_FAILED],
                      what="start task failed")[0]
    assert failed.start_task_info.exit_code == 7 and failed.start_task_info.retry_count == 1
    assert failed.start_task_info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
    bjid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=bjid, pool_info=models.BatchPoolInfo(pool_id=bad)))
    client.create_task(bjid, models.BatchTaskCreateOptions(id="never", command_line="/bin/true"))
    import time
    time.sleep(1)
    assert client.get_task(bjid, "never").state == models.BatchTaskState.ACTIVE, "no task runs on a node whose start task failed"
    client.begin_delete_pool(bad, polling_interval=0.2).result()
    client.begin_delete_pool(good, polling_interval=0.2).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_pool(good)


def test_retention_time_cleans_task_files(client, pool, uid):
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="short", command_line="/bin/sh -c 'echo kept'",
                                                          constraints=models.BatchTaskConstraints(retention_time=datetime.timedelta(seconds=1))))
    t = wait_completed(client, jid, "short")
    assert read(client, jid, "short", "stdout.txt") == b"kept\n"

    def cleaned():
        try:
            list(client.list_task_files(jid, "short"))
            return False
        except HttpResponseError as e:
            return e.status_code == 409 and e.error.code == "TaskFilesCleanedup"
    wait_for(cleaned, timeout=20, what="files cleaned up")
    assert client.get_task(jid, "short").state == models.BatchTaskState.COMPLETED


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs the agent to run as root")
def test_user_identities(client, uid):
    pid = uid("users")
    client.create_pool(models.BatchPoolCreateOptions(
        id=pid, vm_size="small", target_dedicated_nodes=1,
        user_accounts=[models.UserAccount(name="obtestuser", password="secret-1", elevation_level="nonadmin")]))
    wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], what="node")
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    whoami = "/bin/sh -c 'id -un'"
    client.create_task(jid, models.BatchTaskCreateOptions(id="auto", command_line=whoami))
    client.create_task(jid, models.BatchTaskCreateOptions(id="admin", command_line=whoami, user_identity=models.UserIdentity(
        auto_user=models.AutoUserSpecification(elevation_level="admin"))))
    client.create_task(jid, models.BatchTaskCreateOptions(id="named", command_line=whoami, user_identity=models.UserIdentity(username="obtestuser")))
    client.create_task(jid, models.BatchTaskCreateOptions(id="nouser", command_line=whoami, user_identity=models.UserIdentity(username="nosuchuser")))
    for tid in ("auto", "admin", "named", "nouser"):
        wait_completed(client, jid, tid)
    out = lambda tid: b"".join(client.download_task_file(jid, tid, "stdout.txt")).decode().strip()
    assert out("auto") == "_azbatch", "non-admin tasks run as an unprivileged account"
    assert out("admin") == "root"
    assert out("named") == "obtestuser"
    assert client.get_task(jid, "nouser").execution_info.failure_info.code == "UserNotFound"
    client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_server_restart_keeps_nodes_and_requeues_lost_attempts(client, server, uid):
    pid = uid("restart")
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="small", target_dedicated_nodes=1))
    node = wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], what="node")[0]
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="long", command_line="sleep 120"))
    wait_for(lambda: client.get_task(jid, "long").state == models.BatchTaskState.RUNNING, what="running")
    server.restart()  # the local agents stop with the server
    c2 = BatchClient(endpoint=server.endpoint, credential=AzureNamedKeyCredential(server.account, server.key))
    t = wait_for(lambda: (t := c2.get_task(jid, "long")).execution_info.requeue_count == 1 and t.state == models.BatchTaskState.RUNNING and t,
                 timeout=30, what="requeued and running again")
    assert t.execution_info.retry_count == 0
    assert [n.id for n in c2.list_nodes(pid)] == [node.id], "the local node came back on its root"
    c2.terminate_task(jid, "long")


def test_reboot_after_task_completion(client, uid):
    pid = uid("drain")
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="small", target_dedicated_nodes=1, task_slots_per_node=2))
    node = wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], what="node")[0]
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="finishing", command_line="sleep 2"))
    wait_for(lambda: client.get_task(jid, "finishing").state == models.BatchTaskState.RUNNING, what="running")
    client.begin_reboot_node(pid, node.id, options=internal.BatchNodeRebootOptions(node_reboot_kind="taskcompletion"), polling_interval=0.2).result()
    client.create_task(jid, models.BatchTaskCreateOptions(id="waits", command_line="/bin/true"))
    import time
    time.sleep(0.5)
    assert client.get_task(jid, "waits").state == models.BatchTaskState.ACTIVE, "a draining node takes no new task"
    t = wait_completed(client, jid, "finishing")
    assert t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS and t.execution_info.requeue_count == 0
    assert wait_completed(client, jid, "waits").execution_info.exit_code == 0, "runs after the reboot"
    client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_a_container_task_without_its_engine_or_image_fails_clearly(client, pool, uid):
    # This server's nodes reach no container engine (or one without the
    # image and no registry): the task fails before running, with a code.
    jid = uid("job")
    new_job(client, pool, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(
        id="ct", command_line="/bin/true",
        container_settings=models.BatchTaskContainerSettings(image_name="localhost/not-here:1")))
    t = wait_completed(client, jid, "ct")
    assert t.execution_info.exit_code is None
    assert t.execution_info.failure_info.code in ("ContainerMiscError", "ContainerInvalidImage")
    assert t.execution_info.failure_info.message


def test_a_node_from_another_machine_joins(client, server, uid, tmp_path):
    import subprocess
    pid = uid("remote")
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="byo", target_dedicated_nodes=0))
    token = open(os.path.join(server.data_dir, "agent.token")).read().strip()
    env = dict(os.environ, OPENBATCH_AGENT_TOKEN=token)
    agent = subprocess.Popen([os.environ.get("OPENBATCH_BIN", "openbatch"), "agent", "--server", server.endpoint,
                              "--pool", pid, "--root", str(tmp_path / "node"), "--ip", "127.0.0.2"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        node = wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], what="remote node")[0]
        assert node.ip_address == "127.0.0.2"
        jid = uid("job")
        client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
        client.create_task(jid, models.BatchTaskCreateOptions(id="there", command_line="/bin/sh -c 'echo $AZ_BATCH_NODE_ROOT_DIR'"))
        t = wait_completed(client, jid, "there")
        assert t.node_info.node_id == node.id
        assert b"".join(client.download_task_file(jid, "there", "stdout.txt")).decode().strip() == str(tmp_path / "node")
        assert client.get_pool(pid).allocation_state == models.AllocationState.STEADY, "the local provider leaves remote nodes alone"
        # Agents need the token the server issued.
        import requests
        r = requests.get(server.endpoint + "/_openbatch/agent/v1/connect", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403
        client.begin_delete_pool(pid, polling_interval=0.2).result()
        agent.wait(timeout=10)  # told to shut down when its pool goes
    finally:
        if agent.poll() is None:
            agent.kill()


def test_tasks_that_fit_no_node_wait_without_blocking_the_job(client, pool, uid):
    # requiredSlots above every node's taskSlotsPerNode (2): accepted, and
    # they wait; the job's later tasks run meanwhile.
    jid = uid("job")
    new_job(client, pool, jid)
    big = [models.BatchTaskCreateOptions(id=f"a-big{i}", command_line="/bin/true", required_slots=3) for i in range(5)]
    small = [models.BatchTaskCreateOptions(id=f"b-small{i}", command_line="/bin/true") for i in range(10)]
    client.create_task_collection(jid, models.BatchTaskGroup(task_values=big + small))
    for i in range(10):
        assert wait_completed(client, jid, f"b-small{i}").execution_info.exit_code == 0
    assert all(client.get_task(jid, f"a-big{i}").state == models.BatchTaskState.ACTIVE for i in range(5))
