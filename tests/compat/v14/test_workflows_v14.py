"""Task dependencies, exit conditions and job completion through azure-batch
14.2.0: a chain, an id range, satisfy and block, jobAction terminate and
onAllTasksComplete terminatejob, on one local node with four task slots."""
import time

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import wait_for

POOL = "wfpool14"


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


@pytest.fixture(scope="module")
def pool(client):
    client.pool.add(models.PoolAddParameter(id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=4))
    wait_for(lambda: [n for n in client.compute_node.list(POOL) if n.state == models.ComputeNodeState.idle], timeout=20, what="idle node")
    yield POOL
    client.pool.delete(POOL)


@pytest.fixture
def new_job(client, pool, uid):
    """Creates jobs on the module's pool and terminates them afterwards, so
    nothing left running holds on to the node's slots."""
    made = []

    def make(**kw):
        jid = uid("wf14")
        client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pool), **kw))
        made.append(jid)
        return jid
    yield make
    for jid in made:
        try:
            client.job.terminate(jid)
        except models.BatchErrorException:
            pass  # already completed


def task(tid, command_line, **kw):
    return models.TaskAddParameter(id=tid, command_line=command_line, **kw)


def add(client, jid, *tasks):
    result = client.task.add_collection(jid, list(tasks))
    assert all(r.status == models.TaskAddStatus.success for r in result.value), result


def after(*task_ids):
    return models.TaskDependencies(task_ids=list(task_ids))


def wait_completed(client, jid, tid, timeout=20):
    return wait_for(lambda: (t := client.task.get(jid, tid)).state == models.TaskState.completed and t,
                    timeout=timeout, what=f"{tid} completed")


def wait_job_completed(client, jid, timeout=20):
    return wait_for(lambda: (j := client.job.get(jid)).state == models.JobState.completed and j, timeout=timeout, what="job completed")


def succeeded(t):
    return t.execution_info.result == models.TaskExecutionResult.success and t.execution_info.exit_code == 0


def never_started(t):
    return t.state == models.TaskState.active and (t.execution_info is None or t.execution_info.start_time is None)


SHORT = "/bin/sh -c 'sleep 0.3'"


def test_chain(client, new_job):
    jid = new_job(uses_task_dependencies=True)
    add(client, jid,
        task("t1", SHORT),
        task("t2", SHORT, depends_on=after("t1")),
        task("t3", SHORT, depends_on=after("t2")))
    t3 = wait_completed(client, jid, "t3")
    t1, t2 = client.task.get(jid, "t1"), client.task.get(jid, "t2")
    assert all(succeeded(t) for t in (t1, t2, t3))
    assert t2.execution_info.start_time >= t1.execution_info.end_time
    assert t3.execution_info.start_time >= t2.execution_info.end_time


def test_id_range(client, new_job):
    jid = new_job(uses_task_dependencies=True)
    add(client, jid,
        *[task(str(i), f"/bin/sh -c 'sleep 0.{i}'") for i in range(1, 6)],
        task("after", "/bin/true", depends_on=models.TaskDependencies(task_id_ranges=[models.TaskIdRange(start=1, end=5)])))
    last = wait_completed(client, jid, "after")
    ranged = [client.task.get(jid, str(i)) for i in range(1, 6)]
    assert succeeded(last) and all(succeeded(t) for t in ranged)
    assert last.execution_info.start_time >= max(t.execution_info.end_time for t in ranged)


def test_satisfy_and_block(client, new_job):
    """A failed dependency blocks its dependents unless its exit conditions
    say satisfy."""
    jid = new_job(uses_task_dependencies=True)
    satisfy = models.ExitOptions(dependency_action=models.DependencyAction.satisfy)
    add(client, jid,
        task("blocks", "/bin/sh -c 'exit 3'"),
        task("after-blocks", "/bin/true", depends_on=after("blocks")),
        task("satisfies", "/bin/sh -c 'exit 3'", exit_conditions=models.ExitConditions(
            exit_codes=[models.ExitCodeMapping(code=3, exit_options=satisfy)])),
        task("after-satisfies", "/bin/true", depends_on=after("satisfies")))
    blocks = wait_completed(client, jid, "blocks")
    assert blocks.execution_info.exit_code == 3 and blocks.execution_info.result == models.TaskExecutionResult.failure
    freed = wait_completed(client, jid, "after-satisfies")
    satisfies = client.task.get(jid, "satisfies")
    assert satisfies.execution_info.result == models.TaskExecutionResult.failure
    assert succeeded(freed) and freed.execution_info.start_time >= satisfies.execution_info.end_time
    time.sleep(2)
    assert never_started(client.task.get(jid, "after-blocks"))


