"""Job schedules through azure-batch 15.1.0: create, get, list, exists,
update (PATCH), replace (PUT), disable, enable, terminate and delete, and the
jobs a schedule creates ("{scheduleId}:job-{n}") running real tasks on one
local node with four task slots.

No test waits for a recurrence (one minute at least): recurring schedules are
checked through their first job and their nextRunTime."""
import datetime
import time

import pytest
from azure.batch import models
from azure.batch.models import _models as internal
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from conftest import wait_for

POOL = "schedpool"
SLOTS = 4
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture(scope="module")
def pool(client):
    client.create_pool(models.BatchPoolCreateOptions(
        id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=SLOTS))
    wait_for(lambda: [n for n in client.list_nodes(POOL) if n.state == models.BatchNodeState.IDLE], timeout=20, what="idle node")
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def status(response, *_):
    """A `cls` callback: the operation returns the HTTP status code."""
    return response.http_response.status_code


def code_of(exc):
    return exc.value.error.code


def meta(**kv):
    return [models.BatchMetadataItem(name=k, value=v) for k, v in kv.items()]


def pairs(items):
    return [(m.name, m.value) for m in items or []]


def spec(pool, **kw):
    return models.BatchJobSpecification(pool_info=models.BatchPoolInfo(pool_id=pool), **kw)


def later(**kw):
    """A schedule whose first run is an hour away: it creates no job during a test."""
    return models.BatchJobScheduleConfiguration(do_not_run_until=now() + datetime.timedelta(hours=1), **kw)


@pytest.fixture
def new_schedule(client, pool, uid):
    """Creates job schedules on the module's pool (the first run at once
    unless `schedule` says otherwise) and deletes them, with their jobs,
    afterwards."""
    made = []

    def make(schedule=None, job_spec=None, **kw):
        sid = uid("sched")
        made.append(sid)
        code = client.create_job_schedule(models.BatchJobScheduleCreateOptions(
            id=sid, schedule=schedule or models.BatchJobScheduleConfiguration(),
            job_specification=job_spec or spec(pool), **kw), cls=status)
        assert code == 201
        return sid
    yield make
    for sid in made:
        try:
            client._delete_job_schedule_internal(sid)  # the raw request, without the poller
        except HttpResponseError:
            pass  # already deleted


def gone(fetch):
    """True once `fetch` raises 404."""
    try:
        fetch()
        return False
    except ResourceNotFoundError:
        return True


def jobs_of(client, sid):
    return sorted(j.id for j in client.list_jobs_from_schedule(sid))


def wait_first_job(client, sid, timeout=5):
    """The schedule's first job, once its executionInfo names it."""
    s = wait_for(lambda: (s := client.get_job_schedule(sid)).execution_info.recent_job and s,
                 timeout=timeout, what=f"{sid}'s first job")
    return s


def wait_schedule_state(client, sid, state, timeout=10):
    return wait_for(lambda: (s := client.get_job_schedule(sid)).state == state and s, timeout=timeout, what=f"schedule {state}")


def wait_job_state(client, jid, state, timeout=10):
    return wait_for(lambda: (j := client.get_job(jid)).state == state and j, timeout=timeout, what=f"job {state}")


def wait_completed(client, jid, tid, timeout=15):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


# --- create, get, list, exists --------------------------------------------

