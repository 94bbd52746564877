"""What real client code runs into (issue 14), through azure-batch 14.2.0:
numbers sent as strings (as `az batch` sends them, with this SDK's
api-version) read back as numbers, jobs on pools that do not exist yet, and
remote login settings; node user accounts and service logs."""
import base64
import datetime
import os
import subprocess

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import wait_for
from rawclient import Raw

API_VERSION = "2024-07-01.20.0"  # what azure-batch 14.2.0 (and the az CLI) send


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key, api_version=API_VERSION)


def idle_nodes(client, pid):
    return [n for n in client.compute_node.list(pid) if n.state == models.ComputeNodeState.idle]


def completed(client, jid, tid, timeout=30):
    return wait_for(lambda: (t := client.task.get(jid, tid)).state == models.TaskState.completed and t,
                    timeout=timeout, what=f"{tid} completed")


def test_numbers_sent_as_strings(client, raw, uid):
    pid, jid = uid("az14"), uid("az14job")
    r = raw.request("POST", "/pools", {"id": pid, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": "1", "taskSlotsPerNode": "2"})
    assert r.status_code == 201, r.text
    try:
        p = client.pool.get(pid)
        assert (p.target_dedicated_nodes, p.task_slots_per_node) == (1, 2)
        wait_for(lambda: idle_nodes(client, pid), timeout=20, what="a node")
        r = raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": pid}, "priority": "5", "maxParallelTasks": "1"})
        assert r.status_code == 201, r.text
        job = client.job.get(jid)
        assert (job.priority, job.max_parallel_tasks) == (5, 1)
        r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t", "commandLine": "/bin/true", "constraints": {"maxTaskRetryCount": "2"}})
        assert r.status_code == 201, r.text
        t = completed(client, jid, "t")
        assert t.constraints.max_task_retry_count == 2 and t.execution_info.exit_code == 0
        r = raw.request("POST", f"/pools/{pid}/resize", {"targetDedicatedNodes": "0"})
        assert r.status_code == 202, r.text
        assert client.pool.get(pid).target_dedicated_nodes == 0
        r = raw.request("POST", "/jobs", {"id": uid("bad"), "poolInfo": {"poolId": pid}, "priority": "high"})
        assert r.status_code == 400 and r.json()["code"] == "InvalidPropertyValue", r.text
        values = {v["key"]: v["value"] for v in r.json()["values"]}
        assert values["PropertyName"] == "priority" and values["Reason"].startswith("The value must be an integer")
        client.job.terminate(jid)
    finally:
        client.pool.delete(pid)


def test_a_job_waits_for_its_pool_to_exist(client, uid):
    pid, jid = uid("later14"), uid("early14")
    client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pid)))
    client.task.add(jid, models.TaskAddParameter(id="t", command_line="/bin/sh -c 'echo ran'"))
    assert client.task.get(jid, "t").state == models.TaskState.active
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    try:
        t = completed(client, jid, "t")
        assert t.execution_info.exit_code == 0
        assert b"".join(client.file.get_from_task(jid, "t", "stdout.txt")) == b"ran\n"
        client.job.terminate(jid)
    finally:
        client.pool.delete(pid)


def test_remote_login_settings(client, uid):
    pid = uid("ssh14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    try:
        node = wait_for(lambda: idle_nodes(client, pid), timeout=20, what="a node")[0]
        s = client.compute_node.get_remote_login_settings(pid, node.id)
        assert (s.remote_login_ip_address, s.remote_login_port) == ("127.0.0.1", 22)
        with pytest.raises(models.BatchErrorException) as e:
            client.compute_node.get_remote_login_settings(pid, "tvmps_nosuchnode")
        assert e.value.error.code == "NodeNotFound"
    finally:
        client.pool.delete(pid)


def test_auto_pool_for_a_job(client, uid):
    """A job's own auto pool (issue 15): made with the job, its tasks run
    there, and it goes when the job ends."""
    jid = uid("auto14")
    client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(
        auto_pool_specification=models.AutoPoolSpecification(
            auto_pool_id_prefix="v14", pool_lifetime_option=models.PoolLifetimeOption.job,
            pool=models.PoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=1)))))
    pool_id = client.job.get(jid).execution_info.pool_id
    assert pool_id.startswith("v14_"), pool_id
    assert client.pool.get(pool_id).target_dedicated_nodes == 1
    client.task.add(jid, models.TaskAddParameter(id="t", command_line="/bin/true"))
    t = completed(client, jid, "t", timeout=60)
    assert (t.execution_info.exit_code, t.node_info.pool_id) == (0, pool_id)
    client.job.terminate(jid)

    def gone():
        return not any(p.id == pool_id for p in client.pool.list())
    wait_for(gone, timeout=40, what="the auto pool to go with its job")


