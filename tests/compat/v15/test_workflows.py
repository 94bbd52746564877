"""Task dependencies, exit conditions and the job lifecycle through
azure-batch 15.1.0: dependency chains, fan-out/fan-in, id ranges, satisfy and
block, exit-condition job actions, onAllTasksComplete, job constraints,
maxParallelTasks and job priority.

Every test runs real processes on one local node with four task slots."""
import datetime
import time

import pytest
from azure.batch import BatchClient, models
from azure.batch.models import _models as internal
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from conftest import end_job, wait_for

POOL = "wfpool"
SLOTS = 4


@pytest.fixture(scope="module")
def pool(client):
    client.create_pool(models.BatchPoolCreateOptions(
        id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=SLOTS))
    wait_for(lambda: [n for n in client.list_nodes(POOL) if n.state == models.BatchNodeState.IDLE], timeout=20, what="idle node")
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


@pytest.fixture
def new_job(client, pool, uid):
    """Creates jobs on the module's pool; terminates them afterwards so that
    nothing a test leaves running holds on to the node's slots."""
    made = []

    def make(**kw):
        jid = uid("wf")
        client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pool), **kw))
        made.append(jid)
        return jid
    yield make
    for jid in made:
        end_job(client, jid)


def task(tid, command_line, **kw):
    return models.BatchTaskCreateOptions(id=tid, command_line=command_line, **kw)


def add(client, jid, *tasks):
    result = client.create_task_collection(jid, models.BatchTaskGroup(task_values=list(tasks)))
    assert all(r.status == models.BatchTaskAddStatus.SUCCESS for r in result.result_values), result


def after(*task_ids):
    return models.BatchTaskDependencies(task_ids=list(task_ids))


def wait_completed(client, jid, tid, timeout=20):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def wait_job_state(client, jid, state, timeout=20):
    return wait_for(lambda: (j := client.get_job(jid)).state == state and j, timeout=timeout, what=f"job {state}")


def never_started(t):
    return t.state == models.BatchTaskState.ACTIVE and (t.execution_info is None or t.execution_info.start_time is None)


def succeeded(t):
    return t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS and t.execution_info.exit_code == 0


def exits(code):
    return f"/bin/sh -c 'exit {code}'"


SHORT = "/bin/sh -c 'sleep 0.3'"


# --- dependencies ---------------------------------------------------------

def test_chain_runs_in_order(client, new_job):
    jid = new_job(uses_task_dependencies=True)
    add(client, jid,
        task("t1", SHORT),
        task("t2", SHORT, depends_on=after("t1")),
        task("t3", SHORT, depends_on=after("t2")))
    t3 = wait_completed(client, jid, "t3")
    t1, t2 = client.get_task(jid, "t1"), client.get_task(jid, "t2")
    assert all(succeeded(t) for t in (t1, t2, t3))
    assert t2.execution_info.start_time >= t1.execution_info.end_time
    assert t3.execution_info.start_time >= t2.execution_info.end_time
    assert t2.depends_on.task_ids == ["t1"], "the dependencies round-trip"


def test_fan_out_fan_in(client, new_job):
    jid = new_job(uses_task_dependencies=True)
    middles = [f"mid{i}" for i in range(5)]
    add(client, jid,
        task("root", SHORT),
        *[task(m, SHORT, depends_on=after("root")) for m in middles],
        task("sink", "/bin/true", depends_on=after(*middles)))
    sink = wait_completed(client, jid, "sink")
    root = client.get_task(jid, "root")
    mids = [client.get_task(jid, m) for m in middles]
    assert succeeded(sink) and succeeded(root) and all(succeeded(m) for m in mids)
    assert all(m.execution_info.start_time >= root.execution_info.end_time for m in mids)
    assert sink.execution_info.start_time >= max(m.execution_info.end_time for m in mids)


