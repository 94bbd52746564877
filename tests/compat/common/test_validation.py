"""Bad input is refused, never acted on (raw signed HTTP): malformed JSON
bodies sent to every operation that takes a body, invalid option and enum
values, durations and environment variable names, and the list options of
/applications."""
import json
import os
import zipfile

import pytest

from conftest import start_pool, wait_for
from rawclient import Raw

NODE_POOL = "validpool"


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key)


def assert_batch_error(r, status, code, prop=None):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code, body
    assert body["message"]["lang"] == "en-US" and "RequestId:" in body["message"]["value"], body
    if prop is not None:
        assert {"key": "PropertyName", "value": prop} in body.get("values", []), body
    return body


@pytest.fixture(scope="module")
def resources(raw, server):
    """A job with a task, and a job schedule, for the operations on them
    (pool `p` exists for the whole session)."""
    from uuid import uuid4
    jid, sid = f"val-{uuid4().hex[:8]}", f"valsched-{uuid4().hex[:8]}"
    assert raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": "p"}}).status_code == 201
    assert raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t", "commandLine": "x"}).status_code == 201
    r = raw.request("POST", "/jobschedules", {"id": sid, "schedule": {"recurrenceInterval": "PT1H"},
                                               "jobSpecification": {"poolInfo": {"poolId": "p"}}})
    assert r.status_code == 201, r.text
    return jid, sid


# Every operation that takes a JSON body (method, path template). The node
# actions are refused before the node is looked up.
BODY_OPERATIONS = [
    ("POST", "/jobs"),
    ("PATCH", "/jobs/{job}"),
    ("PUT", "/jobs/{job}"),
    ("POST", "/jobs/{job}/disable"),
    ("POST", "/jobs/{job}/terminate"),
    ("POST", "/jobs/{job}/tasks"),
    ("POST", "/jobs/{job}/addtaskcollection"),
    ("PUT", "/jobs/{job}/tasks/t"),
    ("POST", "/jobschedules"),
    ("PATCH", "/jobschedules/{schedule}"),
    ("PUT", "/jobschedules/{schedule}"),
    ("POST", "/pools"),
    ("PATCH", "/pools/p"),
    ("POST", "/pools/p/updateproperties"),
    ("POST", "/pools/p/resize"),
    ("POST", "/pools/p/removenodes"),
    ("POST", "/pools/p/enableautoscale"),
    ("POST", "/pools/p/evaluateautoscale"),
    ("POST", "/pools/p/nodes/nonode/reboot"),
    ("POST", "/pools/p/nodes/nonode/reimage"),
    ("POST", "/pools/p/nodes/nonode/disablescheduling"),
]

# Bodies no operation may accept. Each would be read as a valid (or at
# least harmless) body by a lenient parser: structs read from arrays,
# unknown properties skipped undecoded, the last of repeated keys kept.
MALFORMED = {
    "array": b"[]",
    "array of an object": b'[{"priority": 1}]',
    "scalar": b'"text"',
    "null": b"null",
    "invalid utf-8": b'{"displayName": "\xff\xfe"}',
    "invalid utf-8 in an unknown property": b'{"unknownProperty": "a\xc3"}',
    "trailing garbage": b'{"unknownProperty": 1} garbage',
    "a second object": b'{"unknownProperty": 1}{"unknownProperty": 2}',
    "lone surrogate": b'{"displayName": "\\ud800"}',
    "lone trailing surrogate in an unknown property": b'{"unknownProperty": ["\\udc00x"]}',
    "duplicate keys": b'{"priority": 1, "priority": 2}',
    "duplicate unknown keys": b'{"unknownProperty": 1, "unknownProperty": 1}',
    "duplicate nested keys": b'{"metadata": [{"name": "a", "value": "b", "name": "c"}]}',
}


