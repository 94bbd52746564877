"""The web dashboard at /ui/, driven in headless Chromium (Debian's
`chromium`, which scripts/test installs) with Playwright for Python (pinned
in requirements-v15.txt): sign in (a wrong key refused), a pool's nodes, a
job's tasks with server-side paging and filters, a running task's output
growing live, the autoscale evaluate box, job schedules — and the page's
SharedKey signer against the reference vectors.

A screenshot of each page goes to `<target dir>/ui-screenshots/` (the
directory holding `release/openbatch`, or $OPENBATCH_UI_SCREENSHOTS).
test_dashboard_firefox.py runs the same journeys in Firefox; the pools and
the rest they share are in ../conftest.py."""
import base64
import os
import shutil
import time

import pytest

from conftest import UI_SHOTS, add_tasks, browser_signing_vectors, wait_for

pw = pytest.importorskip("playwright.sync_api", reason="playwright is pinned in requirements-v15.txt")
expect = pw.expect

TIMEOUT = 15_000  # ms, for each wait in the browser


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    pytest.fail("no Chromium found: install Debian's `chromium` package (scripts/test does)")


@pytest.fixture(scope="module")
def browser():
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def raw(ui_raw):
    return ui_raw


@pytest.fixture(scope="module")
def pool(ui_pool):
    return ui_pool


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1366, "height": 860})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def shot(pg, name):
    os.makedirs(UI_SHOTS, exist_ok=True)
    pg.screenshot(path=os.path.join(UI_SHOTS, f"{name}.png"), full_page=True)


def sign_in(pg, server, key=None):
    pg.goto(f"{server.endpoint}/ui/")
    pg.fill("#account", server.account)
    pg.fill("#key", key or server.key)
    pg.click("#signin")


def signed_in(pg, server):
    sign_in(pg, server)
    pg.wait_for_selector("#nav:not([hidden])")