def test_task_id_ranges(client, new_job):
    jid = new_job(uses_task_dependencies=True)
    add(client, jid,
        *[task(str(i), f"/bin/sh -c 'sleep 0.{i}'") for i in range(1, 6)],
        task("after", "/bin/true", depends_on=models.BatchTaskDependencies(task_id_ranges=[models.BatchTaskIdRange(start=1, end=5)])))
    last = wait_completed(client, jid, "after")
    ranged = [client.get_task(jid, str(i)) for i in range(1, 6)]
    assert all(t.state == models.BatchTaskState.COMPLETED and succeeded(t) for t in ranged)
    assert succeeded(last)
    assert last.execution_info.start_time >= max(t.execution_info.end_time for t in ranged)


def test_dependency_added_later(client, new_job):
    """A task may depend on a task that does not exist yet: it waits for it."""
    jid = new_job(uses_task_dependencies=True)
    client.create_task(jid, task("waiter", "/bin/true", depends_on=after("later")))
    time.sleep(1)
    assert never_started(client.get_task(jid, "waiter"))
    client.create_task(jid, task("later", SHORT))
    waiter = wait_completed(client, jid, "waiter")
    later = client.get_task(jid, "later")
    assert succeeded(waiter) and succeeded(later)
    assert waiter.execution_info.start_time >= later.execution_info.end_time


def test_failed_dependency_blocks(client, new_job):
    """A failure blocks dependents by default; so does exit code 0 listed
    with dependencyAction block. A plain success in the same job shows the
    scheduler was running its tasks meanwhile."""
    jid = new_job(uses_task_dependencies=True)
    block_on_zero = models.ExitConditions(exit_codes=[models.ExitCodeMapping(
        code=0, exit_options=models.ExitOptions(dependency_action=models.DependencyAction.BLOCK))])
    add(client, jid,
        task("fails", exits(3)),
        task("after-fails", "/bin/true", depends_on=after("fails")),
        task("zero-blocks", "/bin/true", exit_conditions=block_on_zero),
        task("after-zero", "/bin/true", depends_on=after("zero-blocks")),
        task("ok", "/bin/true"),
        task("after-ok", "/bin/true", depends_on=after("ok")))
    fails = wait_completed(client, jid, "fails")
    assert fails.execution_info.exit_code == 3
    assert fails.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    zero = wait_completed(client, jid, "zero-blocks")
    assert succeeded(zero), "the task itself still succeeded"
    assert succeeded(wait_completed(client, jid, "after-ok"))
    time.sleep(2)
    assert never_started(client.get_task(jid, "after-fails"))
    assert never_started(client.get_task(jid, "after-zero"))


def test_exit_conditions_satisfy_dependents(client, new_job):
    jid = new_job(uses_task_dependencies=True)
    satisfy = models.ExitOptions(dependency_action=models.DependencyAction.SATISFY)
    add(client, jid,
        task("by-code", exits(3), exit_conditions=models.ExitConditions(
            exit_codes=[models.ExitCodeMapping(code=3, exit_options=satisfy)])),
        task("after-code", "/bin/true", depends_on=after("by-code")),
        task("by-range", exits(3), exit_conditions=models.ExitConditions(
            exit_code_ranges=[models.ExitCodeRangeMapping(start=2, end=4, exit_options=satisfy)])),
        task("after-range", "/bin/true", depends_on=after("by-range")))
    for dep, dependent in (("by-code", "after-code"), ("by-range", "after-range")):
        d = wait_completed(client, jid, dependent)
        parent = client.get_task(jid, dep)
        assert parent.execution_info.exit_code == 3
        assert parent.execution_info.result == models.BatchTaskExecutionResult.FAILURE, "satisfy does not make it a success"
        assert succeeded(d)
        assert d.execution_info.start_time >= parent.execution_info.end_time


def test_dependencies_need_the_job_flag(client, new_job):
    jid = new_job()
    with pytest.raises(HttpResponseError) as e:
        client.create_task(jid, task("dep", "/bin/true", depends_on=after("x")))
    assert e.value.status_code == 400 and e.value.error.code == "TaskDependenciesNotSpecifiedOnJob"


