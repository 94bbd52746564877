"""What real client code runs into (issue 14), through azure-batch 15.1.0 and
raw `az batch`-style requests: numbers sent as strings, ids that are the
router's own words, jobs on pools that do not exist yet, the pool's
jobDefaultOrder, empty terminatejob jobs, unsupported pool settings refused
clearly, auto-pool jobs that say why they wait, and remote login settings."""
import os
import subprocess

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from conftest import BIN, end_job, start_pool, wait_for
from rawclient import Raw

POOL = "gapspool"


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key)


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, nodes=1)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


def completed(client, jid, tid, timeout=30):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def batch_error(r, status, code, prop=None):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code, body
    values = {v["key"]: v["value"] for v in body.get("values", [])}
    if prop is not None:
        assert values.get("PropertyName") == prop, body
    return body, values


# --- numbers sent as strings (what `az batch` sends) -------------------------

def test_az_style_numeric_strings_in_pool_add_resize_and_job_add(client, raw, uid):
    pid = uid("azpool")
    # az batch pool create --target-dedicated-nodes 1
    r = raw.request("POST", "/pools", {"id": pid, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": "1",
                                       "taskSlotsPerNode": "2",
                                       "startTask": {"commandLine": "/bin/true", "maxTaskRetryCount": "1"}})
    assert r.status_code == 201, r.text
    try:
        p = client.get_pool(pid)
        assert p.target_dedicated_nodes == 1 and p.task_slots_per_node == 2 and p.start_task.max_task_retry_count == 1
        stored = raw.request("GET", f"/pools/{pid}").json()
        assert stored["targetDedicatedNodes"] == 1 and stored["startTask"]["maxTaskRetryCount"] == 1, "numbers, not strings"
        wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], timeout=20, what="a node")
        # az batch pool resize --target-dedicated-nodes 2
        r = raw.request("POST", f"/pools/{pid}/resize", {"targetDedicatedNodes": "2"})
        assert r.status_code == 202, r.text
        wait_for(lambda: client.get_pool(pid).current_dedicated_nodes == 2, timeout=20, what="two nodes")
        assert raw.request("GET", f"/pools/{pid}").json()["targetDedicatedNodes"] == 2
        # az batch job create --priority 5
        jid = uid("azjob")
        r = raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": pid}, "priority": "5",
                                          "constraints": {"maxTaskRetryCount": "1"}})
        assert r.status_code == 201, r.text
        job = client.get_job(jid)
        assert job.priority == 5 and job.constraints.max_task_retry_count == 1
        assert raw.request("GET", f"/jobs/{jid}").json()["priority"] == 5
        r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t", "commandLine": "/bin/sh -c 'exit 3'", "requiredSlots": "2",
                                                       "exitConditions": {"exitCodes": [{"code": "3", "exitOptions": {}}]}})
        assert r.status_code == 201, r.text
        t = completed(client, jid, "t")
        assert t.required_slots == 2 and t.execution_info.exit_code == 3 and t.execution_info.retry_count == 1
        r = raw.request("PATCH", f"/jobs/{jid}", {"priority": "-7"})
        assert r.status_code == 200, r.text
        assert client.get_job(jid).priority == -7
        end_job(client, jid)
    finally:
        client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_a_schedule_keeps_numbers_sent_as_strings_as_numbers(client, raw, pool, uid):
    sid = uid("azsched")
    r = raw.request("POST", "/jobschedules", {"id": sid, "schedule": {"recurrenceInterval": "PT1H", "doNotRunUntil": "2099-01-01T00:00:00Z"},
                                              "jobSpecification": {"poolInfo": {"poolId": pool}, "priority": "7",
                                                                   "maxParallelTasks": "3"}})
    assert r.status_code == 201, r.text
    spec = raw.request("GET", f"/jobschedules/{sid}").json()["jobSpecification"]
    assert spec["priority"] == 7 and spec["maxParallelTasks"] == 3
    assert client.get_job_schedule(sid).job_specification.priority == 7
    client.begin_delete_job_schedule(sid, polling_interval=0.2).result()


def test_type_errors_are_batch_errors_that_name_the_property(raw, uid):
    cases = [
        ("POST", "/jobs", {"id": uid("j"), "poolInfo": {"poolId": "p"}, "priority": "five"}, "priority"),
        ("POST", "/jobs", {"id": uid("j"), "poolInfo": {"poolId": "p"}, "priority": "3000000000"}, "priority"),
        ("POST", "/jobs", {"id": uid("j"), "poolInfo": {"poolId": "p"}, "constraints": {"maxWallClockTime": 5}},
         "constraints.maxWallClockTime"),
        ("POST", "/jobs", {"id": uid("j"), "poolInfo": {"poolId": "p"}, "usesTaskDependencies": "maybe"}, "usesTaskDependencies"),
        ("POST", "/pools", {"id": uid("p"), "vmSize": "x", "targetDedicatedNodes": "two"}, "targetDedicatedNodes"),
        ("POST", "/pools", {"id": uid("p"), "vmSize": "x", "userAccounts": [{"name": "u", "password": "p",
                                                                         "linuxUserConfiguration": {"uid": "x"}}]},
         "userAccounts[0].linuxUserConfiguration.uid"),
        ("POST", "/pools/p/resize", {"targetDedicatedNodes": [2]}, "targetDedicatedNodes"),
        ("POST", "/jobs/nojob/tasks", {"id": "t", "commandLine": "x", "requiredSlots": "one"}, "requiredSlots"),
    ]
    for method, path, body, prop in cases:
        r = raw.request(method, path, body)
        b, values = batch_error(r, 400, "InvalidPropertyValue", prop)
        reason = values.get("Reason", "")
        assert reason.startswith("The value must be"), (path, body, b)
        assert " at line " not in reason and "invalid type" not in reason and "expected" not in reason, (path, body, b)