def test_create_get_list_exists(client, pool, new_schedule, uid):
    dnru = now() + datetime.timedelta(hours=1)
    dnra = dnru + datetime.timedelta(days=2)
    sid = new_schedule(
        schedule=models.BatchJobScheduleConfiguration(
            do_not_run_until=dnru, do_not_run_after=dnra,
            start_window=datetime.timedelta(minutes=5), recurrence_interval=datetime.timedelta(hours=2)),
        job_spec=spec(pool, priority=42, display_name="spec job", metadata=meta(j="1")),
        display_name="my schedule", metadata=meta(k="v", k2="v2"))
    s = client.get_job_schedule(sid)
    assert s.id == sid and s.display_name == "my schedule"
    assert s.state == models.BatchJobScheduleState.ACTIVE
    assert s.url.endswith(f"/jobschedules/{sid}")
    assert s.etag and s.last_modified and s.creation_time and s.state_transition_time
    assert abs(s.creation_time - now()) < datetime.timedelta(seconds=30)
    assert abs(s.schedule.do_not_run_until - dnru) < SECOND
    assert abs(s.schedule.do_not_run_after - dnra) < SECOND
    assert s.schedule.start_window == datetime.timedelta(minutes=5)
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=2)
    assert s.job_specification.pool_info.pool_id == pool
    assert s.job_specification.priority == 42 and s.job_specification.display_name == "spec job"
    assert pairs(s.job_specification.metadata) == [("j", "1")]
    assert pairs(s.metadata) == [("k", "v"), ("k2", "v2")]
    assert abs(s.execution_info.next_run_time - dnru) < SECOND, "the first run is at doNotRunUntil"
    assert s.execution_info.recent_job is None and s.execution_info.end_time is None
    time.sleep(1)
    assert jobs_of(client, sid) == [], "no job before doNotRunUntil"

    assert client.job_schedule_exists(sid) is True
    # The 15.x SDK's error policy turns the 404 into an exception.
    with pytest.raises(ResourceNotFoundError):
        client.job_schedule_exists(uid("nosched"))
    with pytest.raises(ResourceNotFoundError) as e:
        client.get_job_schedule(uid("nosched"))
    assert code_of(e) == "JobScheduleNotFound"

    other = new_schedule(schedule=later())
    listed = {x.id for x in client.list_job_schedules()}
    assert {sid, other} <= listed
    assert [x.id for x in client.list_job_schedules(filter=f"id eq '{sid}'")] == [sid]
    assert [x.id for x in client.list_job_schedules(filter=f"id eq '{other}'")] == [other]

    # Ids are case-insensitive.
    with pytest.raises(ResourceExistsError) as e:
        client.create_job_schedule(models.BatchJobScheduleCreateOptions(
            id=sid.upper(), schedule=later(), job_specification=spec(pool)))
    assert e.value.status_code == 409 and code_of(e) == "JobScheduleExists"
    assert client.get_job_schedule(sid).display_name == "my schedule", "the original is untouched"


def test_create_validation(client, pool, uid):
    def refused(options):
        with pytest.raises(HttpResponseError) as e:
            client.create_job_schedule(options)
        with pytest.raises(ResourceNotFoundError):
            client.get_job_schedule(options.id)
        return e

    for too_short in (dict(recurrence_interval=datetime.timedelta(seconds=30)),
                      dict(start_window=datetime.timedelta(seconds=59))):
        e = refused(models.BatchJobScheduleCreateOptions(
            id=uid("sched"), schedule=later(**too_short), job_specification=spec(pool)))
        assert e.value.status_code == 400 and code_of(e) == "InvalidPropertyValue", too_short
    # The SDK sends what it is given: here no schedule, then no jobSpecification.
    e = refused(models.BatchJobScheduleCreateOptions(id=uid("sched"), job_specification=spec(pool)))
    assert e.value.status_code == 400 and code_of(e) == "MissingRequiredProperty"
    e = refused(models.BatchJobScheduleCreateOptions(id=uid("sched"), schedule=later()))
    assert e.value.status_code == 400 and code_of(e) == "MissingRequiredProperty"
    # One minute exactly is accepted.
    sid = uid("sched")
    client.create_job_schedule(models.BatchJobScheduleCreateOptions(
        id=sid, schedule=later(recurrence_interval=MINUTE, start_window=MINUTE), job_specification=spec(pool)))
    try:
        s = client.get_job_schedule(sid)
        assert s.schedule.recurrence_interval == MINUTE and s.schedule.start_window == MINUTE
    finally:
        client.begin_delete_job_schedule(sid, polling_interval=0.1).result()
    assert gone(lambda: client.get_job_schedule(sid))


# --- the jobs a schedule creates ------------------------------------------

