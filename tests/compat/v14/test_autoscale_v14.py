"""Autoscale through azure-batch 14.2.0: evaluate_auto_scale (results
parsed), a syntax error's 400 body, enable_auto_scale growing a pool for its
pending tasks and shrinking it when they are done, resize refused while
autoscale is on, disable_auto_scale. Samples every second, evaluations every
5 s."""
import datetime
import tempfile

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import Server, wait_for

FIVE_S = datetime.timedelta(seconds=5)


@pytest.fixture(scope="module")
def client():
    with tempfile.TemporaryDirectory(prefix="openbatch-autoscale14-") as d:
        s = Server(d, ["--autoscale-sample-interval", "1"])
        s.start()
        yield BatchServiceClient(SharedKeyCredentials(s.account, s.key), batch_url=s.endpoint)
        s.stop()


def results(run):
    return dict(item.split("=", 1) for item in run.results.split(";"))


def test_evaluate_and_syntax_errors(client, uid):
    pid = uid("as14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", enable_auto_scale=True,
                                            auto_scale_formula="$TargetDedicatedNodes = 0;", auto_scale_evaluation_interval=FIVE_S))
    run = client.pool.evaluate_auto_scale(pid, "$x = 10 / 4; $TargetDedicatedNodes = $x * 2; $when = time(\"2026-12-07T10:00:00Z\").hour;")
    assert isinstance(run, models.AutoScaleRun) and run.error is None
    assert results(run) == {"$TargetDedicatedNodes": "5", "$TargetLowPriorityNodes": "0",
                            "$NodeDeallocationOption": "requeue", "$when": "10", "$x": "2.5"}
    with pytest.raises(models.BatchErrorException) as e:
        client.pool.evaluate_auto_scale(pid, "$TargetDedicatedNodes = max(1, ;")
    assert e.value.response.status_code == 400 and e.value.error.code == "AutoScalingFormulaSyntaxError"
    values = {v.key: v.value for v in e.value.error.values}
    assert values["Line"] == "1" and values["Message"].startswith("Line 1, Col "), values
    client.pool.delete(pid)


def test_enable_scales_a_pool_up_and_down(client, uid):
    pid, jid = uid("as14"), uid("job14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.pool.enable_auto_scale(pid, auto_scale_formula="$TargetDedicatedNodes = min(1, max($PendingTasks.GetSample(1)));",
                                  auto_scale_evaluation_interval=FIVE_S)
    pool = client.pool.get(pid)
    assert pool.enable_auto_scale and pool.auto_scale_evaluation_interval == FIVE_S and pool.auto_scale_run is not None
    with pytest.raises(models.BatchErrorException) as e:
        client.pool.resize(pid, models.PoolResizeParameter(target_dedicated_nodes=2))
    assert e.value.response.status_code == 409 and e.value.error.code == "OperationNotValidOnPool"

    client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pid)))
    client.task.add_collection(jid, [models.TaskAddParameter(id=f"t{i}", command_line="sleep 1") for i in range(2)])
    wait_for(lambda: client.pool.get(pid).current_dedicated_nodes == 1, timeout=20, interval=0.5, what="a node for the pending tasks")
    wait_for(lambda: all(t.state == models.TaskState.completed for t in client.task.list(jid)), timeout=30, interval=0.5, what="tasks done")
    wait_for(lambda: (p := client.pool.get(pid)).target_dedicated_nodes == 0 and p.current_dedicated_nodes == 0,
             timeout=20, interval=0.5, what="no node once nothing is pending")

    client.pool.disable_auto_scale(pid)
    assert client.pool.get(pid).enable_auto_scale is False
    client.pool.resize(pid, models.PoolResizeParameter(target_dedicated_nodes=0))
    client.job.delete(jid)
    client.pool.delete(pid)