# --- ids that are the router's own words -------------------------------------

def test_a_task_named_files_has_its_files_read(client, pool, uid):
    for jid in ("files", uid("tasks")):
        client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pool)))
        try:
            for tid in ("files", "tasks", "subtasksinfo", "terminate"):
                client.create_task(jid, models.BatchTaskCreateOptions(id=tid, command_line=f"/bin/sh -c 'echo I am {tid}'"))
            for tid in ("files", "tasks", "subtasksinfo", "terminate"):
                assert completed(client, jid, tid).execution_info.exit_code == 0
                assert b"".join(client.download_task_file(jid, tid, "stdout.txt")) == f"I am {tid}\n".encode()
                names = {f.name for f in client.list_task_files(jid, tid)}
                assert "stdout.txt" in names, names
            assert client.get_task(jid, "files").id == "files"
            assert list(client.list_subtasks(jid, "subtasksinfo")) == []
        finally:
            end_job(client, jid)
            client.begin_delete_job(jid, polling_interval=0.2).result()


# --- jobs on pools that do not exist yet -------------------------------------

def test_a_job_on_a_pool_that_does_not_exist_yet_runs_when_it_does(client, uid):
    pid, jid = uid("laterpool"), uid("early")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
    client.create_task(jid, models.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    job = client.get_job(jid)
    assert job.state == models.BatchJobState.ACTIVE and job.pool_info.pool_id == pid
    assert client.get_task(jid, "t").state == models.BatchTaskState.ACTIVE
    start_pool(client, pid, nodes=1)
    try:
        assert completed(client, jid, "t").execution_info.exit_code == 0
    finally:
        end_job(client, jid)
        client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_a_schedule_on_a_pool_that_does_not_exist_yet(client, uid):
    pid, sid = uid("laterpool"), uid("earlysched")
    client.create_job_schedule(models.BatchJobScheduleCreateOptions(
        id=sid, schedule=models.BatchJobScheduleConfiguration(),
        job_specification=models.BatchJobSpecification(
            pool_info=models.BatchPoolInfo(pool_id=pid),
            job_manager_task=models.BatchJobManagerTask(id="jm", command_line="/bin/true"))))
    try:
        wait_for(lambda: client.get_job_schedule(sid).execution_info.recent_job, what="the schedule's job")
        jid = f"{sid}:job-1"
        assert client.get_task(jid, "jm").state == models.BatchTaskState.ACTIVE
        start_pool(client, pid, nodes=1)
        assert completed(client, jid, "jm").execution_info.exit_code == 0
        # The job manager's end ends the job (killJobOnCompletion).
        wait_for(lambda: client.get_job(jid).state == models.BatchJobState.COMPLETED, what="job completed")
    finally:
        client.begin_delete_job_schedule(sid, polling_interval=0.2).result()
        client.begin_delete_pool(pid, polling_interval=0.2).result()


# --- taskSchedulingPolicy.jobDefaultOrder -------------------------------------

def test_job_default_order_creationtime(client, uid):
    pid = uid("orderpool")
    policy = models.BatchTaskSchedulingPolicy(node_fill_type=models.BatchNodeFillType.SPREAD,
                                              job_default_order=models.BatchJobDefaultOrder.CREATION_TIME)
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
                                                     task_scheduling_policy=policy))
    try:
        got = client.get_pool(pid).task_scheduling_policy
        assert got.job_default_order == models.BatchJobDefaultOrder.CREATION_TIME
        assert got.node_fill_type == models.BatchNodeFillType.SPREAD
        # Ids sort the other way round from creation: order is by creation.
        older, newer = uid("z-older"), uid("a-newer")
        for jid in (older, newer):
            client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
        for jid in (newer, older):
            client.create_task_collection(jid, models.BatchTaskGroup(task_values=[
                models.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sh -c 'sleep 0.2'") for i in range(3)]))
        # One node with one slot comes: every task is ready when it joins.
        client.begin_resize_pool(pid, models.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=0.2).result()
        starts = {}
        for jid in (older, newer):
            for i in range(3):
                starts[(jid, i)] = completed(client, jid, f"t{i}").execution_info.start_time
        assert max(starts[(older, i)] for i in range(3)) <= min(starts[(newer, i)] for i in range(3)), starts
        for jid in (older, newer):
            end_job(client, jid)
        # The default is none (returned as given: absent when not given).
        other = uid("orderpool")
        client.create_pool(models.BatchPoolCreateOptions(id=other, vm_size="standard_d2s_v3", target_dedicated_nodes=0))
        assert client.get_pool(other).task_scheduling_policy.job_default_order in (None, models.BatchJobDefaultOrder.NONE)
        client.begin_delete_pool(other, polling_interval=0.2).result()
    finally:
        client.begin_delete_pool(pid, polling_interval=0.2).result()


def test_job_default_order_values_are_checked(raw, uid):
    r = raw.request("POST", "/pools", {"id": uid("p"), "vmSize": "x",
                                       "taskSchedulingPolicy": {"nodeFillType": "pack", "jobDefaultOrder": "oldestfirst"}})
    batch_error(r, 400, "InvalidPropertyValue", "taskSchedulingPolicy.jobDefaultOrder")
    pid = uid("p")
    r = raw.request("POST", "/pools", {"id": pid, "vmSize": "x",
                                       "taskSchedulingPolicy": {"nodeFillType": "Pack", "jobDefaultOrder": "CreationTime"}})
    assert r.status_code == 201, r.text
    assert raw.request("GET", f"/pools/{pid}").json()["taskSchedulingPolicy"] == {"nodeFillType": "pack", "jobDefaultOrder": "creationtime"}
    assert raw.request("DELETE", f"/pools/{pid}").status_code == 202


# --- unsupported pool settings, auto pools --------------------------------------

def test_unsupported_pool_configurations_are_refused_naming_the_property(client, raw, uid):
    with pytest.raises(HttpResponseError) as e:
        client.create_pool(models.BatchPoolCreateOptions(
            id=uid("win"), vm_size="standard_d2s_v3",
            virtual_machine_configuration=models.VirtualMachineConfiguration(
                image_reference=models.BatchVmImageReference(publisher="MicrosoftWindowsServer", offer="WindowsServer",
                                                             sku="2022-datacenter", version="latest"),
                node_agent_sku_id="batch.node.windows amd64")))
    assert e.value.status_code == 400 and e.value.error.code == "UnsupportedProperty"
    assert "virtualMachineConfiguration" in e.value.error.message
    r = raw.request("POST", "/pools", {"id": uid("cs"), "vmSize": "small", "cloudServiceConfiguration": {"osFamily": "6"}})
    body, values = batch_error(r, 400, "UnsupportedProperty", "cloudServiceConfiguration")
    assert "cloudServiceConfiguration" in body["message"]["value"]
    r = raw.request("POST", "/pools", {"id": uid("w"), "vmSize": "x", "virtualMachineConfiguration": {
        "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server"},
        "nodeAgentSKUId": "batch.node.ubuntu 24.04", "windowsConfiguration": {"enableAutomaticUpdates": False}}})
    batch_error(r, 400, "UnsupportedProperty", "virtualMachineConfiguration.windowsConfiguration")
    # A Linux image is fine.
    pid = uid("linux")
    r = raw.request("POST", "/pools", {"id": pid, "vmSize": "x", "virtualMachineConfiguration": {
        "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server"},
        "nodeAgentSKUId": "batch.node.ubuntu 24.04"}})
    assert r.status_code == 201, r.text
    raw.request("DELETE", f"/pools/{pid}")


# --- remote login settings ------------------------------------------------------

def test_remote_login_settings(client, server, pool, uid, tmp_path):
    node = list(client.list_nodes(pool))[0]
    s = client.get_node_remote_login_settings(pool, node.id)
    assert (s.remote_login_ip_address, s.remote_login_port) == ("127.0.0.1", 22)
    with pytest.raises(HttpResponseError) as e:
        client.get_node_remote_login_settings(pool, "tvmps_nosuchnode")
    assert e.value.status_code == 404 and e.value.error.code == "NodeNotFound"
    # An agent on another machine reports its own address and SSH port.
    pid = uid("sshpool")
    client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="byo", target_dedicated_nodes=0))
    token = open(os.path.join(server.data_dir, "agent.token")).read().strip()
    env = dict(os.environ, OPENBATCH_AGENT_TOKEN=token, OPENBATCH_NODE_SSH_PORT="2222")
    agent = subprocess.Popen([BIN, "agent", "--server", server.endpoint, "--pool", pid, "--root", str(tmp_path / "node"),
                              "--ip", "127.0.0.3"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        n = wait_for(lambda: [n for n in client.list_nodes(pid) if n.state == models.BatchNodeState.IDLE], what="remote node")[0]
        s = client.get_node_remote_login_settings(pid, n.id)
        assert (s.remote_login_ip_address, s.remote_login_port) == ("127.0.0.3", 2222)
        client.begin_delete_pool(pid, polling_interval=0.2).result()
        agent.wait(timeout=10)
    finally:
        if agent.poll() is None:
            agent.kill()