def test_first_job_created_at_once(client, pool, new_schedule):
    sid = new_schedule(job_spec=spec(pool, priority=123, display_name="from schedule",
                                     metadata=meta(origin="schedule"), max_parallel_tasks=2))
    s = wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    assert s.execution_info.recent_job.id == jid
    assert s.execution_info.recent_job.url.endswith(f"/jobs/{jid}")
    assert s.state == models.BatchJobScheduleState.ACTIVE, "its job is still active"
    assert s.execution_info.end_time is None
    assert jobs_of(client, sid) == [jid]
    job = client.get_job(jid)
    assert job.state == models.BatchJobState.ACTIVE
    assert job.pool_info.pool_id == pool
    assert job.priority == 123 and job.display_name == "from schedule" and job.max_parallel_tasks == 2
    assert pairs(job.metadata) == [("origin", "schedule")]
    assert job.creation_time >= s.creation_time - SECOND
    assert job.creation_time - s.creation_time < datetime.timedelta(seconds=5)
    assert jid in {j.id for j in client.list_jobs(filter=f"id eq '{jid}'")}
    time.sleep(1.5)
    assert jobs_of(client, sid) == [jid], "a schedule without recurrence creates one job"


def test_do_not_run_until_delays_the_first_job(client, pool, new_schedule):
    dnru = now() + datetime.timedelta(seconds=3)
    sid = new_schedule(schedule=models.BatchJobScheduleConfiguration(do_not_run_until=dnru))
    s = client.get_job_schedule(sid)
    assert abs(s.execution_info.next_run_time - dnru) < SECOND
    assert s.execution_info.recent_job is None
    checked = 0
    while now() < dnru - SECOND:
        assert jobs_of(client, sid) == [], "no job before doNotRunUntil"
        checked += 1
        time.sleep(0.2)
    assert checked, "the test itself was too slow to look before doNotRunUntil"
    jobs = wait_for(lambda: jobs_of(client, sid), timeout=8, what="the job after doNotRunUntil")
    jid = f"{sid}:job-1"
    assert jobs == [jid]
    job = client.get_job(jid)
    assert job.creation_time >= dnru - SECOND
    assert job.creation_time - dnru < datetime.timedelta(seconds=4)
    assert client.get_job_schedule(sid).execution_info.recent_job.id == jid


def test_one_off_schedule_with_an_empty_terminatejob_job_completes_at_once(client, pool, new_schedule):
    # A job with no tasks has all its tasks complete: it ends at once, and
    # the one-off schedule with it.
    sid = new_schedule(job_spec=spec(pool, all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB))
    wait_first_job(client, sid)
    job = wait_job_state(client, f"{sid}:job-1", models.BatchJobState.COMPLETED, timeout=5)
    assert job.execution_info.termination_reason == "AllTasksComplete"
    wait_schedule_state(client, sid, models.BatchJobScheduleState.COMPLETED)


def test_one_off_schedule_completes_with_its_job(client, pool, new_schedule):
    sid = new_schedule(job_spec=spec(pool, all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB,
                                     job_manager_task=models.BatchJobManagerTask(id="t", command_line="/bin/true",
                                                                                 kill_job_on_completion=False)))
    wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    t = wait_completed(client, jid, "t")
    assert t.execution_info.exit_code == 0
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "AllTasksComplete"
    s = wait_schedule_state(client, sid, models.BatchJobScheduleState.COMPLETED)
    assert s.execution_info.end_time is not None
    assert s.execution_info.end_time >= job.execution_info.end_time - SECOND
    time.sleep(1.5)
    assert jobs_of(client, sid) == [jid], "no second job"
    s = client.get_job_schedule(sid)
    assert s.state == models.BatchJobScheduleState.COMPLETED and s.execution_info.recent_job.id == jid