def test_assets_are_served_with_types_and_revalidation(server):
    import requests
    r = requests.get(f"{server.endpoint}/ui", allow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    r = requests.get(f"{server.endpoint}/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert requests.get(f"{server.endpoint}/ui/", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    js = requests.get(f"{server.endpoint}/ui/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert requests.get(f"{server.endpoint}/ui/nope.js").status_code == 404
    assert requests.post(f"{server.endpoint}/ui/app.js").status_code == 405
    # The API itself still wants a signature.
    assert requests.get(f"{server.endpoint}/pools?api-version=2025-06-01").status_code == 401


def test_signer_matches_the_reference_vectors(page, server):
    """The page's WebCrypto signer gives every Python/CLI vector's signature."""
    vectors = browser_signing_vectors()
    assert len(vectors) >= 50
    page.goto(f"{server.endpoint}/ui/")
    results = page.evaluate("""async (vectors) => {
        const sk = await import("/ui/sharedkey.js");
        const out = [];
        for (const v of vectors) {
            const key = await sk.importKey(v.key);
            const headers = v.headers.filter(([n]) => n.toLowerCase() !== "authorization");
            out.push(await sk.authorization(v.account, key, v.method, v.target, headers));
        }
        return out;
    }""", vectors)
    for v, got in zip(vectors, results):
        sent = next(val for n, val in v["headers"] if n.lower() == "authorization")
        assert got == sent, (v["client"], v["method"], v["target"])


def test_sign_in_refuses_a_wrong_key_then_accepts_the_right_one(page, server):
    sign_in(page, server, key=base64.b64encode(os.urandom(32)).decode())
    err = page.wait_for_selector(".signin-error:not([hidden])")
    assert "refused" in err.inner_text()
    assert page.is_hidden("#nav")
    page.fill("#key", "not base64!")
    page.click("#signin")
    expect(page.locator(".signin-error")).to_contain_text("base64")
    shot(page, "signin")
    page.fill("#key", server.key)
    page.click("#signin")
    page.wait_for_selector("#nav:not([hidden])")
    # The key is in this tab's session storage, never in the URL.
    assert server.key not in page.url
    assert server.key in page.evaluate("sessionStorage.getItem('openbatch.credentials')")
    page.wait_for_selector("#pools table")


def test_overview_and_pool_show_the_nodes(page, server, raw, pool):
    signed_in(page, server)
    cell = page.wait_for_selector(f"tr[data-pool={pool}] .heatmap .cell")
    assert cell.get_attribute("data-state") == "idle"
    shot(page, "overview")
    page.goto(f"{server.endpoint}/ui/#/pools/{pool}")
    page.wait_for_selector("#nodes tr[data-node]")
    api_nodes = raw.request("GET", f"/pools/{pool}/nodes").json()["value"]
    shown = page.eval_on_selector_all("#nodes tr[data-node]", "rows => rows.map(r => r.dataset.node)")
    assert sorted(shown) == sorted(n["id"] for n in api_nodes)
    shot(page, "pool")


def test_job_page_pages_and_filters_tasks_on_the_server(page, server, raw, pool):
    job = "uijob"
    r = raw.request("POST", "/jobs", {"id": job, "poolInfo": {"poolId": pool}})
    assert r.status_code == 201, r.text
    add_tasks(raw, job, [{"id": f"t{i:04d}", "commandLine": "/bin/true"} for i in range(230)]
              + [{"id": "bad", "commandLine": "/bin/sh -c 'exit 3'"}])
    wait_for(lambda: raw.request("GET", f"/jobs/{job}/taskcounts").json()["taskCounts"]["completed"] == 231,
             timeout=60, what="all tasks completed")
    signed_in(page, server)
    requests_seen = []
    page.on("request", lambda req: requests_seen.append(req.url))
    page.goto(f"{server.endpoint}/ui/#/jobs/{job}")
    rows = page.locator("#tasks tr[data-task]")
    expect(rows).to_have_count(100)
    page.wait_for_selector("#timeline svg rect")
    shot(page, "job")
    page.click("#next")
    expect(rows.first).to_have_attribute("data-task", "t0099")  # "bad" sorts first
    page.click("#next")
    expect(rows).to_have_count(31)
    assert page.is_disabled("#next")
    # Task lists are asked one page at a time, never the whole job.
    lists = [u for u in requests_seen if f"/jobs/{job}/tasks?" in u and "$select=id,state,creationTime,executionInfo,nodeInfo" in u]
    assert lists and all("maxresults=100" in u for u in lists), lists
    page.click("a.chip[data-filter=failed]")
    expect(rows).to_have_count(1)
    assert page.get_attribute("#tasks tr[data-task]", "data-task") == "bad"
    assert page.inner_text("a.chip[data-filter=failed] .count") == "1"
    page.fill("#task-prefix", "t012")
    page.press("#task-prefix", "Enter")
    expect(rows).to_have_count(0)
    expect(page.locator("#tasks")).to_contain_text("No tasks match")
    page.click("a.chip[data-filter=all]")
    expect(rows).to_have_count(10)


def test_running_task_output_grows_live(page, server, raw, pool):
    job = "uilive"
    r = raw.request("POST", "/jobs", {"id": job, "poolInfo": {"poolId": pool}})
    assert r.status_code == 201, r.text
    script = "for i in $(seq 1 40); do echo line $i; echo err $i >&2; sleep 0.2; done"
    r = raw.request("POST", f"/jobs/{job}/tasks", {"id": "talk", "commandLine": f"/bin/sh -c '{script}'"})
    assert r.status_code == 201, r.text
    signed_in(page, server)
    page.goto(f"{server.endpoint}/ui/#/jobs/{job}/tasks/talk")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#stdout")).to_contain_text("line 3")
    assert raw.request("GET", f"/jobs/{job}/tasks/talk").json()["state"] == "running"
    before = page.eval_on_selector("#stdout", "e => e.textContent.length")
    # New output appears within a second, without a reload.
    deadline = time.time() + 1.0
    while page.eval_on_selector("#stdout", "e => e.textContent.length") <= before:
        assert time.time() < deadline, "no new output within a second"
        time.sleep(0.02)
    shot(page, "task-running")
    expect(page.locator("#stdout")).to_contain_text("line 40", timeout=30_000)
    expect(page.locator("#stdout-status")).to_contain_text("complete")
    assert page.evaluate("window.__sameDocument") is True
    stdout = page.inner_text("#stdout")
    assert [line for line in stdout.splitlines() if line] == [f"line {i}" for i in range(1, 41)]
    assert "err 40" in page.inner_text("#stderr")
    page.wait_for_selector("#files button:has-text('stdout.txt')")
    shot(page, "task")


@pytest.fixture(scope="module")
def scaled_pool(ui_scaled_pool):
    return ui_scaled_pool


def test_evaluate_formula_shows_the_result_or_the_error(page, server, raw, scaled_pool):
    formula = "$TargetDedicatedNodes = max(2, $CurrentDedicatedNodes); later = $TargetDedicatedNodes * 3;"
    api = raw.request("POST", f"/pools/{scaled_pool}/evaluateautoscale", {"autoScaleFormula": formula})
    assert api.status_code == 200, api.text
    run = api.json()
    assert "$TargetDedicatedNodes=2" in run["results"] and "later=6" in run["results"], run
    signed_in(page, server)
    page.goto(f"{server.endpoint}/ui/#/pools/{scaled_pool}")
    page.wait_for_selector("#nodes tr[data-node]")
    # The node's CPU and memory, as its agent measures them (two heartbeats).
    page.wait_for_function("""() => {
        const cells = [...document.querySelectorAll('#nodes td[data-cpu], #nodes td[data-memory]')];
        return cells.length >= 2 && cells.every((td) => /^[0-9.]+ (%|B|KiB|MiB|GiB)$/.test(td.textContent));
    }""", timeout=20_000)
    page.fill("#formula", formula)
    page.click("#evaluate")
    page.wait_for_selector("#autoscale-result > *")
    shown = page.inner_text("#autoscale-result")
    # The variables' table and nothing else (no stray text beside it).
    assert page.eval_on_selector("#autoscale-result", "e => [...e.childNodes].map(n => n.nodeName)") == ["TABLE"]
    for part in filter(None, (p.strip() for p in run["results"].split(";"))):
        name, _, value = part.partition("=")
        assert name in shown and value in shown, (part, shown)
    assert not page.is_visible("#autoscale-result .error")
    shot(page, "pool-autoscale")

    # A syntax error: the service's code and sentence, no request id.
    bad = "$TargetDedicatedNodes = (1;"
    api = raw.request("POST", f"/pools/{scaled_pool}/evaluateautoscale", {"autoScaleFormula": bad})
    assert api.status_code == 400 and api.json()["code"] == "AutoScalingFormulaSyntaxError", api.text
    page.fill("#formula", bad)
    page.click("#evaluate")
    page.wait_for_selector("#autoscale-result .error")
    shown = page.inner_text("#autoscale-result")
    body = api.json()
    sentence = body["message"]["value"].split("\nRequestId:")[0]
    assert f"{body['code']}: {sentence}" in shown, (body, shown)
    assert "RequestId" not in shown


def test_job_schedules_and_their_jobs(page, server, raw, pool):
    sid = "uisched"
    r = raw.request("POST", "/jobschedules", {"id": sid, "schedule": {"recurrenceInterval": "PT1H"},
                                              "jobSpecification": {"poolInfo": {"poolId": pool}}})
    assert r.status_code == 201, r.text
    first = wait_for(lambda: (raw.request("GET", f"/jobschedules/{sid}").json().get("executionInfo") or {})
                     .get("recentJob"), timeout=20, what="the schedule's first job")
    signed_in(page, server)
    page.goto(f"{server.endpoint}/ui/#/schedules")
    page.wait_for_selector(f"tr[data-schedule={sid}]")
    shot(page, "schedules")
    page.click(f"tr[data-schedule={sid}] a")
    page.wait_for_selector(f"#schedule-jobs a:has-text('{first['id']}')")
    shot(page, "schedule")
