"""Jobs and tasks through azure-batch 15.1.0 (api-version 2025-06-01)."""
import datetime

import pytest
from azure.batch import models
from azure.batch.models import _models as internal
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from conftest import wait_for

INFINITE = datetime.timedelta(days=10675199, seconds=10085, microseconds=477581)


def make_job(client, job_id, **kw):
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id="nopool"), **kw))


def code_of(exc):
    return exc.value.error.code


def test_job_create_get_defaults(client, uid):
    jid = uid("job")
    make_job(client, jid, display_name="my job", metadata=[models.BatchMetadataItem(name="k", value="v")])
    job = client.get_job(jid)
    assert job.id == jid and job.display_name == "my job"
    assert job.state == models.BatchJobState.ACTIVE
    assert job.priority == 0 and job.max_parallel_tasks == -1
    assert job.uses_task_dependencies is False
    assert job.all_tasks_complete_mode == models.BatchAllTasksCompleteMode.NO_ACTION
    assert job.pool_info.pool_id == "nopool"
    assert job.metadata[0].name == "k"
    assert job.url.endswith(f"/jobs/{jid}")
    assert job.etag and job.last_modified and job.creation_time and job.state_transition_time
    assert job.execution_info.start_time is not None
    with pytest.raises(ResourceExistsError) as e:
        make_job(client, jid.upper())
    assert code_of(e) == "JobExists"
    with pytest.raises(ResourceNotFoundError) as e:
        client.get_job(uid("missing"))
    assert code_of(e) == "JobNotFound"
    # A job may name a pool that does not exist yet (its tasks wait for it).
    later = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=later, pool_info=models.BatchPoolInfo(pool_id=uid("nosuchpool"))))
    assert client.get_job(later).state == models.BatchJobState.ACTIVE


def test_job_update_replace_and_etags(client, uid):
    jid = uid("job")
    make_job(client, jid, priority=5, constraints=models.BatchJobConstraints(max_task_retry_count=2))
    job = client.get_job(jid)
    client.update_job(jid, models.BatchJobUpdateOptions(priority=100))
    after = client.get_job(jid)
    assert after.priority == 100 and after.constraints.max_task_retry_count == 2
    assert after.etag != job.etag
    # A stale ETag is refused.
    with pytest.raises(ResourceModifiedError):
        client.update_job(jid, models.BatchJobUpdateOptions(priority=1), etag=job.etag, match_condition=MatchConditions.IfNotModified)
    client.update_job(jid, models.BatchJobUpdateOptions(priority=7), etag=after.etag, match_condition=MatchConditions.IfNotModified)
    assert client.get_job(jid).priority == 7
    # Replace resets what it does not carry.
    client.replace_job(jid, internal.BatchJob(pool_info=models.BatchPoolInfo(pool_id="nopool")))
    replaced = client.get_job(jid)
    assert replaced.priority == 0 and replaced.constraints.max_task_retry_count == 0
    with pytest.raises(HttpResponseError) as e:
        client.update_job(jid, models.BatchJobUpdateOptions(priority=5000))
    assert code_of(e) == "InvalidPropertyValue"


def test_job_lifecycle_pollers(client, uid):
    jid = uid("job")
    make_job(client, jid)
    client.begin_disable_job(jid, models.BatchJobDisableOptions(disable_tasks="requeue"), polling_interval=0.1).result()
    assert client.get_job(jid).state == models.BatchJobState.DISABLED
    client.begin_enable_job(jid, polling_interval=0.1).result()
    assert client.get_job(jid).state == models.BatchJobState.ACTIVE
    client.begin_terminate_job(jid, options=internal.BatchJobTerminateOptions(termination_reason="done here"), polling_interval=0.1).result()
    job = client.get_job(jid)
    assert job.state == models.BatchJobState.COMPLETED
    assert job.execution_info.termination_reason == "done here"
    assert job.execution_info.end_time is not None
    with pytest.raises(ResourceExistsError) as e:
        client.create_task(jid, models.BatchTaskCreateOptions(id="late", command_line="x"))
    assert code_of(e) == "JobCompleted"
    client.begin_delete_job(jid, polling_interval=0.1).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_job(jid)


