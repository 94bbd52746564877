"""One pass of real client work through whichever `azure.batch` is on the
path (the old SDKs, 5.1.1 to 14.x, each sending its own api-version), against
the server named by OB_ENDPOINT/OB_ACCOUNT/OB_KEY. Run by test_old_sdks.py
in a process of its own per SDK version (PYTHONPATH selects the version).

Every SDK operation called is recorded; the script prints one JSON line:
{"sdk", "api_version", "operations": [the distinct operations that succeeded]}.
Any wrong answer raises (non-zero exit, with the traceback)."""
import datetime
import json
import os
import sys
import time

from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch

ENDPOINT, ACCOUNT, KEY = os.environ["OB_ENDPOINT"], os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]
PREFIX = os.environ["OB_PREFIX"]  # unique per run: ids never collide
FILE_URL, FILE_TEXT = os.environ["OB_FILE_URL"], os.environ["OB_FILE_TEXT"]

credentials = SharedKeyCredentials(ACCOUNT, KEY)
try:
    raw_client = BatchServiceClient(credentials, batch_url=ENDPOINT)
except TypeError:  # 5.x names it base_url
    raw_client = BatchServiceClient(credentials, base_url=ENDPOINT)
API_VERSION = raw_client.pool.api_version


class Tracked:
    """The client, recording each operation (`group.method`) that returned."""

    def __init__(self, client):
        self._client, self.used = client, set()

    def __getattr__(self, group):
        inner, used = getattr(self._client, group), self.used

        class Group:
            def __getattr__(self, name):
                fn = getattr(inner, name)

                def call(*args, **kwargs):
                    result = fn(*args, **kwargs)
                    if hasattr(result, "__iter__") and not isinstance(result, (str, bytes, dict)) and hasattr(result, "next"):
                        result = list(result)  # a pager: the operation is its pages
                    used.add(f"{group}.{name}")
                    return result
                return call
        return Group()


def has(model, attribute):
    return attribute in getattr(models, model)._attribute_map


