"""Auto pools through azure-batch 15.1.0: a job's `poolInfo.autoPoolSpecification`
makes a pool for the job (lifetime `job`) or for a job schedule's jobs
(lifetime `jobschedule`); its tasks run on it, and the pool goes when its
lifetime ends unless `keepAlive`."""
import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from conftest import end_job, wait_for
from rawclient import Raw


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key)


def spec(lifetime, prefix=None, keep_alive=None, nodes=1):
    return models.BatchAutoPoolSpecification(
        auto_pool_id_prefix=prefix, pool_lifetime_option=lifetime, keep_alive=keep_alive,
        pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=nodes, task_slots_per_node=2))


def pool_gone(client, pool_id):
    try:
        return client.get_pool(pool_id).state == models.BatchPoolState.DELETING
    except ResourceNotFoundError:
        return True


def run_task(client, job_id, task_id):
    client.create_task(job_id, models.BatchTaskCreateOptions(id=task_id, command_line="/bin/sh -c 'echo on $AZ_BATCH_POOL_ID'"))
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=60, what=f"task {task_id} to complete")


def test_a_job_runs_on_its_own_auto_pool_which_goes_with_the_job(client, uid):
    jid = uid("auto")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(
        auto_pool_specification=spec(models.BatchPoolLifetimeOption.JOB, prefix="ob"))))
    job = client.get_job(jid)
    pool_id = job.execution_info.pool_id
    assert pool_id and pool_id.startswith("ob_") and len(pool_id) == 3 + 36, pool_id
    # poolInfo stays as sent.
    assert job.pool_info.pool_id is None
    assert job.pool_info.auto_pool_specification.auto_pool_id_prefix == "ob"
    pool = client.get_pool(pool_id)
    assert (pool.vm_size, pool.target_dedicated_nodes, pool.task_slots_per_node) == ("standard_d2s_v3", 1, 2)

    t = run_task(client, jid, "t1")
    assert t.execution_info.exit_code == 0
    assert t.node_info.pool_id == pool_id
    assert any(n.id == t.node_info.node_id for n in client.list_nodes(pool_id))

    end_job(client, jid)
    wait_for(lambda: pool_gone(client, pool_id), timeout=30, what="the auto pool to go with its job")
    wait_for(lambda: not any(p.id == pool_id for p in client.list_pools()), timeout=30, what="the auto pool's nodes to leave")


def test_keep_alive_keeps_the_pool_after_the_job(client, raw, uid):
    jid = uid("keep")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(
        auto_pool_specification=spec(models.BatchPoolLifetimeOption.JOB, keep_alive=True, nodes=0))))
    pool_id = client.get_job(jid).execution_info.pool_id
    end_job(client, jid)
    wait_for(lambda: client.get_job(jid).state == models.BatchJobState.COMPLETED, timeout=30, what="the job to complete")
    assert client.get_pool(pool_id).state == models.BatchPoolState.ACTIVE
    assert raw.request("DELETE", f"/pools/{pool_id}").status_code == 202


def test_a_schedule_s_jobs_share_its_pool_until_the_schedule_goes(client, raw, uid):
    sid = uid("autosched")
    client.create_job_schedule(models.BatchJobScheduleCreateOptions(
        id=sid, schedule=models.BatchJobScheduleConfiguration(recurrence_interval="PT1H"),
        job_specification=models.BatchJobSpecification(pool_info=models.BatchPoolInfo(
            auto_pool_specification=spec(models.BatchPoolLifetimeOption.JOB_SCHEDULE, prefix="sched")))))
    first = wait_for(lambda: (r := client.get_job_schedule(sid).execution_info.recent_job) and r.id,
                     timeout=20, what="the schedule's first job")
    pool_id = client.get_job(first).execution_info.pool_id
    assert pool_id.startswith("sched_"), pool_id
    assert run_task(client, first, "t1").node_info.pool_id == pool_id
    # The job ends; the schedule's pool stays for its next jobs.
    end_job(client, first)
    wait_for(lambda: client.get_job(first).state == models.BatchJobState.COMPLETED, timeout=30, what="the job to complete")
    assert client.get_pool(pool_id).state == models.BatchPoolState.ACTIVE
    # The schedule goes: so does its pool.
    assert raw.request("DELETE", f"/jobschedules/{sid}").status_code == 202
    wait_for(lambda: pool_gone(client, pool_id), timeout=30, what="the schedule's pool to go with it")