def test_delete_shows_deleting_state(client, uid):
    jid = uid("job")
    make_job(client, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="t", command_line="x"))
    client._delete_job_internal(jid)  # the raw 202, without the poller
    assert client.get_job(jid).state == models.BatchJobState.DELETING
    wait_for(lambda: not any(j.id == jid for j in client.list_jobs(filter=f"id eq '{jid}'")), what="job gone")


def test_task_round_trips_every_property(client, uid):
    jid = uid("job")
    # Exit conditions with a job action need onTaskFailure performexitoptionsjobaction.
    make_job(client, jid, uses_task_dependencies=True, task_failure_mode=models.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION)
    opts = models.BatchTaskCreateOptions(
        id="Full1",
        display_name="full task",
        command_line="/bin/sh -c 'echo hi'",
        exit_conditions=models.ExitConditions(
            exit_codes=[models.ExitCodeMapping(code=3, exit_options=models.ExitOptions(job_action="terminate", dependency_action="block"))],
            exit_code_ranges=[models.ExitCodeRangeMapping(start=10, end=20, exit_options=models.ExitOptions(job_action="disable"))],
            pre_processing_error=models.ExitOptions(job_action="none"),
            file_upload_error=models.ExitOptions(dependency_action="satisfy"),
            default=models.ExitOptions(job_action="none"),
        ),
        container_settings=models.BatchTaskContainerSettings(
            image_name="busybox", container_run_options="--rm", working_directory="taskWorkingDirectory",
            registry=models.ContainerRegistryReference(registry_server="r.example", username="u", password="p"),
            container_host_batch_bind_mounts=[models.ContainerHostBatchBindMountEntry(source="Shared", is_read_only=True)],
        ),
        resource_files=[models.ResourceFile(http_url="http://example.com/a.txt", file_path="a.txt", file_mode="0755"),
                        models.ResourceFile(storage_container_url="http://example.com/c?sas", blob_prefix="in/")],
        output_files=[models.OutputFile(
            file_pattern="*.txt",
            destination=models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
                container_url="http://example.com/out?sas", path="out",
                upload_headers=[models.OutputFileUploadHeader(name="x-ms-blob-content-type", value="text/plain")])),
            upload_options=models.OutputFileUploadConfiguration(upload_condition="taskcompletion"))],
        environment_settings=[models.EnvironmentSetting(name="A", value="1")],
        affinity_info=models.BatchAffinityInfo(affinity_id="TVM:node1"),
        constraints=models.BatchTaskConstraints(max_wall_clock_time=datetime.timedelta(hours=1), retention_time=datetime.timedelta(days=1), max_task_retry_count=4),
        required_slots=1,  # multi-instance tasks take one slot per node
        user_identity=models.UserIdentity(auto_user=models.AutoUserSpecification(scope="task", elevation_level="admin")),
        multi_instance_settings=models.MultiInstanceSettings(number_of_instances=3, coordination_command_line="coord",
                                                             common_resource_files=[models.ResourceFile(http_url="http://example.com/c", file_path="c")]),
        depends_on=models.BatchTaskDependencies(task_ids=["a", "b"], task_id_ranges=[models.BatchTaskIdRange(start=1, end=5)]),
        application_package_references=[models.BatchApplicationPackageReference(application_id="app", version="1.0")],
    )
    client.create_task(jid, opts)
    t = client.get_task(jid, "full1")
    sent = opts.as_dict()
    got = t.as_dict()
    for key, value in sent.items():
        if key == "constraints":
            continue
        assert got[key] == value, key
    assert t.constraints.max_wall_clock_time == datetime.timedelta(hours=1)
    assert t.constraints.retention_time == datetime.timedelta(days=1)
    assert t.constraints.max_task_retry_count == 4
    assert t.state == models.BatchTaskState.ACTIVE
    assert t.execution_info.retry_count == 0 and t.execution_info.requeue_count == 0


