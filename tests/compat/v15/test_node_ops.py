"""Node start and deallocate, and the VM extensions a node reports, through
azure-batch 15.1.0 (issue 14)."""
import datetime
import time

import pytest
from azure.batch import models
from azure.batch.models import _models as internal
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from conftest import end_job, wait_for


def idle_node(client, pid):
    return wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], what="an idle node")[0]


def new_pool(client, pid, **kw):
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="small", target_dedicated_nodes=1, **kw))
    return idle_node(client, pid)


def completed(client, jid, tid, timeout=30):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def test_deallocate_requeues_then_start_runs_again(client, uid):
    pid = uid("dealloc")
    node = new_pool(client, pid, task_slots_per_node=2)
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="long", command_line="sleep 60"))
    wait_for(lambda: client.get_task(jid, "long").state == models.BatchTaskState.RUNNING, what="running")

    client.begin_deallocate_node(pid, node.id, internal.BatchNodeDeallocateOptions(node_deallocate_option="requeue"),
                                 polling_interval=0.2).result()
    n = wait_for(lambda: (n := client.get_node(pid, node.id)).state == models.BatchNodeState.DEALLOCATED and n, what="deallocated")
    assert n.running_tasks_count == 0
    t = client.get_task(jid, "long")
    assert t.state == models.BatchTaskState.ACTIVE and t.execution_info.requeue_count == 1
    assert t.execution_info.retry_count == 0, "a requeue is not a retry"
    # The node stays in its pool and counts towards it, but runs nothing.
    assert [x.id for x in client.list_nodes(pid)] == [node.id]
    assert client.get_pool(pid).current_dedicated_nodes == 1
    client.create_task(jid, models.BatchTaskCreateOptions(id="quick", command_line="/bin/true"))
    time.sleep(1)
    assert client.get_task(jid, "quick").state == models.BatchTaskState.ACTIVE, "a deallocated node takes no task"

    # Deallocating it again, or starting an idle node, is refused.
    with pytest.raises(HttpResponseError) as e:
        # (15.1.0 cannot send a deallocate without options.)
        client.begin_deallocate_node(pid, node.id, internal.BatchNodeDeallocateOptions(node_deallocate_option="requeue"),
                                     polling_interval=0.2).result()
    assert e.value.status_code == 409 and e.value.error.code == "OperationInvalidForCurrentState"

    client.begin_start_node(pid, node.id, polling_interval=0.2).result()
    assert completed(client, jid, "quick").execution_info.exit_code == 0, "runs once the node is started"
    assert wait_for(lambda: client.get_task(jid, "long").state == models.BatchTaskState.RUNNING, what="requeued task runs")
    with pytest.raises(HttpResponseError) as e:
        client.begin_start_node(pid, node.id, polling_interval=0.2).result()
    assert e.value.status_code == 409 and e.value.error.code == "OperationInvalidForCurrentState"
    end_job(client, jid)
    client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_deallocate_after_task_completion_and_terminate(client, uid):
    pid = uid("dealloc2")
    node = new_pool(client, pid, task_slots_per_node=2)
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="finishing", command_line="sleep 2"))
    wait_for(lambda: client.get_task(jid, "finishing").state == models.BatchTaskState.RUNNING, what="running")
    client._deallocate_node_internal(pid, node.id, internal.BatchNodeDeallocateOptions(node_deallocate_option="taskcompletion"))
    t = completed(client, jid, "finishing")
    assert t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS and t.execution_info.requeue_count == 0
    wait_for(lambda: client.get_node(pid, node.id).state == models.BatchNodeState.DEALLOCATED, what="deallocated after the task")
    client.begin_start_node(pid, node.id, polling_interval=0.2).result()
    idle_node(client, pid)

    client.create_task(jid, models.BatchTaskCreateOptions(id="ended", command_line="sleep 60"))
    wait_for(lambda: client.get_task(jid, "ended").state == models.BatchTaskState.RUNNING, what="running")
    client.begin_deallocate_node(pid, node.id, internal.BatchNodeDeallocateOptions(node_deallocate_option="terminate"),
                                 polling_interval=0.2).result()
    t = completed(client, jid, "ended")
    assert t.execution_info.failure_info.code == "TaskEnded"
    with pytest.raises(ResourceNotFoundError):
        client.begin_start_node(pid, "no-such-node", polling_interval=0.2).result()
    end_job(client, jid)
    client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_node_extensions_are_reported_not_installed(client, uid):
    pid = uid("ext")
    extensions = [models.VMExtension(name=f"ext{i}", publisher="Contoso", type="Monitor", type_handler_version="1.0",
                                     settings={"level": str(i)}, protected_settings={"secret": "hunter2"})
                  for i in range(3)]
    node = new_pool(client, pid, virtual_machine_configuration=models.VirtualMachineConfiguration(
        image_reference=models.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
        node_agent_sku_id="batch.node.ubuntu 22.04", extensions=extensions))
    got = list(client.list_node_extensions(pid, node.id, max_results=2))
    assert [e.vm_extension.name for e in got] == ["ext0", "ext1", "ext2"], "paged 2 at a time"
    for e in got:
        assert e.provisioning_state == "Failed"
        assert e.vm_extension.publisher == "Contoso" and e.vm_extension.type == "Monitor"
        assert e.vm_extension.protected_settings is None, "secrets are never returned"
        status = e.instance_view.statuses[0]
        assert status.level == "Error" and "installs no VM extensions" in status.message
    one = client.get_node_extension(pid, node.id, "ext1")
    assert one.vm_extension.settings == {"level": "1"}
    with pytest.raises(ResourceNotFoundError):
        client.get_node_extension(pid, node.id, "nope")
    with pytest.raises(ResourceNotFoundError):
        list(client.list_node_extensions(pid, "no-such-node"))
    client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_remove_node_with_retaineddata_waits_for_task_retention(client, uid):
    pid = uid("retain")
    node = new_pool(client, pid)
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(
        id="kept", command_line="sleep 1", constraints=models.BatchTaskConstraints(retention_time=datetime.timedelta(seconds=6))))
    wait_for(lambda: client.get_task(jid, "kept").state == models.BatchTaskState.RUNNING, what="running")
    # (Without the poller, which would wait until the node has left.)
    client._remove_nodes_internal(pid, models.BatchNodeRemoveOptions(node_ids=[node.id], node_deallocation_option="retaineddata"))
    t = completed(client, jid, "kept")
    assert t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS, "the running task finishes"
    ended = t.execution_info.end_time
    time.sleep(2)
    assert [n.id for n in client.list_nodes(pid)] == [node.id], "the node stays while its task's files are retained"
    assert b"".join(client.download_task_file(jid, "kept", "stdout.txt")) == b"", "and they can be read"
    wait_for(lambda: not list(client.list_nodes(pid)), timeout=20, what="the node leaves after the retention")
    left = datetime.datetime.now(datetime.timezone.utc)
    assert left - ended >= datetime.timedelta(seconds=6), (ended, left)
    end_job(client, jid)
    client.begin_delete_pool(pid, polling_interval=0.2).result()