def test_recurring_schedule(client, pool, new_schedule):
    sid = new_schedule(schedule=models.BatchJobScheduleConfiguration(recurrence_interval=MINUTE))
    s = wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    assert s.execution_info.recent_job.id == jid
    assert abs(s.execution_info.next_run_time - (s.creation_time + MINUTE)) < datetime.timedelta(seconds=3)
    assert s.execution_info.next_run_time - now() > datetime.timedelta(seconds=45)
    assert jobs_of(client, sid) == [jid]
    # The job ending does not end a recurring schedule, nor start the next job early.
    client.begin_terminate_job(jid, internal.BatchJobTerminateOptions(termination_reason="done"), polling_interval=0.1).result()
    assert client.get_job(jid).state == models.BatchJobState.COMPLETED
    time.sleep(1.5)
    s = client.get_job_schedule(sid)
    assert s.state == models.BatchJobScheduleState.ACTIVE and s.execution_info.end_time is None
    assert abs(s.execution_info.next_run_time - (s.creation_time + MINUTE)) < datetime.timedelta(seconds=3)
    assert jobs_of(client, sid) == [jid]


def test_task_of_a_schedule_job(client, pool, new_schedule):
    sid = new_schedule()
    wait_first_job(client, sid)
    jid, tid = f"{sid}:job-1", "where"
    client.create_task(jid, models.BatchTaskCreateOptions(
        id=tid, command_line="/bin/sh -c 'echo $AZ_BATCH_TASK_DIR; echo $AZ_BATCH_JOB_ID'"))
    t = wait_completed(client, jid, tid)
    assert t.execution_info.exit_code == 0
    assert t.node_info.pool_id == pool
    assert t.node_info.task_root_directory == f"workitems/{sid}/job-1/{tid}"
    out = b"".join(client.download_task_file(jid, tid, "stdout.txt")).decode().splitlines()
    assert out[0].endswith(f"workitems/{sid}/job-1/{tid}")
    assert out[1] == jid


# --- disable, enable, update, replace -------------------------------------

def test_disable_and_enable(client, pool, new_schedule):
    sid = new_schedule(schedule=later())
    assert client.disable_job_schedule(sid, cls=status) == 204
    s = client.get_job_schedule(sid)
    assert s.state == models.BatchJobScheduleState.DISABLED
    assert s.previous_state == models.BatchJobScheduleState.ACTIVE and s.previous_state_transition_time
    assert client.enable_job_schedule(sid, cls=status) == 204
    s = client.get_job_schedule(sid)
    assert s.state == models.BatchJobScheduleState.ACTIVE
    assert s.previous_state == models.BatchJobScheduleState.DISABLED

    # A disabled schedule creates no job, even when its time comes.
    dnru = now() + datetime.timedelta(seconds=2)
    sid = new_schedule(schedule=models.BatchJobScheduleConfiguration(do_not_run_until=dnru))
    client.disable_job_schedule(sid)
    time.sleep(max(0.0, (dnru - now()).total_seconds()) + 1.5)
    assert jobs_of(client, sid) == []
    s = client.get_job_schedule(sid)
    assert s.state == models.BatchJobScheduleState.DISABLED and s.execution_info.recent_job is None


def test_update_changes_only_what_is_given(client, pool, new_schedule):
    sid = new_schedule(schedule=later(recurrence_interval=datetime.timedelta(hours=2)),
                       job_spec=spec(pool, priority=10), metadata=meta(a="1"))
    before = client.get_job_schedule(sid)
    client.update_job_schedule(sid, models.BatchJobScheduleUpdateOptions(metadata=meta(b="2")))
    s = client.get_job_schedule(sid)
    assert pairs(s.metadata) == [("b", "2")]
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=2)
    assert s.schedule.do_not_run_until == before.schedule.do_not_run_until
    assert s.job_specification.priority == 10 and s.job_specification.pool_info.pool_id == pool
    assert s.etag != before.etag and s.last_modified >= before.last_modified

    client.update_job_schedule(sid, models.BatchJobScheduleUpdateOptions(
        job_specification=spec(pool, priority=77, display_name="patched")))
    s = client.get_job_schedule(sid)
    assert s.job_specification.priority == 77 and s.job_specification.display_name == "patched"
    assert pairs(s.metadata) == [("b", "2")], "metadata kept"
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=2), "schedule kept"


