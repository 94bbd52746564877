"""Job schedules through azure-batch 14.2.0: add, get, list, exists, patch,
update, disable, enable, terminate, delete, and the jobs a schedule creates
("{scheduleId}:job-{n}") running tasks on one local node with four slots."""
import datetime
import time

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import wait_for

POOL = "schedpool14"
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


@pytest.fixture(scope="module")
def pool(client):
    client.pool.add(models.PoolAddParameter(id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=4))
    wait_for(lambda: [n for n in client.compute_node.list(POOL) if n.state == models.ComputeNodeState.idle], timeout=20, what="idle node")
    yield POOL
    client.pool.delete(POOL)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def err(e):
    return e.value.error.code


def meta(**kv):
    return [models.MetadataItem(name=k, value=v) for k, v in kv.items()]


def pairs(items):
    return [(m.name, m.value) for m in items or []]


def spec(pool, **kw):
    return models.JobSpecification(pool_info=models.PoolInformation(pool_id=pool), **kw)


def later(**kw):
    """A schedule whose first run is an hour away: it creates no job during a test."""
    return models.Schedule(do_not_run_until=now() + datetime.timedelta(hours=1), **kw)


@pytest.fixture
def new_schedule(client, pool, uid):
    """Adds job schedules on the module's pool (the first run at once unless
    `schedule` says otherwise) and deletes them, with their jobs, afterwards."""
    made = []

    def make(schedule=None, job_spec=None, **kw):
        sid = uid("sched14")
        made.append(sid)
        r = client.job_schedule.add(models.JobScheduleAddParameter(
            id=sid, schedule=schedule or models.Schedule(), job_specification=job_spec or spec(pool), **kw), raw=True)
        assert r.response.status_code == 201
        return sid
    yield make
    for sid in made:
        try:
            client.job_schedule.delete(sid)
        except models.BatchErrorException:
            pass  # already deleted


def gone(fetch, code):
    try:
        fetch()
        return False
    except models.BatchErrorException as e:
        return e.error.code == code


def jobs_of(client, sid):
    return sorted(j.id for j in client.job.list_from_job_schedule(sid))


def wait_first_job(client, sid, timeout=5):
    return wait_for(lambda: (s := client.job_schedule.get(sid)).execution_info.recent_job and s,
                    timeout=timeout, what=f"{sid}'s first job")


def wait_schedule_state(client, sid, state, timeout=10):
    return wait_for(lambda: (s := client.job_schedule.get(sid)).state == state and s, timeout=timeout, what=f"schedule {state}")


def wait_job_state(client, jid, state, timeout=10):
    return wait_for(lambda: (j := client.job.get(jid)).state == state and j, timeout=timeout, what=f"job {state}")


def test_schedule_lifecycle(client, pool, new_schedule, uid):
    dnru = now() + datetime.timedelta(hours=1)
    sid = new_schedule(
        schedule=models.Schedule(do_not_run_until=dnru, start_window=datetime.timedelta(minutes=5),
                                 recurrence_interval=datetime.timedelta(hours=2)),
        job_spec=spec(pool, priority=7, display_name="spec14"),
        display_name="schedule 14", metadata=meta(a="1"))
    s = client.job_schedule.get(sid)
    assert s.id == sid and s.display_name == "schedule 14"
    assert s.state == models.JobScheduleState.active
    assert s.url.endswith(f"/jobschedules/{sid}") and s.e_tag and s.creation_time
    assert abs(s.schedule.do_not_run_until - dnru) < SECOND
    assert s.schedule.start_window == datetime.timedelta(minutes=5)
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=2)
    assert s.job_specification.pool_info.pool_id == pool
    assert s.job_specification.priority == 7 and s.job_specification.display_name == "spec14"
    assert pairs(s.metadata) == [("a", "1")]
    assert abs(s.execution_info.next_run_time - dnru) < SECOND
    assert s.execution_info.recent_job is None

    assert client.job_schedule.exists(sid) is True
    assert client.job_schedule.exists(uid("nosched14")) is False
    with pytest.raises(models.BatchErrorException) as e:
        client.job_schedule.get(uid("nosched14"))
    assert err(e) == "JobScheduleNotFound" and e.value.response.status_code == 404
    with pytest.raises(models.BatchErrorException) as e:
        client.job_schedule.add(models.JobScheduleAddParameter(id=sid.upper(), schedule=later(), job_specification=spec(pool)))
    assert err(e) == "JobScheduleExists" and e.value.response.status_code == 409
    assert sid in {x.id for x in client.job_schedule.list()}
    listed = client.job_schedule.list(models.JobScheduleListOptions(filter=f"id eq '{sid}'"))
    assert [x.id for x in listed] == [sid]

    # patch changes only what it is given.
    client.job_schedule.patch(sid, models.JobSchedulePatchParameter(metadata=meta(b="2")))
    s = client.job_schedule.get(sid)
    assert pairs(s.metadata) == [("b", "2")]
    assert s.job_specification.priority == 7
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=2)
    # update replaces everything; absent metadata is removed.
    client.job_schedule.update(sid, models.JobScheduleUpdateParameter(
        schedule=later(recurrence_interval=datetime.timedelta(hours=4)), job_specification=spec(pool, priority=9)))
    s = client.job_schedule.get(sid)
    assert not s.metadata
    assert s.job_specification.priority == 9 and s.job_specification.display_name is None
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=4)

    assert client.job_schedule.disable(sid, raw=True).response.status_code == 204
    s = client.job_schedule.get(sid)
    assert s.state == models.JobScheduleState.disabled and s.previous_state == models.JobScheduleState.active
    assert client.job_schedule.enable(sid, raw=True).response.status_code == 204
    assert client.job_schedule.get(sid).state == models.JobScheduleState.active

    assert client.job_schedule.terminate(sid, raw=True).response.status_code == 202
    s = wait_schedule_state(client, sid, models.JobScheduleState.completed)
    assert s.execution_info.end_time is not None
    with pytest.raises(models.BatchErrorException) as e:
        client.job_schedule.disable(sid)
    assert err(e) == "JobScheduleCompleted" and e.value.response.status_code == 409

    assert client.job_schedule.delete(sid, raw=True).response.status_code == 202
    wait_for(lambda: gone(lambda: client.job_schedule.get(sid), "JobScheduleNotFound"), timeout=10, what="schedule deleted")
    assert client.job_schedule.exists(sid) is False


