"""Task authentication tokens through azure-batch 14.2.0 (the last SDK with
`authenticationTokenSettings`): a task that asks for `access: ["job"]` gets
AZ_BATCH_AUTHENTICATION_TOKEN, which the server accepts as a Bearer
credential for operations on that task's job only."""
import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials
from msrest.authentication import BasicTokenAuthentication

from conftest import wait_for

POOL = "tokpool14"


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


@pytest.fixture(scope="module")
def pool(client):
    client.pool.add(models.PoolAddParameter(id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=2))
    wait_for(lambda: [n for n in client.compute_node.list(POOL) if n.state == models.ComputeNodeState.idle], timeout=20, what="idle node")
    yield POOL
    client.pool.delete(POOL)


def completed(client, jid, tid):
    return wait_for(lambda: (t := client.task.get(jid, tid)).state == models.TaskState.completed and t, timeout=20, what=tid)


def token_of(client, jid, tid):
    client.task.add(jid, models.TaskAddParameter(
        id=tid, command_line="/bin/sh -c 'printf %s \"$AZ_BATCH_AUTHENTICATION_TOKEN\"'",
        authentication_token_settings=models.AuthenticationTokenSettings(access=[models.AccessScope.job])))
    t = completed(client, jid, tid)
    assert t.execution_info.exit_code == 0
    assert t.authentication_token_settings.access == [models.AccessScope.job]
    return b"".join(client.file.get_from_task(jid, tid, "stdout.txt")).decode()


def with_token(server, token):
    return BatchServiceClient(BasicTokenAuthentication({"access_token": token}), batch_url=server.endpoint)


def assert_refused(call):
    with pytest.raises(models.BatchErrorException) as e:
        call()
    assert e.value.response.status_code == 403
    assert e.value.error.code == "AuthenticationFailed"


def test_token_works_for_its_job_only(client, server, pool, uid):
    jid, other = uid("tok"), uid("tok")
    for j in (jid, other):
        client.job.add(models.JobAddParameter(id=j, pool_info=models.PoolInformation(pool_id=pool)))
    token = token_of(client, jid, "issuer")
    assert token, "the task saw its token"
    as_task = with_token(server, token)
    # Operations on the task's own job: adding a task (which then runs), reading.
    as_task.task.add(jid, models.TaskAddParameter(id="added-with-token", command_line="/bin/true"))
    assert completed(client, jid, "added-with-token").execution_info.exit_code == 0
    assert as_task.job.get(jid).id == jid
    assert {t.id for t in as_task.task.list(jid)} == {"issuer", "added-with-token"}
    # Anything else is refused.
    assert_refused(lambda: as_task.job.get(other))
    assert_refused(lambda: as_task.task.add(other, models.TaskAddParameter(id="x", command_line="/bin/true")))
    assert_refused(lambda: list(as_task.job.list()))
    assert_refused(lambda: list(as_task.pool.list()))
    assert_refused(lambda: as_task.job.add(models.JobAddParameter(id=uid("tok"), pool_info=models.PoolInformation(pool_id=pool))))
    # A tampered token is no credential at all.
    assert_refused(lambda: with_token(server, token[:-2] + ("AA" if not token.endswith("AA") else "BB")).job.get(jid))
    for j in (jid, other):
        client.job.terminate(j)


def test_no_token_unless_asked(client, pool, uid):
    jid = uid("tok")
    client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pool)))
    client.task.add(jid, models.TaskAddParameter(id="plain", command_line="/bin/sh -c 'printf %s \"$AZ_BATCH_AUTHENTICATION_TOKEN\"'"))
    completed(client, jid, "plain")
    assert b"".join(client.file.get_from_task(jid, "plain", "stdout.txt")) == b""
    client.job.terminate(jid)
