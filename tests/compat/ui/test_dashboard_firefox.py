"""The dashboard's user journeys in Firefox (Debian's `firefox-esr`, which
scripts/test installs), the same as test_dashboard.py's in Chromium: the
page's signer, sign in (a wrong key refused), a pool's nodes, a job's tasks
with server-side paging and filters, a running task's output growing live,
the autoscale evaluate box, job schedules.

firefox.mjs drives the browser (puppeteer-core over WebDriver BiDi, pinned in
../node): one Firefox for the module, one journey per test, each in a new
browser context. It waits for what each page must show and answers what it
saw; the tests here compare that with the API, and fail on any uncaught
error in the page. Screenshots go beside Chromium's, named `firefox-*.png`."""
import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

from conftest import HERE, UI_SHOTS, add_tasks, browser_signing_vectors, wait_for

DRIVER = os.path.join(HERE, "ui", "firefox.mjs")
PUPPETEER = os.path.join(HERE, "node", "node_modules", "puppeteer-core")
REPLY_TIMEOUT = 90  # s, for one journey (its waits are shorter)


def firefox_path():
    for name in ("firefox-esr", "firefox"):
        p = shutil.which(name)
        if p:
            return p
    pytest.fail("no Firefox found: install Debian's `firefox-esr` package (scripts/test does)")