def test_job_action_terminate(client, new_job):
    jid = new_job(on_task_failure=models.OnTaskFailure.perform_exit_options_job_action)
    client.task.add(jid, task("sleeper", "/bin/sleep 30"))
    wait_for(lambda: client.task.get(jid, "sleeper").state == models.TaskState.running, what="sleeper running")
    client.task.add(jid, task("bad", "/bin/sh -c 'exit 3'", exit_conditions=models.ExitConditions(
        default=models.ExitOptions(job_action=models.JobAction.terminate))))
    job = wait_job_completed(client, jid)
    assert job.execution_info.terminate_reason == "TaskFailed"
    sleeper = wait_completed(client, jid, "sleeper", timeout=10)
    assert sleeper.execution_info.failure_info is not None, "the running task was killed"


def test_job_action_none_keeps_job_active(client, new_job):
    jid = new_job(on_task_failure=models.OnTaskFailure.perform_exit_options_job_action)
    client.task.add(jid, task("bad", "/bin/sh -c 'exit 3'", exit_conditions=models.ExitConditions(
        exit_codes=[models.ExitCodeMapping(code=3, exit_options=models.ExitOptions(job_action=models.JobAction.none))])))
    assert wait_completed(client, jid, "bad").execution_info.exit_code == 3
    time.sleep(0.5)
    client.task.add(jid, task("next", "/bin/true"))
    assert succeeded(wait_completed(client, jid, "next"))
    assert client.job.get(jid).state == models.JobState.active


def test_all_tasks_complete_terminates_job(client, new_job):
    # No tasks: all complete, so the job ends at once (as documented).
    jid = new_job(on_all_tasks_complete=models.OnAllTasksComplete.terminate_job)
    job = wait_job_completed(client, jid, timeout=5)
    assert job.execution_info.terminate_reason == "AllTasksComplete"
    # A job manager task keeps it going until it and its tasks are done.
    jid = new_job(on_all_tasks_complete=models.OnAllTasksComplete.terminate_job,
                  job_manager_task=models.JobManagerTask(id="jm", command_line=SHORT, kill_job_on_completion=False))
    add(client, jid, task("a", SHORT), task("b", "/bin/true"))
    job = wait_job_completed(client, jid)
    assert job.execution_info.terminate_reason == "AllTasksComplete"
    assert job.on_all_tasks_complete == models.OnAllTasksComplete.terminate_job
    assert all(succeeded(client.task.get(jid, t)) for t in ("jm", "a", "b"))


def test_multi_instance_task_on_two_nodes(client, uid):
    """A two-node multi-instance task through the 14.x models: coordination on
    both nodes, the command line on the primary, one subtask."""
    pid = uid("mi14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=2,
                                            enable_inter_node_communication=True))
    try:
        wait_for(lambda: len([n for n in client.compute_node.list(pid) if n.state == models.ComputeNodeState.idle]) == 2,
                 timeout=20, what="two idle nodes")
        jid = uid("mi14")
        client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pid)))
        client.task.add(jid, task("mpi", "/bin/sh -c 'echo hosts=$AZ_BATCH_HOST_LIST'",
                                  multi_instance_settings=models.MultiInstanceSettings(
                                      number_of_instances=2, coordination_command_line="/bin/true")))
        t = wait_completed(client, jid, "mpi")
        assert t.execution_info.result == models.TaskExecutionResult.success
        out = b"".join(client.file.get_from_task(jid, "mpi", "stdout.txt")).decode()
        assert len(out.strip().split("=", 1)[1].split(",")) == 2
        subtasks = list(client.task.list_subtasks(jid, "mpi").value)
        assert [s.id for s in subtasks] == [1]
        assert subtasks[0].state == models.SubtaskState.completed and subtasks[0].exit_code == 0
        assert subtasks[0].node_info.node_id != t.node_info.node_id
        client.job.terminate(jid)
    finally:
        client.pool.delete(pid)
