"""Multi-instance tasks through azure-batch 15.1.0, on a pool of two real
local nodes: the coordination command on every instance, then the primary's
command line; the multi-instance environment; subtasks; failures."""
import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from conftest import start_pool, wait_for

POOL = "multipool"


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, nodes=2, task_slots_per_node=1, enable_inter_node_communication=True)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


def sh(script):
    return f"/bin/sh -c '{script}'"


def wait_completed(client, jid, tid, timeout=20):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def task_file(client, jid, tid, name):
    return b"".join(client.download_task_file(jid, tid, name)).decode()


def node_file(client, node_id, path):
    return b"".join(client.download_node_file(POOL, node_id, path)).decode()


# The coordination command records where and as what it ran, in the task
# shared directory (the task directory), then returns; the primary's command
# line prints what the coordination step left and the multi-instance variables.
COORDINATION = sh('echo "coord master=$AZ_BATCH_IS_CURRENT_NODE_MASTER" > "$AZ_BATCH_TASK_SHARED_DIR/coord.txt"; '
                  'echo "coordinated $AZ_BATCH_NODE_ID"')
APPLICATION = sh('cat "$AZ_BATCH_TASK_SHARED_DIR/coord.txt"; echo "hosts=$AZ_BATCH_HOST_LIST"; '
                 'echo "nodes=$AZ_BATCH_NODE_LIST"; echo "master=$AZ_BATCH_MASTER_NODE"; '
                 'echo "is_master=$AZ_BATCH_IS_CURRENT_NODE_MASTER"; echo "shared=$AZ_BATCH_TASK_SHARED_DIR"; '
                 'echo "taskdir=$AZ_BATCH_TASK_DIR"')


def test_two_node_task_runs_coordination_everywhere_then_the_primary(client, job):
    client.create_task(job, models.BatchTaskCreateOptions(
        id="mpi", command_line=APPLICATION,
        multi_instance_settings=models.MultiInstanceSettings(number_of_instances=2, coordination_command_line=COORDINATION)))
    t = wait_completed(client, job, "mpi")
    assert t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS, t.execution_info
    assert t.execution_info.exit_code == 0
    assert t.multi_instance_settings.number_of_instances == 2

    out = dict(line.split("=", 1) for line in task_file(client, job, "mpi", "stdout.txt").splitlines() if "=" in line
               and not line.startswith("coord"))
    stdout = task_file(client, job, "mpi", "stdout.txt")
    assert "coord master=true" in stdout, "the primary's coordination ran before its command line, in the shared dir"
    hosts = out["hosts"].split(",")
    assert len(hosts) == 2 and all(hosts)
    assert out["nodes"].split(";") == hosts
    assert out["master"] == f"{hosts[0]}:6000"
    assert out["is_master"] == "true"
    assert out["shared"] == out["taskdir"]

    subtasks = list(client.list_subtasks(job, "mpi"))
    assert [s.id for s in subtasks] == [1], "one subtask besides the primary"
    sub = subtasks[0]
    assert sub.state == models.BatchSubtaskState.COMPLETED
    assert sub.result == models.BatchTaskExecutionResult.SUCCESS
    assert sub.exit_code == 0
    assert sub.start_time is not None and sub.end_time is not None
    assert sub.node_info.node_id != t.node_info.node_id, "instances run on distinct nodes"
    # The subtask's own coordination output, on its node.
    sub_out = node_file(client, sub.node_info.node_id, f"{sub.node_info.task_root_directory}/stdout.txt")
    assert sub_out.strip() == f"coordinated {sub.node_info.node_id}"
    assert node_file(client, sub.node_info.node_id, f"{sub.node_info.task_root_directory}/coord.txt").strip() == \
        "coord master=false"
    # Both nodes are free again.
    wait_for(lambda: all(n.state == models.BatchNodeState.IDLE for n in client.list_nodes(POOL)), what="idle nodes")