@pytest.mark.parametrize("method,path", BODY_OPERATIONS, ids=[f"{m} {p}" for m, p in BODY_OPERATIONS])
def test_malformed_bodies_are_refused(raw, resources, method, path):
    jid, sid = resources
    target = path.format(job=jid, schedule=sid)
    before = raw.request("GET", f"/jobs/{jid}").json()["eTag"]
    for name, body in MALFORMED.items():
        r = raw.request(method, target, raw_body=body)
        body_json = assert_batch_error(r, 400, "InvalidRequestBody")
        assert any(v["key"] == "Reason" for v in body_json.get("values", [])), (name, body_json)
    # Nothing was changed by any of them.
    assert raw.request("GET", f"/jobs/{jid}").json()["eTag"] == before


def test_well_formed_bodies_still_work(raw, resources):
    """The strict reader accepts what clients send: escapes, non-ASCII,
    surrogate pairs, whitespace around the object."""
    jid, _ = resources
    body = '\r\n {"priority": 5, "metadata": [{"name": "k", "value": "caf\\u00e9 \\ud83d\\ude00 é"}]} \n'.encode()
    r = raw.request("PATCH", f"/jobs/{jid}", raw_body=body)
    assert r.status_code == 200, r.text
    job = raw.request("GET", f"/jobs/{jid}").json()
    assert job["priority"] == 5 and job["metadata"] == [{"name": "k", "value": "café 😀 é"}]


@pytest.fixture(scope="module")
def node(client):
    start_pool(client, NODE_POOL, nodes=1)
    node = next(iter(client.list_nodes(NODE_POOL))).id
    yield node
    client.begin_delete_pool(NODE_POOL, polling_interval=0.2).result()


def node_state(raw, node):
    n = raw.request("GET", f"/pools/{NODE_POOL}/nodes/{node}").json()
    return n["state"], n["schedulingState"]


def test_node_options_are_checked_before_acting(raw, node):
    base = f"/pools/{NODE_POOL}/nodes/{node}"
    for action, prop in [("reboot", "nodeRebootOption"), ("reimage", "nodeReimageOption")]:
        for bad in (5, "bogus", "", ["requeue"], {"x": 1}, True):
            r = raw.request("POST", f"{base}/{action}", {prop: bad})
            assert_batch_error(r, 400, "InvalidPropertyValue", prop)
    # disablescheduling has no retaineddata.
    for bad in (5, "retaineddata", "later"):
        r = raw.request("POST", f"{base}/disablescheduling", {"nodeDisableSchedulingOption": bad})
        assert_batch_error(r, 400, "InvalidPropertyValue", "nodeDisableSchedulingOption")
    for bad in (5, "bogus"):
        r = raw.request("POST", f"/pools/{NODE_POOL}/removenodes", {"nodeList": [node], "nodeDeallocationOption": bad})
        assert_batch_error(r, 400, "InvalidPropertyValue", "nodeDeallocationOption")
        r = raw.request("POST", f"/pools/{NODE_POOL}/resize", {"targetDedicatedNodes": 0, "nodeDeallocationOption": bad})
        assert_batch_error(r, 400, "InvalidPropertyValue", "nodeDeallocationOption")
    # None of them was acted on: the node is still there, idle and enabled.
    assert node_state(raw, node) == ("idle", "enabled")
    pool = raw.request("GET", f"/pools/{NODE_POOL}").json()
    assert pool["targetDedicatedNodes"] == 1
    # Valid values in any case still work.
    assert raw.request("POST", f"{base}/disablescheduling", {"nodeDisableSchedulingOption": "TaskCompletion"}).status_code == 200
    assert node_state(raw, node)[1] == "disabled"
    assert raw.request("POST", f"{base}/enablescheduling").status_code == 200
    assert raw.request("POST", f"{base}/reboot", {"nodeRebootOption": "Requeue"}).status_code == 202
    wait_for(lambda: node_state(raw, node) == ("idle", "enabled"), timeout=20, what="the node back after its reboot")


