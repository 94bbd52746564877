"""Running tasks through azure-batch 14.2.0: pool, nodes, job, tasks, files."""
import datetime

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import wait_for


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


def test_the_ordinary_batch_program(client, uid):
    pid, jid = uid("pool14"), uid("job14")
    client.pool.add(models.PoolAddParameter(
        id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=2,
        start_task=models.StartTask(command_line="/bin/sh -c 'echo st > $AZ_BATCH_NODE_SHARED_DIR/st'", wait_for_success=True)))
    assert client.pool.exists(pid) is True
    assert client.pool.exists("no-such-pool-14") is False
    wait_for(lambda: [n for n in client.compute_node.list(pid) if n.state == models.ComputeNodeState.idle], what="idle node")
    node = list(client.compute_node.list(pid))[0]
    assert node.start_task_info.state == models.StartTaskState.completed
    client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pid)))
    client.task.add_collection(jid, [
        models.TaskAddParameter(id="ok", command_line="/bin/sh -c 'cat $AZ_BATCH_NODE_SHARED_DIR/st; echo $AZ_BATCH_TASK_ID'"),
        models.TaskAddParameter(id="fails", command_line="/bin/sh -c 'exit 2'", constraints=models.TaskConstraints(max_task_retry_count=1)),
        models.TaskAddParameter(id="slow", command_line="sleep 20", constraints=models.TaskConstraints(max_wall_clock_time=datetime.timedelta(seconds=1))),
    ])
    wait_for(lambda: all(t.state == models.TaskState.completed for t in client.task.list(jid)), timeout=30, what="all completed")
    ok = client.task.get(jid, "ok")
    assert ok.execution_info.result == models.TaskExecutionResult.success and ok.execution_info.exit_code == 0
    out = b"".join(client.file.get_from_task(jid, "ok", "stdout.txt"))
    assert out == b"st\nok\n"
    part = b"".join(client.file.get_from_task(jid, "ok", "stdout.txt", file_get_from_task_options=models.FileGetFromTaskOptions(ocp_range="bytes=3-4")))
    assert part == b"ok"
    props = client.file.get_properties_from_task(jid, "ok", "stdout.txt", raw=True)
    assert int(props.headers["Content-Length"]) == len(out)
    fails = client.task.get(jid, "fails")
    assert fails.execution_info.retry_count == 1 and fails.execution_info.failure_info.code == "FailureExitCode"
    assert client.task.get(jid, "slow").execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    names = [f.name for f in client.file.list_from_task(jid, "ok", recursive=True)]
    assert "stdout.txt" in names and "wd" in names
    counts = client.job.get_task_counts(jid)
    assert (counts.task_counts.succeeded, counts.task_counts.failed) == (1, 2)
    client.pool.resize(pid, models.PoolResizeParameter(target_dedicated_nodes=2))
    wait_for(lambda: client.pool.get(pid).current_dedicated_nodes == 2 and client.pool.get(pid).allocation_state == models.AllocationState.steady,
             what="resized to 2")
    client.pool.delete(pid)
    def gone():
        try:
            client.pool.get(pid)
            return False
        except models.BatchErrorException as e:
            return e.error.code == "PoolNotFound"
    wait_for(gone, what="pool deleted")