def test_replace_replaces_everything(client, pool, new_schedule):
    sid = new_schedule(schedule=later(recurrence_interval=datetime.timedelta(hours=2)),
                       job_spec=spec(pool, priority=10, display_name="old"), metadata=meta(a="1"))
    dnru = now() + datetime.timedelta(hours=3)
    client.replace_job_schedule(sid, models.BatchJobSchedule(
        schedule=models.BatchJobScheduleConfiguration(do_not_run_until=dnru, recurrence_interval=datetime.timedelta(hours=4)),
        job_specification=spec(pool, priority=20)))
    s = client.get_job_schedule(sid)
    assert not s.metadata, "absent metadata is removed"
    assert s.schedule.recurrence_interval == datetime.timedelta(hours=4)
    assert abs(s.schedule.do_not_run_until - dnru) < SECOND
    assert abs(s.execution_info.next_run_time - dnru) < SECOND, "the next run follows the new schedule"
    assert s.job_specification.priority == 20
    assert s.job_specification.display_name is None
    # PUT needs both.
    for partial in (models.BatchJobSchedule(schedule=later()), models.BatchJobSchedule(job_specification=spec(pool))):
        with pytest.raises(HttpResponseError) as e:
            client.replace_job_schedule(sid, partial)
        assert e.value.status_code == 400 and code_of(e) == "MissingRequiredProperty"
    assert client.get_job_schedule(sid).job_specification.priority == 20, "unchanged by the refused requests"
    with pytest.raises(ResourceNotFoundError) as e:
        client.replace_job_schedule(sid + "-missing", models.BatchJobSchedule(schedule=later(), job_specification=spec(pool)))
    assert code_of(e) == "JobScheduleNotFound"


# --- terminate and delete -------------------------------------------------

def test_terminate(client, pool, new_schedule):
    sid = new_schedule(schedule=models.BatchJobScheduleConfiguration(recurrence_interval=MINUTE))
    wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    assert client.get_job(jid).state == models.BatchJobState.ACTIVE
    assert client._terminate_job_schedule_internal(sid, cls=status) == 202
    assert client.get_job_schedule(sid).state in (models.BatchJobScheduleState.TERMINATING, models.BatchJobScheduleState.COMPLETED)
    s = wait_schedule_state(client, sid, models.BatchJobScheduleState.COMPLETED)
    assert s.execution_info.end_time is not None
    wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    with pytest.raises(HttpResponseError) as e:
        client.disable_job_schedule(sid)
    assert e.value.status_code == 409 and code_of(e) == "JobScheduleCompleted"
    assert client.get_job_schedule(sid).state == models.BatchJobScheduleState.COMPLETED
    assert jobs_of(client, sid) == [jid]

    # The SDK's poller waits until the schedule is no longer terminating.
    other = new_schedule(schedule=later())
    client.begin_terminate_job_schedule(other, polling_interval=0.1).result()
    s = client.get_job_schedule(other)
    assert s.state == models.BatchJobScheduleState.COMPLETED and s.execution_info.end_time is not None
    assert jobs_of(client, other) == []


def test_delete_removes_schedule_and_jobs(client, pool, new_schedule):
    sid = new_schedule()
    wait_first_job(client, sid)
    jid = f"{sid}:job-1"
    client.create_task(jid, models.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_completed(client, jid, "t")
    assert client._delete_job_schedule_internal(sid, cls=status) == 202
    try:
        assert client.get_job_schedule(sid).state == models.BatchJobScheduleState.DELETING
    except ResourceNotFoundError:
        pass  # already gone
    wait_for(lambda: gone(lambda: client.get_job_schedule(sid)), timeout=10, what="schedule deleted")
    wait_for(lambda: gone(lambda: client.get_job(jid)), timeout=10, what="its job deleted")
    with pytest.raises(ResourceNotFoundError):
        client.job_schedule_exists(sid)
    assert sid not in {x.id for x in client.list_job_schedules()}
    assert list(client.list_job_schedules(filter=f"id eq '{sid}'")) == []

    # The SDK's poller waits until it is gone.
    other = new_schedule(schedule=later())
    client.begin_delete_job_schedule(other, polling_interval=0.1).result()
    assert gone(lambda: client.get_job_schedule(other))