# --- exit conditions and the job -----------------------------------------

PERFORM = models.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION


def test_job_action_terminate(client, new_job):
    jid = new_job(task_failure_mode=PERFORM)
    client.create_task(jid, task("sleeper", "/bin/sleep 30"))
    wait_for(lambda: client.get_task(jid, "sleeper").state == models.BatchTaskState.RUNNING, what="sleeper running")
    client.create_task(jid, task("bad", exits(3), exit_conditions=models.ExitConditions(
        default=models.ExitOptions(job_action=models.BatchJobActionKind.TERMINATE))))
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "TaskFailed"
    assert job.execution_info.end_time is not None
    assert client.get_task(jid, "bad").execution_info.exit_code == 3
    sleeper = wait_completed(client, jid, "sleeper", timeout=10)
    assert sleeper.execution_info.failure_info is not None, "the running task was killed"
    assert sleeper.execution_info.end_time - sleeper.execution_info.start_time < datetime.timedelta(seconds=20)


def test_default_job_action_is_terminate(client, new_job):
    """With performexitoptionsjobaction, a non-zero exit without exit
    conditions terminates the job: that is the service's default jobAction."""
    jid = new_job(task_failure_mode=PERFORM)
    client.create_task(jid, task("bad", exits(5)))
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "TaskFailed"
    assert client.get_task(jid, "bad").execution_info.exit_code == 5


def test_job_stays_active(client, new_job):
    """jobAction none on an exit code, or a job whose onTaskFailure is
    noaction (the default): a failed task leaves the job active, and the job
    keeps running new tasks. On a noaction job a task may not name a job
    action at all (400 InvalidPropertyValue, as the service documents)."""
    none_job = new_job(task_failure_mode=PERFORM)
    client.create_task(none_job, task("bad", exits(3), exit_conditions=models.ExitConditions(
        exit_codes=[models.ExitCodeMapping(code=3, exit_options=models.ExitOptions(job_action=models.BatchJobActionKind.NONE))])))
    plain_job = new_job()
    assert client.get_job(plain_job).task_failure_mode == models.BatchTaskFailureMode.NO_ACTION
    with pytest.raises(HttpResponseError) as e:
        client.create_task(plain_job, task("bad", exits(3), exit_conditions=models.ExitConditions(
            default=models.ExitOptions(job_action=models.BatchJobActionKind.TERMINATE))))
    assert e.value.status_code == 400 and e.value.error.code == "InvalidPropertyValue"
    client.create_task(plain_job, task("bad", exits(3)))
    for jid in (none_job, plain_job):
        bad = wait_completed(client, jid, "bad")
        assert bad.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    time.sleep(0.5)
    for jid in (none_job, plain_job):
        client.create_task(jid, task("next", "/bin/true"))
        assert succeeded(wait_completed(client, jid, "next"))
        assert client.get_job(jid).state == models.BatchJobState.ACTIVE


def test_job_action_disable(client, new_job):
    jid = new_job(task_failure_mode=PERFORM)
    client.create_task(jid, task("bad", exits(3), exit_conditions=models.ExitConditions(
        default=models.ExitOptions(job_action=models.BatchJobActionKind.DISABLE))))
    job = wait_job_state(client, jid, models.BatchJobState.DISABLED)
    assert job.execution_info.termination_reason is None
    assert client.get_task(jid, "bad").state == models.BatchTaskState.COMPLETED
    client.begin_enable_job(jid, polling_interval=0.1).result()
    assert client.get_job(jid).state == models.BatchJobState.ACTIVE


# --- job lifecycle --------------------------------------------------------

