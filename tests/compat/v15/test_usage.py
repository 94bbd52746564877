"""Pool usage metrics (issue 14) through azure-batch 15.1.0: the core-hours
a pool's nodes were allocated, per hour, recorded by the server, kept across
a restart, with starttime/endtime/$filter as the service documents them."""
import datetime
import os
import tempfile
import time

import pytest
from azure.batch import models

from conftest import Server, batch_client, start_pool
from rawclient import Raw

HOUR = datetime.timedelta(hours=1)
CORES = os.cpu_count()  # what each local node's agent reports


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="openbatch-usage-") as d:
        s = Server(d)
        s.start()
        yield s
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return batch_client(server)


def usage(client, pool_id, **kw):
    return list(client.list_pool_usage_metrics(filter=f"poolId eq '{pool_id}'", **kw))


def test_usage_is_recorded_per_pool_and_hour(client, server, uid):
    pid = uid("usage")
    before = datetime.datetime.now(datetime.timezone.utc)
    start_pool(client, pid, nodes=2, vm_size="standard_d4s_v3")
    time.sleep(1.0)
    (first,) = usage(client, pid)  # no times: the last interval that has usage
    after = datetime.datetime.now(datetime.timezone.utc)
    assert first.pool_id == pid and first.vm_size == "standard_d4s_v3"
    assert first.end_time - first.start_time == HOUR
    assert first.start_time.minute == first.start_time.second == 0
    assert first.start_time <= after < first.end_time
    # Two nodes for at least a second each, at most for as long as the test ran.
    elapsed = (after - before).total_seconds()
    assert 2 * 1.0 * CORES / 3600 <= first.total_core_hours <= 2 * elapsed * CORES / 3600 + 1e-6, first.total_core_hours
    time.sleep(0.5)
    (again,) = usage(client, pid)
    assert again.total_core_hours > first.total_core_hours, "usage grows while the nodes are there"

    # starttime/endtime select the intervals by their start.
    now = datetime.datetime.now(datetime.timezone.utc)
    (ranged,) = usage(client, pid, start_time=now - 3 * HOUR, end_time=now + HOUR)
    assert ranged.start_time == first.start_time
    assert usage(client, pid, start_time=now - 3 * HOUR, end_time=first.start_time) == []
    assert usage(client, pid, start_time=first.end_time) == []
    # Other pools' entries are there without the filter, and none is this pool's twice.
    everything = list(client.list_pool_usage_metrics(start_time=now - 3 * HOUR))
    assert [m.pool_id for m in everything].count(pid) == 1

    # What the nodes used survives the pool (it existed in the interval) and a restart.
    client.begin_delete_pool(pid, polling_interval=0.2).result()
    (gone,) = usage(client, pid, start_time=now - 3 * HOUR)
    assert gone.total_core_hours >= again.total_core_hours
    server.restart()
    (kept,) = usage(client, pid, start_time=now - 3 * HOUR)
    assert kept.total_core_hours == pytest.approx(gone.total_core_hours, abs=1e-6)


def test_bad_times_are_refused(server):
    raw = Raw(server.endpoint, server.account, server.key)
    for query, name in [({"starttime": "yesterday"}, "starttime"), ({"endtime": "2026-13-01T00:00:00Z"}, "endtime"),
                        ({"starttime": "2026-01-02T00:00:00Z", "endtime": "2026-01-01T00:00:00Z"}, "endtime")]:
        r = raw.request("GET", "/poolusagemetrics", query=query)
        assert r.status_code == 400 and r.json()["code"] == "InvalidQueryParameterValue", r.text
        assert {"key": "QueryParameterName", "value": name} in r.json()["values"]


def test_2018_08_entries_carry_data_transfer(client, server, uid):
    pid = uid("usage7")
    start_pool(client, pid, nodes=1)
    try:
        raw = Raw(server.endpoint, server.account, server.key)
        r = raw.request("GET", "/poolusagemetrics", query={"$filter": f"poolId eq '{pid}'"}, api_version="2018-08-01.7.0")
        assert r.status_code == 200, r.text
        (entry,) = r.json()["value"]
        assert (entry["dataIngressGiB"], entry["dataEgressGiB"]) == (0, 0) and entry["totalCoreHours"] > 0
        latest = raw.request("GET", "/poolusagemetrics", query={"$filter": f"poolId eq '{pid}'"}).json()["value"][0]
        assert "dataIngressGiB" not in latest
    finally:
        client.begin_delete_pool(pid, polling_interval=0.2).result()