def test_task_defaults_and_validation(client, uid):
    jid = uid("job")
    make_job(client, jid, constraints=models.BatchJobConstraints(max_task_retry_count=3))
    client.create_task(jid, models.BatchTaskCreateOptions(id="abc", command_line="x"))
    t = client.get_task(jid, "abc")
    assert t.constraints.max_wall_clock_time == INFINITE
    assert t.constraints.retention_time == datetime.timedelta(days=7)
    assert t.constraints.max_task_retry_count == 3, "the job's retry count is the default"
    assert t.user_identity.auto_user.scope == models.AutoUserScope.POOL
    assert t.user_identity.auto_user.elevation_level == models.ElevationLevel.NON_ADMIN
    assert t.required_slots == 1
    assert t.url.endswith(f"/jobs/{jid}/tasks/abc")
    with pytest.raises(ResourceExistsError) as e:
        client.create_task(jid, models.BatchTaskCreateOptions(id="ABC", command_line="x"))
    assert code_of(e) == "TaskExists"
    for bad, code in [
        (models.BatchTaskCreateOptions(id="bad id", command_line="x"), "InvalidPropertyValue"),
        (models.BatchTaskCreateOptions(id="x" * 65, command_line="x"), "InvalidPropertyValue"),
        (models.BatchTaskCreateOptions(id="ok", command_line="x", display_name="d" * 1025), "InvalidPropertyValue"),
        (models.BatchTaskCreateOptions(id="ok", command_line="x", depends_on=models.BatchTaskDependencies(task_ids=["abc"])), "TaskDependenciesNotSpecifiedOnJob"),
        (models.BatchTaskCreateOptions(id="ok", command_line="x", user_identity=models.UserIdentity(auto_user=models.AutoUserSpecification(elevation_level="root"))), "InvalidPropertyValue"),
    ]:
        with pytest.raises(HttpResponseError) as e:
            client.create_task(jid, bad)
        assert code_of(e) == code
        assert e.value.status_code == 400
    with pytest.raises(ResourceNotFoundError) as e:
        client.create_task(uid("nojob"), models.BatchTaskCreateOptions(id="t", command_line="x"))
    assert code_of(e) == "JobNotFound"


def test_task_operations(client, uid):
    jid = uid("job")
    make_job(client, jid)
    client.create_task(jid, models.BatchTaskCreateOptions(id="t1", command_line="x"))
    client.replace_task(jid, "t1", internal.BatchTask(constraints=models.BatchTaskConstraints(max_task_retry_count=9)))
    assert client.get_task(jid, "t1").constraints.max_task_retry_count == 9
    client.terminate_task(jid, "t1")
    t = client.get_task(jid, "t1")
    assert t.state == models.BatchTaskState.COMPLETED
    assert t.previous_state == models.BatchTaskState.ACTIVE
    assert t.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert t.execution_info.failure_info.code == "TaskEnded"
    with pytest.raises(ResourceExistsError) as e:
        client.terminate_task(jid, "t1")
    assert code_of(e) == "TaskCompleted"
    counts = client.get_job_task_counts(jid)
    assert counts.task_counts.completed == 1 and counts.task_counts.failed == 1
    client.reactivate_task(jid, "t1")
    t = client.get_task(jid, "t1")
    assert t.state == models.BatchTaskState.ACTIVE and t.execution_info.retry_count == 0
    with pytest.raises(ResourceExistsError) as e:
        client.reactivate_task(jid, "t1")
    assert code_of(e) == "TaskNotCompleted"
    assert list(client.list_subtasks(jid, "t1")) == []
    client.delete_task(jid, "t1")
    with pytest.raises(ResourceNotFoundError) as e:
        client.get_task(jid, "t1")
    assert code_of(e) == "TaskNotFound"