def test_a_schedule_with_job_lifetime_gives_each_job_its_own_pool(client, raw, uid):
    sid = uid("jobsched")
    client.create_job_schedule(models.BatchJobScheduleCreateOptions(
        id=sid, schedule=models.BatchJobScheduleConfiguration(recurrence_interval="PT1H"),
        job_specification=models.BatchJobSpecification(pool_info=models.BatchPoolInfo(
            auto_pool_specification=spec(models.BatchPoolLifetimeOption.JOB, nodes=0)))))
    first = wait_for(lambda: (r := client.get_job_schedule(sid).execution_info.recent_job) and r.id,
                     timeout=20, what="the schedule's first job")
    pool_id = client.get_job(first).execution_info.pool_id
    assert client.get_pool(pool_id).state == models.BatchPoolState.ACTIVE
    end_job(client, first)
    wait_for(lambda: pool_gone(client, pool_id), timeout=30, what="the job's pool to go with the job")
    assert raw.request("DELETE", f"/jobschedules/{sid}").status_code == 202


def test_auto_pool_specifications_are_checked(client, raw, uid):
    pools_before = {p.id for p in client.list_pools()}
    cases = [
        # The jobSchedule lifetime needs a schedule.
        ({"poolLifetimeOption": "jobschedule", "pool": {"vmSize": "standard_d2s_v3"}}, 400, "InvalidPropertyValue"),
        ({"pool": {"vmSize": "standard_d2s_v3"}}, 400, "MissingRequiredProperty"),
        ({"poolLifetimeOption": "job"}, 400, "MissingRequiredProperty"),
        ({"poolLifetimeOption": "job", "autoPoolIdPrefix": "x" * 21, "pool": {"vmSize": "standard_d2s_v3"}}, 400, "InvalidPropertyValue"),
        # The pool is checked as a pool add is.
        ({"poolLifetimeOption": "job", "pool": {"vmSize": "standard_d2s_v3", "taskSlotsPerNode": 0}}, 400, None),
    ]
    for auto, status, code in cases:
        jid = uid("bad")
        r = raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"autoPoolSpecification": auto}})
        assert r.status_code == status, (auto, r.text)
        if code:
            assert r.json()["code"] == code, (auto, r.text)
        assert raw.request("GET", f"/jobs/{jid}").status_code == 404, "no job is left behind"
    assert not ({p.id for p in client.list_pools()} - pools_before), "no pool is left behind"

    # Only keepAlive of an existing job's auto pool may change.
    jid = uid("upd")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(
        auto_pool_specification=spec(models.BatchPoolLifetimeOption.JOB, nodes=0))))
    try:
        # The pool of a job changes only while the job is disabled.
        assert raw.request("POST", f"/jobs/{jid}/disable", {"disableTasks": "requeue"}).status_code == 202
        wait_for(lambda: raw.request("GET", f"/jobs/{jid}").json()["state"] == "disabled", timeout=20, what="the job disabled")
        auto = raw.request("GET", f"/jobs/{jid}").json()["poolInfo"]["autoPoolSpecification"]
        r = raw.request("PATCH", f"/jobs/{jid}", {"poolInfo": {"autoPoolSpecification": dict(auto, autoPoolIdPrefix="other")}})
        assert r.status_code == 400 and r.json()["code"] == "InvalidPropertyValue", r.text
        r = raw.request("PATCH", f"/jobs/{jid}", {"poolInfo": {"autoPoolSpecification": dict(auto, keepAlive=True)}})
        assert r.status_code == 200, r.text
        assert raw.request("GET", f"/jobs/{jid}").json()["poolInfo"]["autoPoolSpecification"]["keepAlive"] is True
        pool_id = raw.request("GET", f"/jobs/{jid}").json()["executionInfo"]["poolId"]
    finally:
        end_job(client, jid)
    # Kept alive now: the pool outlives the job.
    wait_for(lambda: client.get_job(jid).state == models.BatchJobState.COMPLETED, timeout=30, what="the job to complete")
    assert client.get_pool(pool_id).state == models.BatchPoolState.ACTIVE
    assert raw.request("DELETE", f"/pools/{pool_id}").status_code == 202