def test_resize_timeouts_are_durations(raw, uid):
    pid = uid("rtpool")
    for bad in ("forever", "PT", "P1Y2", "15", 900, "PT1M", "-PT1H"):
        r = raw.request("POST", "/pools", {"id": pid, "vmSize": "small", "resizeTimeout": bad})
        assert_batch_error(r, 400, "InvalidPropertyValue", "resizeTimeout")
    r = raw.request("POST", "/pools", {"id": pid, "vmSize": "small", "resizeTimeout": "PT00H20M00S"})
    assert r.status_code == 201, r.text
    assert raw.request("GET", f"/pools/{pid}").json()["resizeTimeout"] == "PT20M"
    for bad in ("forever", "PT4M59S", 600, ""):
        r = raw.request("POST", f"/pools/{pid}/resize", {"targetDedicatedNodes": 0, "resizeTimeout": bad})
        assert_batch_error(r, 400, "InvalidPropertyValue", "resizeTimeout")
    assert raw.request("GET", f"/pools/{pid}").json()["resizeTimeout"] == "PT20M", "nothing stored"
    assert raw.request("POST", f"/pools/{pid}/resize", {"targetDedicatedNodes": 0, "resizeTimeout": "PT1H"}).status_code == 202
    assert raw.request("GET", f"/pools/{pid}").json()["resizeTimeout"] == "PT1H"
    assert raw.request("DELETE", f"/pools/{pid}").status_code == 202


BAD_ENVIRONMENTS = [
    ([{"name": "A\u0000B", "value": "v"}], "[0].name"),
    ([{"name": "OK", "value": "v"}, {"name": "A=B", "value": "v"}], "[1].name"),
    ([{"name": "=A", "value": "v"}], "[0].name"),
    ([{"name": "A", "value": "v\u0000w"}], "[0].value"),
]


def test_environment_names_are_checked(raw, uid):
    jid = uid("envjob")
    for env, suffix in BAD_ENVIRONMENTS:
        r = raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": "p"}, "commonEnvironmentSettings": env})
        assert_batch_error(r, 400, "InvalidPropertyValue", "commonEnvironmentSettings" + suffix)
        r = raw.request("POST", "/pools", {"id": uid("envpool"), "vmSize": "small",
                                           "startTask": {"commandLine": "x", "environmentSettings": env}})
        assert_batch_error(r, 400, "InvalidPropertyValue", "startTask.environmentSettings" + suffix)
    assert raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": "p"}}).status_code == 201
    for env, suffix in BAD_ENVIRONMENTS:
        r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t", "commandLine": "x", "environmentSettings": env})
        assert_batch_error(r, 400, "InvalidPropertyValue", "environmentSettings" + suffix)
        r = raw.request("POST", f"/jobs/{jid}/addtaskcollection", {"value": [{"id": "t", "commandLine": "x", "environmentSettings": env}]})
        assert r.status_code == 200
        assert r.json()["value"][0]["error"]["code"] == "InvalidPropertyValue"
    # '=' in a value is fine.
    r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t", "commandLine": "x", "environmentSettings": [{"name": "A", "value": "b=c"}]})
    assert r.status_code == 201, r.text


def test_pool_start_task_values_are_checked(raw, uid):
    pid = uid("stpool")
    for st, prop in [
        ({"commandLine": "x", "userIdentity": {"autoUser": {"elevationLevel": "root"}}}, "startTask.userIdentity.autoUser.elevationLevel"),
        ({"commandLine": "x", "userIdentity": {"autoUser": {"scope": "everywhere"}}}, "startTask.userIdentity.autoUser.scope"),
        ({"commandLine": "x", "maxTaskRetryCount": "three"}, "startTask.maxTaskRetryCount"),
        ({"commandLine": "x", "waitForSuccess": "yes"}, "startTask.waitForSuccess"),
    ]:
        assert_batch_error(raw.request("POST", "/pools", {"id": pid, "vmSize": "small", "startTask": st}), 400, "InvalidPropertyValue", prop)
        assert_batch_error(raw.request("PATCH", "/pools/p", {"startTask": st}), 400, "InvalidPropertyValue", prop)
    r = raw.request("POST", "/pools", {"id": pid, "vmSize": "small", "startTask": {
        "commandLine": "x", "userIdentity": {"autoUser": {"elevationLevel": "Admin", "scope": "pool"}}, "waitForSuccess": True}})
    assert r.status_code == 201, r.text
    assert raw.request("DELETE", f"/pools/{pid}").status_code == 202