def test_validation(client, pool, uid):
    def refused(schedule, job_spec):
        sid = uid("sched14")
        with pytest.raises(models.BatchErrorException) as e:
            client.job_schedule.add(models.JobScheduleAddParameter(id=sid, schedule=schedule, job_specification=job_spec))
        assert client.job_schedule.exists(sid) is False
        return e
    e = refused(later(recurrence_interval=datetime.timedelta(seconds=30)), spec(pool))
    assert err(e) == "InvalidPropertyValue" and e.value.response.status_code == 400
    e = refused(later(start_window=datetime.timedelta(seconds=10)), spec(pool))
    assert err(e) == "InvalidPropertyValue" and e.value.response.status_code == 400


def test_one_off_schedule_runs_a_task_and_completes(client, pool, new_schedule):
    # The task is the job's manager: with terminatejob, a job without tasks
    # would end at once (all its tasks count as complete).
    tid = "where"
    sid = new_schedule(job_spec=spec(pool, priority=50, metadata=meta(origin="schedule"),
                                     on_all_tasks_complete=models.OnAllTasksComplete.terminate_job,
                                     job_manager_task=models.JobManagerTask(
                                         id=tid, command_line="/bin/sh -c 'echo $AZ_BATCH_TASK_DIR'",
                                         kill_job_on_completion=False)))
    s = wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    assert s.execution_info.recent_job.id == jid
    assert s.execution_info.recent_job.url.endswith(f"/jobs/{jid}")
    assert jobs_of(client, sid) == [jid]
    job = client.job.get(jid)
    assert job.pool_info.pool_id == pool and job.priority == 50
    assert pairs(job.metadata) == [("origin", "schedule")]
    t = wait_for(lambda: (t := client.task.get(jid, tid)).state == models.TaskState.completed and t, what="task completed")
    assert t.execution_info.exit_code == 0
    out = b"".join(client.file.get_from_task(jid, tid, "stdout.txt")).decode().strip()
    assert out.endswith(f"workitems/{sid}/job-1/{tid}")
    job = wait_job_state(client, jid, models.JobState.completed)
    assert job.execution_info.terminate_reason == "AllTasksComplete"
    s = wait_schedule_state(client, sid, models.JobScheduleState.completed)
    assert s.execution_info.end_time is not None
    time.sleep(1.5)
    assert jobs_of(client, sid) == [jid], "no second job"

    # Deleting the schedule deletes its job.
    client.job_schedule.delete(sid)
    wait_for(lambda: gone(lambda: client.job_schedule.get(sid), "JobScheduleNotFound"), timeout=10, what="schedule deleted")
    wait_for(lambda: gone(lambda: client.job.get(jid), "JobNotFound"), timeout=10, what="its job deleted")


def test_do_not_run_until(client, pool, new_schedule):
    dnru = now() + datetime.timedelta(seconds=3)
    sid = new_schedule(schedule=models.Schedule(do_not_run_until=dnru))
    s = client.job_schedule.get(sid)
    assert abs(s.execution_info.next_run_time - dnru) < SECOND
    assert s.execution_info.recent_job is None
    checked = 0
    while now() < dnru - SECOND:
        assert jobs_of(client, sid) == [], "no job before doNotRunUntil"
        checked += 1
        time.sleep(0.2)
    assert checked, "the test itself was too slow to look before doNotRunUntil"
    jobs = wait_for(lambda: jobs_of(client, sid), timeout=8, what="the job after doNotRunUntil")
    assert jobs == [f"{sid}:job-1"]
    assert client.job.get(jobs[0]).creation_time >= dnru - SECOND


def test_recurring_schedule_terminated(client, pool, new_schedule):
    sid = new_schedule(schedule=models.Schedule(recurrence_interval=MINUTE))
    s = wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    assert s.execution_info.recent_job.id == jid
    assert abs(s.execution_info.next_run_time - (s.creation_time + MINUTE)) < datetime.timedelta(seconds=3)
    assert jobs_of(client, sid) == [jid]
    assert client.job.get(jid).state == models.JobState.active
    client.job_schedule.terminate(sid)
    s = wait_schedule_state(client, sid, models.JobScheduleState.completed)
    assert s.execution_info.end_time is not None
    wait_job_state(client, jid, models.JobState.completed)
    assert jobs_of(client, sid) == [jid]
