"""Jobs and tasks through azure-batch 14.2.0 (msrest; api-version 2024-02-01.19.0)."""
import datetime

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import wait_for


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


def add_job(client, jid, **kw):
    client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id="nopool"), **kw))


def err(e):
    return e.value.error.code


def test_jobs(client, uid):
    jid = uid("job")
    add_job(client, jid, priority=10, uses_task_dependencies=True)
    job = client.job.get(jid)
    assert job.state == models.JobState.active and job.priority == 10 and job.uses_task_dependencies
    with pytest.raises(models.BatchErrorException) as e:
        add_job(client, jid)
    assert err(e) == "JobExists"
    # A pool that does not exist yet is accepted: the job's tasks wait for it.
    client.job.add(models.JobAddParameter(id=jid + "x", pool_info=models.PoolInformation(pool_id=jid + "-nopool")))
    assert client.job.get(jid + "x").pool_info.pool_id == jid + "-nopool"
    client.job.patch(jid, models.JobPatchParameter(priority=20))
    assert client.job.get(jid).priority == 20
    client.job.update(jid, models.JobUpdateParameter(pool_info=models.PoolInformation(pool_id="nopool")))
    assert client.job.get(jid).priority == 0
    client.job.disable(jid, "wait")
    wait_for(lambda: client.job.get(jid).state == models.JobState.disabled, what="disabled")
    client.job.enable(jid)
    wait_for(lambda: client.job.get(jid).state == models.JobState.active, what="active")
    client.job.terminate(jid, terminate_reason="bye")
    wait_for(lambda: client.job.get(jid).state == models.JobState.completed, what="completed")
    assert client.job.get(jid).execution_info.terminate_reason == "bye"
    client.job.delete(jid)
    assert client.job.get(jid).state == models.JobState.deleting

    def gone():
        try:
            client.job.get(jid)
            return False
        except models.BatchErrorException as e:
            return e.error.code == "JobNotFound"
    wait_for(gone, what="job deleted")


def test_tasks(client, uid):
    jid = uid("job")
    # Exit conditions with a job action need onTaskFailure performexitoptionsjobaction.
    add_job(client, jid, uses_task_dependencies=True, on_task_failure=models.OnTaskFailure.perform_exit_options_job_action)
    t = models.TaskAddParameter(
        id="t1",
        command_line="/bin/sh -c 'echo hi'",
        display_name="one",
        environment_settings=[models.EnvironmentSetting(name="A", value="1")],
        constraints=models.TaskConstraints(max_wall_clock_time=datetime.timedelta(hours=1), max_task_retry_count=2),
        required_slots=1,
        depends_on=models.TaskDependencies(task_ids=["t0"], task_id_ranges=[models.TaskIdRange(start=1, end=5)]),
        authentication_token_settings=models.AuthenticationTokenSettings(access=["job"]),
        user_identity=models.UserIdentity(auto_user=models.AutoUserSpecification(scope="task", elevation_level="admin")),
        exit_conditions=models.ExitConditions(exit_codes=[models.ExitCodeMapping(code=3, exit_options=models.ExitOptions(job_action="terminate"))]),
    )
    client.task.add(jid, t)
    got = client.task.get(jid, "t1")
    assert got.display_name == "one" and got.command_line == t.command_line
    assert got.authentication_token_settings.access == [models.AccessScope.job]
    assert got.constraints.max_wall_clock_time == datetime.timedelta(hours=1)
    assert got.constraints.retention_time == datetime.timedelta(days=7)
    assert got.depends_on.task_id_ranges[0].end == 5
    assert got.user_identity.auto_user.elevation_level == models.ElevationLevel.admin
    assert got.exit_conditions.exit_codes[0].exit_options.job_action == models.JobAction.terminate
    assert got.execution_info.retry_count == 0 and got.execution_info.requeue_count == 0
    with pytest.raises(models.BatchErrorException) as e:
        client.task.add(jid, models.TaskAddParameter(id="T1", command_line="x"))
    assert err(e) == "TaskExists"
    client.task.update(jid, "t1", constraints=models.TaskConstraints(max_task_retry_count=5))
    assert client.task.get(jid, "t1").constraints.max_task_retry_count == 5
    client.task.terminate(jid, "t1")
    assert client.task.get(jid, "t1").state == models.TaskState.completed
    client.task.reactivate(jid, "t1")
    assert client.task.get(jid, "t1").state == models.TaskState.active
    assert client.task.list_subtasks(jid, "t1").value == []
    client.task.delete(jid, "t1")
    with pytest.raises(models.BatchErrorException) as e:
        client.task.get(jid, "t1")
    assert err(e) == "TaskNotFound"


def test_add_collection_helper_and_paging(client, uid):
    jid = uid("job")
    add_job(client, jid)
    tasks = [models.TaskAddParameter(id=f"k{i:04d}", command_line="x") for i in range(350)]
    result = client.task.add_collection(jid, tasks)
    assert len(result.value) == 350
    assert all(r.status == models.TaskAddStatus.success for r in result.value)
    # msrest follows odata.nextLink verbatim: it must carry every option.
    opts = models.TaskListOptions(max_results=40, filter="startswith(id,'k01')", select="id,state")
    listed = list(client.task.list(jid, task_list_options=opts))
    assert [t.id for t in listed] == [f"k{i:04d}" for i in range(100, 200)]
    assert all(t.command_line is None for t in listed)
    counts = client.job.get_task_counts(jid)
    assert counts.task_counts.active == 350
    jobs = list(client.job.list(job_list_options=models.JobListOptions(filter=f"id eq '{jid}'", select="id,state")))
    assert [j.id for j in jobs] == [jid]