def wait(pred, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


c = Tracked(raw_client)
pool_id, job_id, schedule_id = f"{PREFIX}-pool", f"{PREFIX}-job", f"{PREFIX}-js"
slots = "max_tasks_per_node" if has("PoolAddParameter", "max_tasks_per_node") else "task_slots_per_node"

# Images: `nodeagentskus` before 2019-06-01.9.0, `supportedimages` since.
if hasattr(raw_client.account, "list_supported_images"):
    images = c.account.list_supported_images()
    agents = {i.node_agent_sku_id for i in images}
else:
    skus = c.account.list_node_agent_skus()
    agents = {s.id for s in skus}
    check(all(s.verified_image_references for s in skus), "each SKU lists its images")
check("batch.node.ubuntu 22.04" in agents, f"images: {agents}")

vm = models.VirtualMachineConfiguration(
    image_reference=models.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")
c.pool.add(models.PoolAddParameter(id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=1,
                                   virtual_machine_configuration=vm, **{slots: 2},
                                   metadata=[models.MetadataItem(name="sdk", value=azure.batch.__version__)]))
try:
    pool = c.pool.get(pool_id)
    check(getattr(pool, slots) == 2, f"{slots} = {getattr(pool, slots)}")
    check(c.pool.exists(pool_id), "pool exists")
    wire_name = "maxTasksPerNode" if slots == "max_tasks_per_node" else "taskSlotsPerNode"
    listed = c.pool.list(pool_list_options=models.PoolListOptions(
        filter=f"id eq '{pool_id}'", select=f"id,{wire_name}"))
    check([(p.id, getattr(p, slots)) for p in listed] == [(pool_id, 2)], f"listed: {listed}")
    c.pool.patch(pool_id, models.PoolPatchParameter(metadata=[models.MetadataItem(name="k", value="v")]))
    check([(m.name, m.value) for m in c.pool.get(pool_id).metadata] == [("k", "v")], "patched metadata")

    node = wait(lambda: [n for n in c.compute_node.list(pool_id) if n.state == models.ComputeNodeState.idle], "an idle node")[0]
    check(c.compute_node.get(pool_id, node.id).id == node.id, "node get")
    login = c.compute_node.get_remote_login_settings(pool_id, node.id)
    check(login.remote_login_port > 0, "remote login port")
    counts = c.account.list_pool_node_counts()
    check(any(n.pool_id == pool_id for n in counts), "node counts name the pool")
    metrics = c.pool.list_usage_metrics(pool_list_usage_metrics_options=models.PoolListUsageMetricsOptions(
        filter=f"poolId eq '{pool_id}'"))
    check([(m.pool_id, m.vm_size) for m in metrics] == [(pool_id, "standard_d2s_v3")] and metrics[0].total_core_hours > 0,
          f"usage metrics {metrics}")

    c.job.add(models.JobAddParameter(id=job_id, pool_info=models.PoolInformation(pool_id=pool_id)))
    check(c.job.get(job_id).state == models.JobState.active, "job active")
    if has("ResourceFile", "http_url"):
        resource = models.ResourceFile(http_url=FILE_URL, file_path="in.txt")
    else:
        resource = models.ResourceFile(blob_source=FILE_URL, file_path="in.txt")
    c.task.add(job_id, models.TaskAddParameter(id="cat", command_line="/bin/cat in.txt", resource_files=[resource]))
    c.task.add_collection(job_id, [models.TaskAddParameter(id=f"t{i}", command_line="/bin/true") for i in range(3)])
    wait(lambda: all(t.state == models.TaskState.completed for t in c.task.list(job_id)), "tasks completed")
    task = c.task.get(job_id, "cat")
    check(task.execution_info.exit_code == 0, f"exit code {task.execution_info.exit_code}")
    got = task.resource_files[0]
    check((getattr(got, "http_url", None) or getattr(got, "blob_source", None)) == FILE_URL, "resource file read back")
    counts = c.job.get_task_counts(job_id)
    counts = getattr(counts, "task_counts", counts)  # TaskCountsResult since 2020-09-01.12.0
    check((counts.completed, counts.succeeded, counts.failed) == (4, 4, 0), f"task counts {counts}")
    # Lifetime statistics: operations of the versions up to 2022-10-01.16.0.
    if hasattr(raw_client.job, "get_all_lifetime_statistics"):
        stats = c.job.get_all_lifetime_statistics()
        check(stats.num_succeeded_tasks >= 4 and stats.wall_clock_time > datetime.timedelta(0), f"job stats {stats}")
        stats = c.pool.get_all_lifetime_statistics()
        check(stats.usage_stats.dedicated_core_time > datetime.timedelta(0), f"pool stats {stats.usage_stats}")
    names = {f.name for f in c.file.list_from_task(job_id, "cat")}
    check("stdout.txt" in names, f"files {names}")
    out = b"".join(c.file.get_from_task(job_id, "cat", "stdout.txt")).decode()
    check(out == FILE_TEXT, f"stdout {out!r}")
    c.file.get_properties_from_task(job_id, "cat", "stdout.txt")
    c.task.update(job_id, "t0", constraints=models.TaskConstraints(max_task_retry_count=1))
    c.task.delete(job_id, "t0")

    c.job_schedule.add(models.JobScheduleAddParameter(
        id=schedule_id, schedule=models.Schedule(do_not_run_until=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)),
        job_specification=models.JobSpecification(pool_info=models.PoolInformation(pool_id=pool_id))))
    check(c.job_schedule.exists(schedule_id), "schedule exists")
    check(c.job_schedule.get(schedule_id).id == schedule_id, "schedule get")
    c.job_schedule.delete(schedule_id)

    c.job.terminate(job_id)
    c.job.delete(job_id)
finally:
    raw_client.pool.delete(pool_id)
c.used.add("pool.delete")

print(json.dumps({"sdk": azure.batch.__version__, "api_version": API_VERSION, "operations": sorted(c.used)}))
sys.exit(0)