class Firefox:
    """firefox.mjs running: `run(journey, **args)` is what the journey saw."""

    def __init__(self, server):
        if not os.path.isdir(PUPPETEER):
            pytest.fail("puppeteer-core is not installed in tests/compat/node (run.sh runs `npm ci` there)")
        self.proc = subprocess.Popen(
            ["node", DRIVER, server.endpoint, server.account, server.key, UI_SHOTS, firefox_path()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.replies = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        started = time.time()
        ready = self._reply(timeout=60)
        assert ready.get("ready"), ready
        self.version = ready["browser"]
        self.launch_seconds = time.time() - started

    def _read(self):
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def _reply(self, timeout=REPLY_TIMEOUT):
        try:
            r = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"firefox.mjs did not answer within {timeout} s") from None
        if r is None:
            raise AssertionError(f"firefox.mjs exited (status {self.proc.wait()}); its stderr is above")
        return r

    def run(self, journey, **args):
        self.proc.stdin.write(json.dumps({"journey": journey, "args": args}) + "\n")
        self.proc.stdin.flush()
        r = self._reply()
        assert r["ok"], f"{journey} in Firefox: {r['error']}\npage errors: {r['pageErrors']}"
        assert not r["pageErrors"], f"uncaught errors in the page ({journey}): {r['pageErrors']}"
        return r["result"]

    def close(self):
        self.proc.stdin.close()  # the driver closes the browser at end of input
        try:
            assert self.proc.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture(scope="module")
def firefox(server):
    ff = Firefox(server)
    yield ff
    ff.close()


def test_signer_matches_the_reference_vectors(firefox):
    """Firefox's WebCrypto gives every Python/CLI vector's signature."""
    vectors = browser_signing_vectors()
    assert len(vectors) >= 50
    got = firefox.run("signer", vectors=vectors)["signatures"]
    assert len(got) == len(vectors)
    for v, sig in zip(vectors, got):
        sent = next(val for n, val in v["headers"] if n.lower() == "authorization")
        assert sig == sent, (v["client"], v["method"], v["target"])


def test_sign_in_refuses_a_wrong_key_then_accepts_the_right_one(firefox, server):
    seen = firefox.run("signIn", wrongKey=base64.b64encode(os.urandom(32)).decode())
    assert "refused" in seen["refused"]
    assert seen["navHidden"]
    assert "base64" in seen["notBase64"]
    # The key is in this tab's session storage, never in the URL.
    assert server.key not in seen["url"]
    assert server.key in seen["stored"]


def test_overview_and_pool_show_the_nodes(firefox, ui_raw, ui_pool):
    seen = firefox.run("overviewAndPool", pool=ui_pool)
    api_nodes = ui_raw.request("GET", f"/pools/{ui_pool}/nodes").json()["value"]
    assert sorted(c["node"] for c in seen["cells"]) == sorted(n["id"] for n in api_nodes)
    assert [c["state"] for c in seen["cells"]] == ["idle"] * len(api_nodes)
    assert sorted(seen["nodes"]) == sorted(n["id"] for n in api_nodes)


def test_job_page_pages_and_filters_tasks_on_the_server(firefox, ui_raw, ui_pool):
    job = "ffjob"
    r = ui_raw.request("POST", "/jobs", {"id": job, "poolInfo": {"poolId": ui_pool}})
    assert r.status_code == 201, r.text
    add_tasks(ui_raw, job, [{"id": f"t{i:04d}", "commandLine": "/bin/true"} for i in range(230)]
              + [{"id": "bad", "commandLine": "/bin/sh -c 'exit 3'"}])
    wait_for(lambda: ui_raw.request("GET", f"/jobs/{job}/taskcounts").json()["taskCounts"]["completed"] == 231,
             timeout=60, what="all tasks completed")
    seen = firefox.run("jobPage", job=job)
    # "bad" sorts first: page two is t0099..t0198, page three t0199..t0229.
    assert seen["pages"] == [[f"t{i:04d}" for i in range(99, 199)], [f"t{i:04d}" for i in range(199, 230)]]
    assert seen["nextDisabled"]
    assert seen["failed"] == ["bad"] and seen["failedCount"] == "1"
    assert seen["prefixed"] == [f"t012{i}" for i in range(10)]
    # Task lists are asked one page at a time, never the whole job.
    lists = [u for u in seen["requests"]
             if f"/jobs/{job}/tasks?" in u and "$select=id,state,creationTime,executionInfo,nodeInfo" in u]
    assert lists and all("maxresults=100" in u for u in lists), lists


def test_running_task_output_grows_live(firefox, ui_raw, ui_pool):
    job = "fflive"
    r = ui_raw.request("POST", "/jobs", {"id": job, "poolInfo": {"poolId": ui_pool}})
    assert r.status_code == 201, r.text
    script = "for i in $(seq 1 40); do echo line $i; echo err $i >&2; sleep 0.2; done"
    r = ui_raw.request("POST", f"/jobs/{job}/tasks", {"id": "talk", "commandLine": f"/bin/sh -c '{script}'"})
    assert r.status_code == 201, r.text
    seen = firefox.run("liveOutput", job=job, task="talk")
    # New output appeared within a second, without a reload, while the task ran.
    assert seen["grewAfterMs"] is not None, "no new output within a second"
    assert "live" in seen["status"], seen
    assert ui_raw.request("GET", f"/jobs/{job}/tasks/talk").json()["state"] == "running"
    seen = firefox.run("liveOutputEnd")
    assert seen["sameDocument"] is True
    assert [line for line in seen["stdout"].splitlines() if line] == [f"line {i}" for i in range(1, 41)]
    assert "err 40" in seen["stderr"]


def test_evaluate_formula_shows_the_result_or_the_error(firefox, ui_raw, ui_scaled_pool):
    formula = "$TargetDedicatedNodes = max(2, $CurrentDedicatedNodes); later = $TargetDedicatedNodes * 3;"
    bad = "$TargetDedicatedNodes = (1;"
    api = ui_raw.request("POST", f"/pools/{ui_scaled_pool}/evaluateautoscale", {"autoScaleFormula": formula})
    assert api.status_code == 200, api.text
    run = api.json()
    assert "$TargetDedicatedNodes=2" in run["results"] and "later=6" in run["results"], run
    api_bad = ui_raw.request("POST", f"/pools/{ui_scaled_pool}/evaluateautoscale", {"autoScaleFormula": bad})
    assert api_bad.status_code == 400 and api_bad.json()["code"] == "AutoScalingFormulaSyntaxError", api_bad.text

    seen = firefox.run("evaluate", pool=ui_scaled_pool, formula=formula, bad=bad)
    assert len(seen["load"]) == 2, seen["load"]
    for part in filter(None, (p.strip() for p in run["results"].split(";"))):
        name, _, value = part.partition("=")
        assert name in seen["shown"] and value in seen["shown"], (part, seen["shown"])
    # The variables' table and nothing else (no stray text beside it).
    assert seen["children"] == ["TABLE"], seen["children"]
    assert not seen["errorShown"]
    # A syntax error: the service's code and sentence, no request id.
    body = api_bad.json()
    sentence = body["message"]["value"].split("\nRequestId:")[0]
    assert f"{body['code']}: {sentence}" in seen["badShown"], (body, seen["badShown"])
    assert "RequestId" not in seen["badShown"]


def test_job_schedules_and_their_jobs(firefox, ui_raw, ui_pool):
    sid = "ffsched"
    r = ui_raw.request("POST", "/jobschedules", {"id": sid, "schedule": {"recurrenceInterval": "PT1H"},
                                                 "jobSpecification": {"poolInfo": {"poolId": ui_pool}}})
    assert r.status_code == 201, r.text
    first = wait_for(lambda: (ui_raw.request("GET", f"/jobschedules/{sid}").json().get("executionInfo") or {})
                     .get("recentJob"), timeout=20, what="the schedule's first job")
    seen = firefox.run("schedules", schedule=sid, job=first["id"])
    api_jobs = ui_raw.request("GET", f"/jobschedules/{sid}/jobs").json()["value"]
    assert sorted(seen["jobs"]) == sorted(j["id"] for j in api_jobs)
