"""Autoscale through azure-batch 15.1.0: evaluate (results parsed), formula
errors, a pool that grows with its pending tasks and shrinks when they are
done, resize refused while autoscale is on, disable. The server samples
every second and evaluations run every 5 s (openbatch's shortest interval
outside --strict-limits), so the whole module takes about half a minute."""
import datetime
import tempfile

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from conftest import Server, batch_client, wait_for

FIVE_S = datetime.timedelta(seconds=5)


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="openbatch-autoscale-") as d:
        s = Server(d, ["--autoscale-sample-interval", "1"])
        s.start()
        yield s
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return batch_client(server)


def results(run):
    """`AutoScaleRun.results` as a dict: "$a=1;$b=2" → {"$a": "1", "$b": "2"}."""
    return dict(item.split("=", 1) for item in run.results.split(";"))


def autoscale_pool(client, pid, formula, interval=FIVE_S):
    client.create_pool(models.BatchPoolCreateOptions(
        id=pid, vm_size="standard_d2s_v3", enable_auto_scale=True, auto_scale_formula=formula,
        auto_scale_evaluation_interval=interval))


def test_evaluate_returns_results_and_errors(client, uid):
    pid = uid("as")
    autoscale_pool(client, pid, "$TargetDedicatedNodes = 0;")
    pool = client.get_pool(pid)
    assert pool.enable_auto_scale is True and pool.auto_scale_evaluation_interval == FIVE_S
    # Evaluated when created, as the service does.
    assert results(pool.auto_scale_run)["$TargetDedicatedNodes"] == "0" and pool.auto_scale_run.error is None

    run = client.evaluate_pool_auto_scale(pid, models.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="$a = 3 * 2; $TargetDedicatedNodes = min(2, $a);\n$b = avg(1, 2, 6); $NodeDeallocationOption = taskcompletion;"))
    assert isinstance(run, models.AutoScaleRun) and run.error is None
    assert results(run) == {"$TargetDedicatedNodes": "2", "$TargetLowPriorityNodes": "0",
                            "$NodeDeallocationOption": "taskcompletion", "$a": "6", "$b": "3"}
    assert abs((datetime.datetime.now(datetime.timezone.utc) - run.timestamp).total_seconds()) < 60
    assert client.get_pool(pid).target_dedicated_nodes == 0, "evaluating applies nothing"

    # Too few samples for a ten-minute window: an evaluation error, not a 4xx.
    run = client.evaluate_pool_auto_scale(pid, models.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes = avg($PendingTasks.GetSample(TimeInterval_Minute * 10));"))
    assert run.error.code == "InsufficientSampleData"
    message = {v.name: v.value for v in run.error.error_values}["Message"]
    assert message.startswith("Line 1, Col ") and "wanted 70%" in message, message
    client.begin_delete_pool(pid, polling_interval=0.2)


def test_formula_errors_are_400s(client, uid):
    pid = uid("as")
    autoscale_pool(client, pid, "$TargetDedicatedNodes = 0;")
    with pytest.raises(HttpResponseError) as e:
        client.evaluate_pool_auto_scale(pid, models.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula="$x = 1;\n$y = (2 + ;"))
    assert e.value.status_code == 400 and e.value.error.code == "AutoScalingFormulaSyntaxError"
    values = {v["key"]: v["value"] for v in e.value.response.json()["values"]}
    assert values["Line"] == "2" and values["Message"].startswith("Line 2, Col "), values
    with pytest.raises(HttpResponseError) as e:
        client.enable_pool_auto_scale(pid, models.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$a = 1;" * 101))
    assert e.value.status_code == 400 and e.value.error.code == "AutoScalingFormulaTooLong"
    with pytest.raises(HttpResponseError) as e:
        client.enable_pool_auto_scale(pid, models.BatchPoolEnableAutoScaleOptions(
            auto_scale_evaluation_interval=datetime.timedelta(seconds=4)))
    assert e.value.status_code == 400 and e.value.error.code == "InvalidPropertyValue"
    with pytest.raises(HttpResponseError) as e:
        client.create_pool(models.BatchPoolCreateOptions(id=uid("bad"), vm_size="standard_d2s_v3",
                                                         enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes = = 1"))
    assert e.value.status_code == 400 and e.value.error.code == "AutoScalingFormulaSyntaxError"
    client.begin_delete_pool(pid, polling_interval=0.2)


def test_a_pool_scales_with_its_pending_tasks(client, uid):
    pid, jid = uid("as"), uid("job")
    # One node per two pending tasks (last sample), at most 2 nodes.
    formula = "$pending = max($PendingTasks.GetSample(1));\n$TargetDedicatedNodes = min(2, ($pending + 1) / 2);"
    autoscale_pool(client, pid, formula)
    assert client.get_pool(pid).target_dedicated_nodes == 0

    # While autoscale is on, the pool cannot be resized.
    with pytest.raises(HttpResponseError) as e:
        client.begin_resize_pool(pid, models.BatchPoolResizeOptions(target_dedicated_nodes=3)).result()
    assert e.value.status_code == 409 and e.value.error.code == "OperationNotValidOnPool"

    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task_collection(jid, models.BatchTaskGroup(
        task_values=[models.BatchTaskCreateOptions(id=f"t{i}", command_line="sleep 2") for i in range(4)]))
    seen = []

    def grown():
        p = client.get_pool(pid)
        seen.append(p.current_dedicated_nodes)
        return p.target_dedicated_nodes == 2 and p.current_dedicated_nodes == 2
    wait_for(grown, timeout=20, interval=0.5, what="2 nodes for 4 pending tasks")
    run = client.get_pool(pid).auto_scale_run
    assert run.error is None and results(run)["$pending"] in ("3", "4"), run.results
    wait_for(lambda: all(t.state == models.BatchTaskState.COMPLETED for t in client.list_tasks(jid)),
             timeout=30, interval=0.5, what="the tasks done")

    def shrunk():
        p = client.get_pool(pid)
        seen.append(p.current_dedicated_nodes)
        return p.target_dedicated_nodes == 0 and p.current_dedicated_nodes == 0
    wait_for(shrunk, timeout=20, interval=0.5, what="no node once no task is pending")
    assert max(seen) == 2, seen

    # Disabled: the pool keeps its size and can be resized again.
    client.disable_pool_auto_scale(pid)
    pool = client.get_pool(pid)
    assert pool.enable_auto_scale is False and pool.target_dedicated_nodes == 0
    client.begin_resize_pool(pid, models.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=1).result()
    assert client.get_pool(pid).target_dedicated_nodes == 1
    # Enabling again needs a formula, and evaluates it at once.
    with pytest.raises(HttpResponseError) as e:
        client.enable_pool_auto_scale(pid, models.BatchPoolEnableAutoScaleOptions(auto_scale_evaluation_interval=FIVE_S))
    assert e.value.status_code == 400
    wait_for(lambda: client.get_pool(pid).allocation_state == models.AllocationState.STEADY, what="steady")
    client.enable_pool_auto_scale(pid, models.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes = 0;"))
    pool = client.get_pool(pid)
    assert pool.enable_auto_scale is True and pool.target_dedicated_nodes == 0
    assert pool.auto_scale_evaluation_interval == datetime.timedelta(minutes=15), "the service's default"
    client.begin_delete_job(jid, polling_interval=0.2)
    client.begin_delete_pool(pid, polling_interval=0.2)


def test_strict_limits_allow_one_enableautoscale_per_pool_every_30_seconds(tmp_path):
    """With --strict-limits, a second `enableautoscale` on a pool within 30 s
    is 503 TooManyEnableAutoScaleRequests, as the service answers (sent raw:
    the SDKs retry a 503); another pool is not affected."""
    from rawclient import Raw
    s = Server(str(tmp_path), ["--strict-limits"])
    s.start()
    try:
        raw = Raw(s.endpoint, s.account, s.key)
        for pid in ("a", "b"):
            r = raw.request("POST", "/pools", {"id": pid, "vmSize": "standard_d2s_v3"})
            assert r.status_code == 201, r.text
        body = {"autoScaleFormula": "$TargetDedicatedNodes = 0;", "autoScaleEvaluationInterval": "PT5M"}
        r = raw.request("POST", "/pools/a/enableautoscale", body)
        assert r.status_code == 200, r.text
        r = raw.request("POST", "/pools/a/enableautoscale", body)
        assert r.status_code == 503 and r.json()["code"] == "TooManyEnableAutoScaleRequests", r.text
        r = raw.request("POST", "/pools/b/enableautoscale", body)
        assert r.status_code == 200, r.text
    finally:
        s.stop()