def test_all_tasks_complete_terminates_job(client, new_job):
    # Set at creation on a job with no tasks: all its tasks count as
    # complete ("if a Job contains no Tasks, then all Tasks are considered
    # complete"), so it ends at once, and takes no tasks afterwards.
    jid = new_job(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB)
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED, timeout=5)
    assert job.execution_info.termination_reason == "AllTasksComplete"
    with pytest.raises(HttpResponseError) as e:
        client.create_task(jid, task("late", "/bin/true"))
    assert e.value.error.code == "JobCompleted"
    # With a job manager task, the job ends once it and the tasks it added are done.
    jid = new_job(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB,
                  job_manager_task=models.BatchJobManagerTask(id="jm", command_line=SHORT, kill_job_on_completion=False))
    add(client, jid, task("a", SHORT), task("b", "/bin/true"))
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "AllTasksComplete"
    assert all(succeeded(client.get_task(jid, t)) for t in ("jm", "a", "b"))
    # The documented pattern: noaction while adding tasks, then an update.
    jid = new_job()
    add(client, jid, task("a", "/bin/sh -c 'sleep 1'"), task("b", SHORT))
    client.update_job(jid, models.BatchJobUpdateOptions(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB))
    assert client.get_job(jid).all_tasks_complete_mode == models.BatchAllTasksCompleteMode.TERMINATE_JOB
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "AllTasksComplete"
    a = client.get_task(jid, "a")
    assert succeeded(a) and job.execution_info.end_time >= a.execution_info.end_time


def test_no_action_job_stays_active_when_tasks_complete(client, new_job):
    jid = new_job()
    add(client, jid, task("a", "/bin/true"))
    wait_completed(client, jid, "a")
    time.sleep(0.5)
    assert client.get_job(jid).state == models.BatchJobState.ACTIVE


def test_job_max_wall_clock_time(client, new_job):
    jid = new_job(constraints=models.BatchJobConstraints(max_wall_clock_time=datetime.timedelta(seconds=2)))
    client.create_task(jid, task("long", "/bin/sleep 30"))
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert job.execution_info.end_time - job.creation_time < datetime.timedelta(seconds=12)
    assert job.execution_info.end_time - job.creation_time >= datetime.timedelta(seconds=2)
    long = wait_completed(client, jid, "long", timeout=10)
    assert long.execution_info.failure_info is not None, "the running task was killed"


def test_max_parallel_tasks(client, new_job):
    jid = new_job(max_parallel_tasks=1)
    assert client.get_job(jid).max_parallel_tasks == 1
    add(client, jid, *[task(f"p{i}", "/bin/sh -c 'sleep 0.5'") for i in range(3)])
    for i in range(3):
        wait_completed(client, jid, f"p{i}")
    runs = sorted((client.get_task(jid, f"p{i}").execution_info for i in range(3)), key=lambda e: e.start_time)
    assert all(e.result == models.BatchTaskExecutionResult.SUCCESS for e in runs)
    for prev, cur in zip(runs, runs[1:]):
        assert cur.start_time >= prev.end_time, "tasks of the job never overlap, though the node has free slots"


def test_priority_orders_jobs_on_a_busy_pool(client, new_job):
    """With every slot taken, tasks of the higher-priority job go first once
    slots free up, even though the lower-priority job's tasks were added first."""
    blocker = new_job()
    add(client, blocker, *[task(f"b{i}", "/bin/sleep 30") for i in range(SLOTS)])
    wait_for(lambda: all(t.state == models.BatchTaskState.RUNNING for t in client.list_tasks(blocker)), what="every slot busy")
    low, high = new_job(priority=-100), new_job(priority=500)
    add(client, low, *[task(f"l{i}", SHORT) for i in range(SLOTS)])
    add(client, high, *[task(f"h{i}", SHORT) for i in range(SLOTS)])
    time.sleep(0.3)
    assert all(never_started(t) for j in (low, high) for t in client.list_tasks(j)), "no slot was free"
    # (15.1.0 cannot send a terminate without a body.)
    client.begin_terminate_job(blocker, internal.BatchJobTerminateOptions(termination_reason="done"), polling_interval=0.1).result()
    wait_for(lambda: all(t.state == models.BatchTaskState.COMPLETED for j in (low, high) for t in client.list_tasks(j)),
             what="all tasks completed")
    high_starts = [t.execution_info.start_time for t in client.list_tasks(high)]
    low_starts = [t.execution_info.start_time for t in client.list_tasks(low)]
    assert max(high_starts) <= min(low_starts)


