"""What the SDKs cannot send: raw signed requests for authentication,
api-versions, error bodies, conditional headers, limits — and durability
across a SIGKILL."""
import json
import re
from email.utils import formatdate

import pytest

from rawclient import Raw

# Every published data-plane version from 2018-08-01.7.0 on (old/ drives the
# older ones with the SDK releases that send them).
API_VERSIONS = ["2025-06-01", "2024-07-01.20.0", "2024-02-01.19.0", "2023-11-01.18.0", "2023-05-01.17.0", "2022-10-01.16.0",
                "2022-01-01.15.0", "2021-06-01.14.0", "2020-09-01.12.0", "2020-03-01.11.0", "2019-08-01.10.0",
                "2019-06-01.9.0", "2018-12-01.8.0", "2018-08-01.7.0"]


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key)


def assert_batch_error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert body["message"]["lang"] == "en-US"
    assert re.search(r"\nRequestId:[0-9a-f-]{36}\nTime:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$", body["message"]["value"]), body
    assert r.headers["request-id"]
    return body


def make_job(raw, jid, **extra):
    r = raw.request("POST", "/jobs", {"id": jid, "poolInfo": {"poolId": "p"}, **extra})
    assert r.status_code == 201, r.text
    return r


def test_authentication(raw, server):
    r = raw.request("GET", "/jobs", sign=False)
    body = assert_batch_error(r, 401, "InvalidAuthenticationInfo")
    r = raw.request("GET", "/jobs", sign=False, headers={"Authorization": "SharedKey nonsense"})
    assert_batch_error(r, 400, "InvalidAuthenticationInfo")
    wrong = Raw(server.endpoint, server.account, "d3Jvbmcga2V5")
    r = wrong.request("GET", "/jobs")
    body = assert_batch_error(r, 403, "AuthenticationFailed")
    assert body["values"][0]["key"] == "AuthenticationErrorDetail"
    r = raw.request("GET", "/jobs", headers={"ocp-date": formatdate(0, usegmt=True)})
    assert_batch_error(r, 403, "AuthenticationFailed")


def test_api_versions(raw):
    for v in API_VERSIONS:
        assert raw.request("GET", "/jobs", api_version=v).status_code == 200, v
    for v in ["2018-03-01.6.1", "2017-09-01.6.0", "2019-08-01", "2020-11-01.13.0"]:
        r = raw.request("GET", "/jobs", api_version=v)
        assert_batch_error(r, 400, "UnsupportedRequestVersion")
    r = raw.request("GET", "/jobs", api_version="")
    assert_batch_error(r, 400, "MissingRequiredQueryParameter")


def test_error_bodies(raw, uid):
    assert_batch_error(raw.request("GET", "/no/such/thing"), 400, "InvalidUri")
    assert_batch_error(raw.request("DELETE", "/jobs/x/terminate"), 405, "UnsupportedHttpVerb")
    assert_batch_error(raw.request("POST", "/jobs", raw_body=b"{not json"), 400, "InvalidRequestBody")
    body = assert_batch_error(raw.request("POST", "/jobs", {"poolInfo": {"poolId": "p"}}), 400, "MissingRequiredProperty")
    assert {"key": "PropertyName", "value": "id"} in body["values"]
    assert_batch_error(raw.request("GET", f"/jobs/{uid('nojob')}"), 404, "JobNotFound")
    # Certificates are operations of the api-versions up to 2024-07-01.20.0 only.
    body = assert_batch_error(raw.request("GET", "/certificates"), 400, "InvalidUri")
    assert any("ListCertificates" in v["value"] for v in body["values"]), body
    r = raw.request("GET", "/jobs", headers={"client-request-id": "my-id-42"})
    assert r.headers["client-request-id"] == "my-id-42"


def test_create_headers(raw, uid):
    jid = uid("job")
    r = make_job(raw, jid)
    assert r.headers["DataServiceId"].endswith(f"/jobs/{jid}")
    assert r.headers["ETag"].startswith("0x")
    assert r.headers["Last-Modified"].endswith("GMT")
    r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "t1", "commandLine": "x"})
    assert r.status_code == 201
    assert r.headers["DataServiceId"].endswith(f"/jobs/{jid}/tasks/t1")


