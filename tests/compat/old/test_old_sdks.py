"""Older api-versions, through the old SDKs that send them (issue 14).

Each `azure-batch` version in old-sdks.txt is installed on its own
(`pip install --no-deps --target .sdks/VERSION`, run.sh does it) and runs
scenario.py in a process of its own with that version first on its path and
the 14.x virtualenv's msrest underneath: 5.1.1 sends 2018-08-01.7.0, ...,
14.1.0 sends 2023-11-01.18.0; the virtualenv's own 14.2.0 sends
2024-02-01.19.0. What only the wire shows (renamed properties under each
version, operations a version lacks) is checked with signed raw requests.

The figure: how many operations each SDK exercised (printed; with -s)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import HERE
from rawclient import Raw

SDKS_DIR = os.path.join(HERE, ".sdks")
with open(os.path.join(HERE, "old-sdks.txt")) as f:
    OLD_SDKS = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


@pytest.fixture(scope="module")
def served_file(http_files):
    base, directory = http_files
    text = "resource file for the old SDKs\n"
    with open(os.path.join(directory, "old-sdk.txt"), "w") as f:
        f.write(text)
    return f"{base}/old-sdk.txt", text


@pytest.mark.parametrize("sdk", OLD_SDKS + ["venv"])
def test_old_sdk_scenario(server, served_file, uid, sdk):
    env = dict(os.environ, OB_ENDPOINT=server.endpoint, OB_ACCOUNT=server.account, OB_KEY=server.key,
               OB_PREFIX=uid("old"), OB_FILE_URL=served_file[0], OB_FILE_TEXT=served_file[1])
    if sdk != "venv":
        path = os.path.join(SDKS_DIR, sdk)
        assert os.path.isdir(path), f"{path} missing: run.sh installs the SDKs of old-sdks.txt"
        env["PYTHONPATH"] = path
    r = subprocess.run([sys.executable, os.path.join(HERE, "old", "scenario.py")], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if sdk != "venv":
        assert result["sdk"] == sdk
    print(f"\nazure-batch {result['sdk']} (api-version {result['api_version']}): "
          f"{len(result['operations'])} operations: {', '.join(result['operations'])}")
    assert len(result["operations"]) >= 25, result


V10 = "2019-08-01.10.0"


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key)


def test_renamed_properties_on_the_wire(raw, uid):
    pid = uid("oldwire")
    body = {"id": pid, "vmSize": "standard_d2s_v3", "maxTasksPerNode": 3,
            "networkConfiguration": {"publicIPs": ["/subscriptions/s/ip/1"]}}
    r = raw.request("POST", "/pools", body, api_version=V10)
    assert r.status_code == 201, r.text
    try:
        old = raw.request("GET", f"/pools/{pid}", api_version=V10).json()
        assert old["maxTasksPerNode"] == 3 and "taskSlotsPerNode" not in old
        assert old["networkConfiguration"] == {"publicIPs": ["/subscriptions/s/ip/1"]}
        new = raw.request("GET", f"/pools/{pid}").json()
        assert new["taskSlotsPerNode"] == 3 and "maxTasksPerNode" not in new
        assert new["networkConfiguration"]["publicIPAddressConfiguration"] == {
            "provision": "usermanaged", "ipAddressIds": ["/subscriptions/s/ip/1"]}
        # $select and $filter name the old property under the old version.
        listed = raw.request("GET", "/pools", query={"$filter": f"id eq '{pid}' and maxTasksPerNode eq 3",
                                                      "$select": "id,maxTasksPerNode"}, api_version=V10).json()
        assert listed["value"] == [{"id": pid, "maxTasksPerNode": 3}], listed
        # From 2020-09-01.12.0 on, the old name is an unknown property.
        jid = uid("oldwire")
        r = raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"autoPoolSpecification": {
            "poolLifetimeOption": "job", "pool": {"vmSize": "standard_d2s_v3", "maxTasksPerNode": 2}}}}, api_version=V10)
        assert r.status_code == 201, r.text
        spec = raw.request("GET", f"/jobs/{jid}").json()["poolInfo"]["autoPoolSpecification"]["pool"]
        assert spec["taskSlotsPerNode"] == 2 and "maxTasksPerNode" not in spec
        raw.request("DELETE", f"/jobs/{jid}")
        # Task counts: bare before 2020-09-01.12.0.
        jid = uid("oldcounts")
        assert raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": pid}}).status_code == 201
        bare = raw.request("GET", f"/jobs/{jid}/taskcounts", api_version=V10).json()
        assert bare["active"] == 0 and "taskSlotCounts" not in bare, bare
        assert "taskSlotCounts" in raw.request("GET", f"/jobs/{jid}/taskcounts", api_version="2020-09-01.12.0").json()
        raw.request("DELETE", f"/jobs/{jid}")
    finally:
        raw.request("DELETE", f"/pools/{pid}")


def test_blob_source_in_2018_08(raw, uid):
    jid, v7 = uid("oldblob"), "2018-08-01.7.0"
    assert raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": "nopool"}}).status_code == 201
    try:
        r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t", "commandLine": "/bin/true",
                                                       "resourceFiles": [{"blobSource": "http://x/y", "filePath": "y"}]},
                        api_version=v7)
        assert r.status_code == 201, r.text
        assert raw.request("GET", f"/jobs/{jid}/tasks/t").json()["resourceFiles"] == [{"httpUrl": "http://x/y", "filePath": "y"}]
        old = raw.request("GET", f"/jobs/{jid}/tasks/t", api_version=v7).json()
        assert old["resourceFiles"] == [{"blobSource": "http://x/y", "filePath": "y"}]
    finally:
        raw.request("DELETE", f"/jobs/{jid}")


def test_operations_of_each_version(raw):
    def code(path, version, method="GET"):
        r = raw.request(method, path, api_version=version, body={} if method == "POST" else None)
        return r.status_code, (r.json().get("code") if r.content else None)

    assert code("/nodeagentskus", "2018-12-01.8.0")[0] == 200
    assert code("/nodeagentskus", "2019-06-01.9.0") == (400, "InvalidUri")
    assert code("/supportedimages", "2018-12-01.8.0") == (400, "InvalidUri")
    assert code("/supportedimages", "2019-06-01.9.0")[0] == 200
    assert code("/lifetimejobstats", "2022-10-01.16.0") == (200, None)
    assert code("/lifetimepoolstats", "2022-10-01.16.0") == (200, None)
    assert code("/lifetimepoolstats", "2023-05-01.17.0") == (400, "InvalidUri")
    assert code("/pools/nopool/upgradeos", "2018-08-01.7.0", "POST") == (409, "OperationNotValidOnPool")
    assert code("/pools/nopool/upgradeos", "2018-12-01.8.0", "POST") == (400, "InvalidUri")
    for version in ["2017-09-01.6.0", "2019-08-01", "latest"]:
        assert code("/jobs", version) == (400, "UnsupportedRequestVersion"), version