# --- job manager task --------------------------------------------------------

def test_job_manager_runs_first_alone_and_ends_the_job(client, new_job):
    """The job manager task becomes a task of the job with its id; it starts
    before the job's other tasks, takes the whole node (runExclusive, the
    default), and when it completes the job ends with reason JMComplete
    (killJobOnCompletion, the default): its other tasks that run are killed,
    and those that never started stay active in the completed job."""
    jid = new_job(job_manager_task=models.BatchJobManagerTask(
        id="jm", command_line="/bin/sh -c 'sleep 1'", display_name="manager"))
    add(client, jid, *[task(f"w{i}", "/bin/sleep 30") for i in range(3)])
    jm = wait_completed(client, jid, "jm")
    assert succeeded(jm) and jm.display_name == "manager"
    job = wait_job_state(client, jid, models.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "JMComplete"
    def settled(t):
        return t.state == models.BatchTaskState.COMPLETED or (
            t.state == models.BatchTaskState.ACTIVE and t.execution_info.start_time is None)
    workers = wait_for(lambda: (ws := [t for t in client.list_tasks(jid) if t.id != "jm"]) and all(map(settled, ws)) and ws,
                       what="the other tasks killed or never started")
    assert len(workers) == 3
    for w in workers:
        if w.execution_info.start_time is not None:
            assert w.execution_info.start_time >= jm.execution_info.end_time, "nothing ran beside the manager"


def test_job_manager_that_does_not_end_the_job(client, new_job):
    jid = new_job(job_manager_task=models.BatchJobManagerTask(
        id="jm", command_line="/bin/true", kill_job_on_completion=False, run_exclusive=False))
    assert succeeded(wait_completed(client, jid, "jm"))
    time.sleep(0.5)
    assert client.get_job(jid).state == models.BatchJobState.ACTIVE
    client.create_task(jid, task("after", "/bin/true"))
    assert succeeded(wait_completed(client, jid, "after"))


# --- affinity ------------------------------------------------------------------

def test_affinity_prefers_the_named_node(client, uid):
    """affinityInfo.affinityId (a node's affinityId) sends the task to that
    node while it has room; with `pack`, tasks without affinity would all go
    to the same first node."""
    pid = uid("affpool")
    client.create_pool(models.BatchPoolCreateOptions(
        id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=2, task_slots_per_node=2,
        task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type=models.BatchNodeFillType.PACK)))
    try:
        wait_for(lambda: len([n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE]) == 2,
                 timeout=20, what="two idle nodes")
        nodes = sorted(client.list_nodes(pid), key=lambda n: n.id)
        jid = uid("aff")
        client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
        for target in nodes:
            tid = f"to-{target.id}"
            client.create_task(jid, task(tid, "/bin/true", affinity_info=models.BatchAffinityInfo(affinity_id=target.affinity_id)))
            done = wait_completed(client, jid, tid)
            assert done.node_info.node_id == target.id
            assert done.node_info.affinity_id == target.affinity_id
    finally:
        client.begin_delete_pool(pid, polling_interval=0.2).result()


# --- job preparation and release tasks ------------------------------------------

def read_stdout(client, jid, tid):
    return b"".join(client.download_task_file(jid, tid, "stdout.txt")).decode()


