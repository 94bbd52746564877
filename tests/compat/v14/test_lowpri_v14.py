"""Low-priority nodes through azure-batch 14.2.0: a pool with dedicated and
low-priority targets (isDedicated, current counts, list_pool_node_counts),
and a low-priority node preempted with openbatch's own API, shown as
`preempted` and counted, then recovered."""
import tempfile

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import Server, wait_for
from rawclient import Raw


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="openbatch-lowpri14-") as d:
        s = Server(d)
        s.start()
        yield s
        s.stop()


def test_low_priority_nodes_and_a_preemption(server, uid):
    client = BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)
    raw = Raw(server.endpoint, server.account, server.key)
    pid = uid("lp14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1, target_low_priority_nodes=1))

    def idle():
        return len([n for n in client.compute_node.list(pid) if n.state == models.ComputeNodeState.idle]) == 2
    wait_for(idle, timeout=30, what="2 idle nodes")
    nodes = list(client.compute_node.list(pid))
    low = [n for n in nodes if not n.is_dedicated]
    assert len(low) == 1 and len(nodes) == 2
    pool = client.pool.get(pid)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (1, 1)

    r = raw.request("POST", f"/openbatch/pools/{pid}/nodes/{low[0].id}/preempt", {})
    assert r.status_code == 202, r.text
    assert client.compute_node.get(pid, low[0].id).state == models.ComputeNodeState.preempted
    counts = [c for c in client.account.list_pool_node_counts() if c.pool_id == pid][0]
    assert (counts.low_priority.preempted, counts.low_priority.total, counts.dedicated.total) == (1, 1, 1)
    assert client.pool.get(pid).current_low_priority_nodes == 1

    r = raw.request("POST", f"/openbatch/pools/{pid}/nodes/{low[0].id}/recover", {})
    assert r.status_code == 202, r.text
    wait_for(idle, timeout=20, what="the node recovered")
    client.pool.delete(pid)