def test_pool_enum_and_flag_values_are_checked(raw, uid):
    pid = uid("enumpool")
    for extra, prop in [
        ({"userAccounts": [{"name": "u1", "password": "p", "elevationLevel": 5}]}, "userAccounts[0].elevationLevel"),
        ({"userAccounts": [{"name": "u1", "password": "p", "elevationLevel": "root"}]}, "userAccounts[0].elevationLevel"),
        ({"taskSchedulingPolicy": {"nodeFillType": 1}}, "taskSchedulingPolicy.nodeFillType"),
        ({"enableAutoScale": "false"}, "enableAutoScale"),
        ({"enableInterNodeCommunication": 1}, "enableInterNodeCommunication"),
        ({"targetNodeCommunicationMode": "fast"}, "targetNodeCommunicationMode"),
    ]:
        r = raw.request("POST", "/pools", {"id": pid, "vmSize": "small", **extra})
        assert_batch_error(r, 400, "InvalidPropertyValue", prop)
    assert_batch_error(raw.request("PATCH", "/pools/p", {"targetNodeCommunicationMode": 3}), 400, "InvalidPropertyValue",
                       "targetNodeCommunicationMode")
    assert raw.request("GET", f"/pools/{pid}").status_code == 404, "nothing was created"


@pytest.fixture(scope="module")
def applications(server):
    """Five registered applications (files in the registry directory)."""
    root = os.path.join(server.data_dir, "applications")
    ids = [f"pagedapp{i}" for i in range(5)]
    for app in ids:
        os.makedirs(os.path.join(root, app), exist_ok=True)
        with zipfile.ZipFile(os.path.join(root, app, "1.0.zip"), "w") as z:
            z.writestr("readme.txt", app)
    return ids


def test_applications_are_paged_and_refuse_filters(raw, client, applications):
    seen, query = [], {"maxresults": "2"}
    pages = 0
    r = raw.request("GET", "/applications", query=query)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["value"]) <= 2
        seen += [a["id"] for a in body["value"]]
        pages += 1
        link = body.get("odata.nextLink")
        if not link:
            break
        assert "maxresults=2" in link and "$skiptoken=" in link, link
        q = dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&"))
        from urllib.parse import unquote
        r = raw.request("GET", "/applications", query={"maxresults": "2", "$skiptoken": unquote(q["$skiptoken"])})
    assert set(applications) <= set(seen)
    assert len(seen) == len(set(seen)), "no application twice"
    assert seen == sorted(seen, key=str.lower)
    assert pages >= 3
    # The SDK follows the links.
    assert [a.id for a in client.list_applications(max_results=1)] == seen
    for bad in ("0", "1001", "x"):
        r = raw.request("GET", "/applications", query={"maxresults": bad})
        assert r.status_code == 400 and r.json()["code"] in ("OutOfRangeQueryParameterValue", "InvalidQueryParameterValue"), r.text
    for name, value in [("$filter", "id eq 'pagedapp1'"), ("$select", "id"), ("$expand", "stats")]:
        r = raw.request("GET", "/applications", query={name: value})
        body = assert_batch_error(r, 400, "UnsupportedQueryParameter")
        assert {"key": "QueryParameterName", "value": name} in body["values"]