def test_pool_usage_metrics(client, uid):
    pid = uid("usage14")
    before = datetime.datetime.now(datetime.timezone.utc)
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    try:
        wait_for(lambda: idle_nodes(client, pid), timeout=20, what="a node")
        options = models.PoolListUsageMetricsOptions(filter=f"poolId eq '{pid}'", start_time=before - datetime.timedelta(hours=2))
        (m,) = list(client.pool.list_usage_metrics(pool_list_usage_metrics_options=options))
        assert (m.pool_id, m.vm_size) == (pid, "standard_d2s_v3")
        assert m.end_time - m.start_time == datetime.timedelta(hours=1) and m.total_core_hours > 0
        options = models.PoolListUsageMetricsOptions(filter=f"poolId eq '{pid}'", end_time=before - datetime.timedelta(hours=2))
        assert list(client.pool.list_usage_metrics(pool_list_usage_metrics_options=options)) == []
    finally:
        client.pool.delete(pid)


def test_node_extensions(client, raw, uid):
    pid = uid("ext14")
    client.pool.add(models.PoolAddParameter(
        id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04",
            extensions=[models.VMExtension(name="mon", publisher="Contoso", type="Monitor", type_handler_version="2.1")])))
    node = wait_for(lambda: idle_nodes(client, pid), what="idle node")[0]
    [ext] = list(client.compute_node_extension.list(pid, node.id))
    assert ext.provisioning_state == "Failed" and ext.vm_extension.name == "mon"
    assert ext.vm_extension.type_handler_version == "2.1"
    assert "installs no VM extensions" in ext.instance_view.statuses[0].message
    assert client.compute_node_extension.get(pid, node.id, "mon").vm_extension.publisher == "Contoso"
    # Start and deallocate are operations of 2024-07-01.20.0, which this SDK sends.
    r = raw.request("POST", f"/pools/{pid}/nodes/{node.id}/deallocate", {"nodeDeallocateOption": "requeue"})
    assert r.status_code == 202, r.text
    # (14.2.0's ComputeNodeState has no `deallocated`: it reads the string.)
    wait_for(lambda: client.compute_node.get(pid, node.id).state == "deallocated", what="deallocated")
    r = raw.request("POST", f"/pools/{pid}/nodes/{node.id}/start")
    assert r.status_code == 202, r.text
    wait_for(lambda: idle_nodes(client, pid), what="idle again")
    r = raw.request("POST", f"/pools/{pid}/nodes/{node.id}/deallocate", api_version="2024-02-01.19.0")
    assert r.status_code == 400 and r.json()["code"] == "InvalidUri", r.text
    client.pool.delete(pid)
@pytest.mark.skipif(os.geteuid() != 0, reason="node user accounts need a root agent (the tests' server runs its local agents as its own user)")
def test_node_users_and_service_logs(client, azurite, uid):
    """add_user / update_user / delete_user make, change and remove a real
    account on the node; upload_batch_service_logs puts the agent's log
    files in the container."""
    pid = uid("users14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    name = "v14" + uid("u").replace("-", "")[-10:]
    try:
        node = wait_for(lambda: idle_nodes(client, pid), timeout=20, what="a node")[0]
        key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + os.urandom(32)).decode()
        client.compute_node.add_user(pid, node.id, models.ComputeNodeUser(name=name, is_admin=False, password="pw", ssh_public_key=key))
        entry = subprocess.run(["getent", "passwd", name], capture_output=True, text=True).stdout.split(":")
        assert entry[5] == f"/home/{name}"
        with open(f"/home/{name}/.ssh/authorized_keys") as f:
            assert f.read() == key + "\n"
        with pytest.raises(models.BatchErrorException) as e:
            client.compute_node.add_user(pid, node.id, models.ComputeNodeUser(name=name, password="pw"))
        assert e.value.error.code == "NodeUserExists"
        client.compute_node.update_user(pid, node.id, name, models.NodeUpdateUserParameter(password="new"))
        assert not os.path.exists(f"/home/{name}/.ssh/authorized_keys")
        client.compute_node.delete_user(pid, node.id, name)
        assert subprocess.run(["getent", "passwd", name], capture_output=True).returncode != 0
        with pytest.raises(models.BatchErrorException) as e:
            client.compute_node.delete_user(pid, node.id, name)
        assert e.value.error.code == "NodeUserNotFound"

        container = uid("logs14")
        blobs = azurite.container(container)
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)
        r = client.compute_node.upload_batch_service_logs(pid, node.id, models.UploadBatchServiceLogsConfiguration(
            container_url=azurite.sas_url(container, "racwl"), start_time=start))
        names = [b.name for b in blobs.list_blobs()]
        assert r.number_of_files_uploaded == len(names) >= 1, names
        assert all(n.startswith(r.virtual_directory_name + "/agent.") for n in names), names
        text = b"".join(blobs.download_blob(n).readall() for n in names)
        assert b"deleted a node user account" in text
    finally:
        client.pool.delete(pid)