def test_a_failing_instance_fails_the_task_and_the_command_never_runs(client, job):
    # The subtask's coordination fails; the primary's command line must not run.
    client.create_task(job, models.BatchTaskCreateOptions(
        id="bad", command_line=sh("echo application-ran"),
        multi_instance_settings=models.MultiInstanceSettings(
            number_of_instances=2,
            coordination_command_line=sh('[ "$AZ_BATCH_IS_CURRENT_NODE_MASTER" = true ] || exit 7'))))
    t = wait_completed(client, job, "bad")
    assert t.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert t.execution_info.exit_code == 7
    assert t.execution_info.failure_info.code == "FailureExitCode"
    assert "application-ran" not in task_file(client, job, "bad", "stdout.txt")
    subtasks = list(client.list_subtasks(job, "bad"))
    assert len(subtasks) == 1 and subtasks[0].exit_code == 7
    assert subtasks[0].result == models.BatchTaskExecutionResult.FAILURE
    wait_for(lambda: all(n.state == models.BatchNodeState.IDLE for n in client.list_nodes(POOL)), what="idle nodes")


def test_a_failed_instance_is_retried_under_the_tasks_constraints(client, job):
    client.create_task(job, models.BatchTaskCreateOptions(
        id="retry", command_line=sh("true"),
        constraints=models.BatchTaskConstraints(max_task_retry_count=1),
        multi_instance_settings=models.MultiInstanceSettings(number_of_instances=2, coordination_command_line=sh("exit 2"))))
    t = wait_completed(client, job, "retry")
    assert t.execution_info.retry_count == 1
    assert t.execution_info.exit_code == 2


def test_more_instances_than_nodes_waits(client, job):
    client.create_task(job, models.BatchTaskCreateOptions(
        id="wide", command_line=sh("true"),
        multi_instance_settings=models.MultiInstanceSettings(number_of_instances=3, coordination_command_line=sh("true"))))
    # An ordinary task added after it still runs: the wide task holds no node.
    client.create_task(job, models.BatchTaskCreateOptions(id="small", command_line=sh("true")))
    assert wait_completed(client, job, "small").execution_info.exit_code == 0
    t = client.get_task(job, "wide")
    assert t.state == models.BatchTaskState.ACTIVE
    assert list(client.list_subtasks(job, "wide")) == []


def test_terminating_a_running_multi_instance_task_stops_every_instance(client, job):
    client.create_task(job, models.BatchTaskCreateOptions(
        id="long", command_line=sh("sleep 60"),
        multi_instance_settings=models.MultiInstanceSettings(number_of_instances=2, coordination_command_line=sh("true"))))
    wait_for(lambda: client.get_task(job, "long").state == models.BatchTaskState.RUNNING, what="running")
    wait_for(lambda: all(n.state == models.BatchNodeState.RUNNING for n in client.list_nodes(POOL)), what="both nodes busy")
    client.terminate_task(job, "long")
    t = client.get_task(job, "long")
    assert t.state == models.BatchTaskState.COMPLETED
    assert t.execution_info.failure_info.code == "TaskEnded"
    wait_for(lambda: all(n.state == models.BatchNodeState.IDLE for n in client.list_nodes(POOL)), what="idle nodes")


def test_subtasks_of_an_ordinary_task_are_empty(client, job):
    client.create_task(job, models.BatchTaskCreateOptions(id="plain", command_line=sh("true")))
    assert list(client.list_subtasks(job, "plain")) == []


@pytest.mark.parametrize("settings, slots", [
    (dict(number_of_instances=0, coordination_command_line="/bin/true"), None),
    (dict(number_of_instances=2, coordination_command_line="/bin/true"), 2),
])
def test_invalid_multi_instance_settings_are_refused(client, job, settings, slots):
    with pytest.raises(HttpResponseError) as e:
        client.create_task(job, models.BatchTaskCreateOptions(
            id="invalid", command_line="/bin/true", required_slots=slots,
            multi_instance_settings=models.MultiInstanceSettings(**settings)))
    assert e.value.status_code == 400
    assert e.value.error.code == "InvalidPropertyValue"