def test_preparation_runs_first_and_release_when_the_job_ends(client, new_job):
    jid = new_job(
        job_preparation_task=models.BatchJobPreparationTask(command_line="/bin/sh -c 'echo ready > marker'"),
        job_release_task=models.BatchJobReleaseTask(command_line="/bin/sh -c 'echo released'"))
    client.create_task(jid, task("t", "/bin/sh -c 'cat $AZ_BATCH_JOB_PREP_WORKING_DIR/marker'"))
    t = wait_completed(client, jid, "t")
    assert succeeded(t) and read_stdout(client, jid, "t").strip() == "ready", "the preparation ran before the task"
    [status] = list(client.list_job_preparation_and_release_task_status(jid))
    assert status.node_id == t.node_info.node_id and status.pool_id == t.node_info.pool_id
    prep = status.job_preparation_task_execution_info
    assert prep.state == models.BatchJobPreparationTaskState.COMPLETED and prep.exit_code == 0
    assert prep.result == models.BatchTaskExecutionResult.SUCCESS
    assert prep.task_root_directory.endswith(f"workitems/{jid}/job-1/jobpreparation")
    assert status.job_release_task_execution_info is None, "the job has not ended"
    client.begin_terminate_job(jid, internal.BatchJobTerminateOptions(termination_reason="done"), polling_interval=0.1).result()

    def released():
        [s] = list(client.list_job_preparation_and_release_task_status(jid))
        r = s.job_release_task_execution_info
        return r if r is not None and r.state == models.BatchJobReleaseTaskState.COMPLETED else None
    r = wait_for(released, timeout=20, what="release task completed")
    assert r.exit_code == 0 and r.result == models.BatchTaskExecutionResult.SUCCESS


def test_failed_preparation_keeps_the_jobs_tasks_off_the_node(client, new_job):
    jid = new_job(job_preparation_task=models.BatchJobPreparationTask(command_line="/bin/sh -c 'exit 4'"))
    client.create_task(jid, task("t", "/bin/true"))

    def prep_failed():
        items = list(client.list_job_preparation_and_release_task_status(jid))
        p = items[0].job_preparation_task_execution_info if items else None
        return p if p is not None and p.state == models.BatchJobPreparationTaskState.COMPLETED else None
    p = wait_for(prep_failed, timeout=20, what="preparation completed")
    assert p.exit_code == 4 and p.result == models.BatchTaskExecutionResult.FAILURE
    assert p.failure_info is not None
    time.sleep(1)
    t = client.get_task(jid, "t")
    assert t.state == models.BatchTaskState.ACTIVE and never_started(t)


def test_status_needs_a_preparation_task(client, new_job):
    jid = new_job()
    with pytest.raises(HttpResponseError) as e:
        list(client.list_job_preparation_and_release_task_status(jid))
    assert e.value.error.code == "JobPreparationTaskNotSpecified"


# --- limits -----------------------------------------------------------------

def long_ids(total_chars):
    """Task ids of 64 characters (the longest an id may be) adding up to just
    over `total_chars`."""
    return [f"{i:064d}" for i in range(total_chars // 64 + 1)]


def test_dependency_list_limit_is_relaxed_by_default(client, new_job):
    """Beyond the service's 64,000 characters of dependency ids: accepted
    (the request body size is openbatch's only bound)."""
    jid = new_job(uses_task_dependencies=True)
    ids = long_ids(70_000)
    client.create_task(jid, task("big", "/bin/true", depends_on=after(*ids)))
    assert len(client.get_task(jid, "big").depends_on.task_ids) == len(ids)


def test_strict_limits_enforce_the_services_dependency_limit(tmp_path):
    """`openbatch serve --strict-limits`: 400 TaskDependencyListTooLong over
    64,000 characters of dependency ids, as the service answers."""
    from conftest import Server
    s = Server(str(tmp_path), extra_args=["--strict-limits"])
    s.start()
    try:
        c = BatchClient(endpoint=s.endpoint, credential=AzureNamedKeyCredential(s.account, s.key))
        c.create_pool(models.BatchPoolCreateOptions(id="idle", vm_size="standard_d2s_v3"))
        c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="idle"),
                                                  uses_task_dependencies=True))
        with pytest.raises(HttpResponseError) as e:
            c.create_task("j", task("big", "/bin/true", depends_on=after(*long_ids(64_000))))
        assert e.value.status_code == 400
        assert e.value.error.code == "TaskDependencyListTooLong"
        # Exactly at the limit is fine.
        c.create_task("j", task("fits", "/bin/true", depends_on=after(*long_ids(64_000)[:1000])))
    finally:
        s.stop()