def test_conditional_requests(raw, uid):
    jid = uid("job")
    make_job(raw, jid)
    r = raw.request("GET", f"/jobs/{jid}")
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    assert r.json()["eTag"] == etag
    for value in (etag, f'"{etag}"', "*"):
        assert raw.request("GET", f"/jobs/{jid}", headers={"If-None-Match": value}).status_code == 304
        assert raw.request("GET", f"/jobs/{jid}", headers={"If-Match": value}).status_code == 200
    assert raw.request("GET", f"/jobs/{jid}", headers={"If-Modified-Since": lm}).status_code == 304
    assert raw.request("GET", f"/jobs/{jid}", headers={"If-Unmodified-Since": lm}).status_code == 200
    assert_batch_error(raw.request("GET", f"/jobs/{jid}", headers={"If-Match": "0x1"}), 412, "ConditionNotMet")
    r = raw.request("PATCH", f"/jobs/{jid}", {"priority": 3}, headers={"If-Match": f'"{etag}"'})
    assert r.status_code == 200 and r.headers["ETag"] != etag
    assert_batch_error(raw.request("PATCH", f"/jobs/{jid}", {"priority": 4}, headers={"If-Match": etag}), 412, "ConditionNotMet")
    assert_batch_error(
        raw.request("PATCH", f"/jobs/{jid}", {"priority": 4}, headers={"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}),
        412, "ConditionNotMet")


def test_collection_limits(raw, uid):
    jid = uid("job")
    make_job(raw, jid)
    tasks = [{"id": f"t{i}", "commandLine": "x"} for i in range(101)]
    assert_batch_error(raw.request("POST", f"/jobs/{jid}/addtaskcollection", {"value": tasks}), 413, "RequestBodyTooLarge")
    big = [{"id": f"b{i}", "commandLine": "x" * 11000} for i in range(99)]
    assert_batch_error(raw.request("POST", f"/jobs/{jid}/addtaskcollection", {"value": big}), 413, "RequestBodyTooLarge")
    r = raw.request("POST", f"/jobs/{jid}/addtaskcollection",
                    {"value": [{"id": "ok", "commandLine": "x"}, {"id": "OK", "commandLine": "x"}, {"id": "bad!", "commandLine": "x"}]})
    assert r.status_code == 200
    v = r.json()["value"]
    assert [x["status"] for x in v] == ["success", "clienterror", "clienterror"]
    assert v[1]["error"]["code"] == "TaskExists"
    assert v[2]["error"]["code"] == "InvalidPropertyValue"


def test_next_link_carries_every_option(raw, uid):
    jid = uid("job")
    make_job(raw, jid)
    raw.request("POST", f"/jobs/{jid}/addtaskcollection", {"value": [{"id": f"n{i}", "commandLine": "x"} for i in range(5)]})
    r = raw.request("GET", f"/jobs/{jid}/tasks", query={"maxresults": "2", "$filter": "state eq 'active'", "$select": "id,state"})
    link = r.json()["odata.nextLink"]
    assert link.startswith(raw.endpoint + f"/jobs/{jid}/tasks?")
    for part in ("api-version=2025-06-01", "maxresults=2", "$filter=", "$select=", "$skiptoken="):
        assert part in link, link


def test_durable_across_sigkill(server, uid):
    raw = Raw(server.endpoint, server.account, server.key)
    jid = uid("durable")
    make_job(raw, jid)
    r = raw.request("POST", f"/jobs/{jid}/addtaskcollection", {"value": [{"id": f"d{i}", "commandLine": "x"} for i in range(100)]})
    assert r.status_code == 200
    r = raw.request("POST", f"/jobs/{jid}/tasks", {"id": "last", "commandLine": "x"})
    assert r.status_code == 201
    server.restart(kill=True)  # SIGKILL right after the acknowledgements
    raw = Raw(server.endpoint, server.account, server.key)
    counts = raw.request("GET", f"/jobs/{jid}/taskcounts").json()
    assert counts["taskCounts"]["active"] == 101
    assert raw.request("GET", f"/jobs/{jid}/tasks/last").status_code == 200