def test_collections_and_chunking(client, uid):
    jid = uid("job")
    make_job(client, jid)
    group = models.BatchTaskGroup(task_values=[models.BatchTaskCreateOptions(id=f"c{i}", command_line="x") for i in range(100)])
    result = client.create_task_collection(jid, group)
    assert len(result.result_values) == 100
    assert all(r.status == models.BatchTaskAddStatus.SUCCESS for r in result.result_values)
    too_many = models.BatchTaskGroup(task_values=[models.BatchTaskCreateOptions(id=f"d{i}", command_line="x") for i in range(101)])
    with pytest.raises(HttpResponseError) as e:
        client.create_task_collection(jid, too_many)
    assert e.value.status_code == 413 and code_of(e) == "RequestBodyTooLarge"
    # The chunking helper splits, retries and treats TaskExists as success.
    tasks = [models.BatchTaskCreateOptions(id=f"h{i:04d}", command_line="x") for i in range(1000)]
    tasks.append(models.BatchTaskCreateOptions(id="c5", command_line="x"))
    client.create_tasks(jid, tasks, max_concurrency=4)
    counts = client.get_job_task_counts(jid)
    assert counts.task_counts.active == 1100
    assert counts.task_slot_counts.active == 1100


def test_paging_filters_select(client, uid):
    jid = uid("job")
    make_job(client, jid)
    client.create_tasks(jid, [models.BatchTaskCreateOptions(id=f"p{i:03d}", command_line="x") for i in range(250)])
    for i in range(0, 250, 50):
        client.terminate_task(jid, f"p{i:03d}")
    ids = [t.id for t in client.list_tasks(jid, max_results=7)]
    assert ids == [f"p{i:03d}" for i in range(250)]
    done = [t.id for t in client.list_tasks(jid, filter="state eq 'completed'", max_results=2)]
    assert done == [f"p{i:03d}" for i in range(0, 250, 50)]
    sel = list(client.list_tasks(jid, filter="startswith(id,'p1')", select=["id", "state"], max_results=30))
    assert len(sel) == 100 and all(t.command_line is None and t.state is not None for t in sel)
    since = client.get_task(jid, "p100").creation_time - datetime.timedelta(seconds=1)
    filtered = list(client.list_tasks(jid, filter=f"creationTime ge {since.isoformat().replace('+00:00', 'Z')} and not (state eq 'completed')"))
    assert all(t.state == models.BatchTaskState.ACTIVE for t in filtered) and len(filtered) > 0
    failed = list(client.list_tasks(jid, filter="executionInfo/result eq 'failure' or executionInfo/retryCount gt 0"))
    assert len(failed) == 5
    with pytest.raises(HttpResponseError) as e:
        list(client.list_tasks(jid, filter="state eq"))
    assert code_of(e) == "InvalidQueryParameterValue"
    with pytest.raises(HttpResponseError) as e:
        list(client.list_tasks(jid, max_results=5000))
    assert e.value.status_code == 400
    jobs = [j.id for j in client.list_jobs(filter=f"id eq '{jid}'", select=["id", "state"])]
    assert jobs == [jid]


def test_job_stats_and_counts(client, uid):
    jid = uid("job")
    make_job(client, jid)
    client.create_tasks(jid, [models.BatchTaskCreateOptions(id=f"s{i}", command_line="x", required_slots=2) for i in range(3)])
    client.terminate_task(jid, "s0")
    counts = client.get_job_task_counts(jid)
    assert (counts.task_counts.active, counts.task_counts.completed, counts.task_counts.failed) == (2, 1, 1)
    assert (counts.task_slot_counts.active, counts.task_slot_counts.completed) == (4, 2)
    job = client.get_job(jid, expand=["stats"])
    assert job.job_statistics.failed_tasks_count == 1
    assert job.job_statistics.succeeded_tasks_count == 0
    assert client.get_job(jid).job_statistics is None
