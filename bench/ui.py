"""Time to first render of the dashboard's job page, and the bytes it
transfers, in headless Chromium (Debian's `chromium`, driven by Playwright).

Usage: ui.py ENDPOINT ACCOUNT KEY JOB [RUNS]

Each run opens `/ui/#/jobs/JOB` in a fresh browser context (empty cache,
the credentials placed in session storage before the page loads, as after a
sign-in) and records, in the page, the time from navigation start to the
moment the task table has its first rows (a MutationObserver installed
before the page's own scripts), and from the DevTools protocol every
response's encoded length (headers and body as received) until then and
until the page has settled (its first refresh round done). A last run
reloads in the same context: the assets revalidate (304). Prints JSON.

Baseline: the same first task page (100 tasks, the page's `$select`)
fetched by a plain signed HTTP client (rawclient.py), and the whole job's
task list fetched the way a client without server-side paging would have to
(every page of 1,000, full documents): what the page does not download."""
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "compat"))

from playwright.sync_api import sync_playwright  # noqa: E402
from rawclient import Raw  # noqa: E402

OBSERVE = """
window.__firstRows = null;
new MutationObserver(() => {
  if (window.__firstRows === null && document.querySelector('#tasks tr[data-task]')) {
    window.__firstRows = performance.now();
  }
}).observe(document, { subtree: true, childList: true });
"""


def one_run(browser, endpoint, account, key, job, reuse=None):
    ctx = reuse or browser.new_context(viewport={"width": 1366, "height": 860})
    if reuse is None:
        creds = json.dumps(json.dumps({"account": account, "key": key}))
        ctx.add_init_script(f"sessionStorage.setItem('openbatch.credentials', {creds});")
        ctx.add_init_script(OBSERVE)
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
    responses = {}
    finished = []
    cdp.on("Network.responseReceived", lambda e: responses.__setitem__(e["requestId"], (e["response"]["url"], e["response"]["status"])))
    cdp.on("Network.loadingFinished", lambda e: finished.append((time.monotonic(), e["requestId"], e["encodedDataLength"])))
    t0 = time.monotonic()
    page.goto(f"{endpoint}/ui/#/jobs/{job}")
    page.wait_for_selector("#tasks tr[data-task]", timeout=60_000)
    rendered_ms = page.evaluate("window.__firstRows")
    timings = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const out = [['document', 0, Math.round(nav.responseEnd)], ['domContentLoaded', 0, Math.round(nav.domContentLoadedEventEnd)]];
        for (const e of performance.getEntriesByType('resource')) {
            out.push([e.name.replace(location.origin, '').split('?')[0] + (e.name.includes('$filter') ? ' ($filter)' : ''),
                      Math.round(e.startTime), Math.round(e.responseEnd)]);
        }
        return out;
    }""")
    t_render = time.monotonic()
    rows = page.locator("#tasks tr[data-task]").count()
    # Settled: the first refresh round is done (timeline drawn or "no task started").
    page.wait_for_selector("#timeline svg, #timeline p:not(:has-text('Loading'))", timeout=60_000)
    page.wait_for_timeout(300)
    by_render = sum(n for (t, _, n) in finished if t <= t_render)
    total = sum(n for (_, _, n) in finished)
    detail = [{"url": responses.get(r, ("?", 0))[0].split("?")[0].replace(endpoint, ""), "status": responses.get(r, ("?", 0))[1],
               "bytes": n} for (_, r, n) in finished]
    page.close()
    return {"first_render_ms": rendered_ms, "wall_ms": (t_render - t0) * 1000, "rows": rows,
            "bytes_until_render": by_render, "timings_ms": timings, "bytes_until_settled": total, "responses": detail}, ctx


def main():
    endpoint, account, key, job = sys.argv[1:5]
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    raw = Raw(endpoint, account, key)
    counts = raw.request("GET", f"/jobs/{job}/taskcounts").json()["taskCounts"]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        cold = []
        ctx = None
        for _ in range(runs):
            r, ctx = one_run(browser, endpoint, account, key, job)
            cold.append(r)
            ctx.close()
        # Warm: the same context twice, the second load revalidates the assets.
        _, ctx = one_run(browser, endpoint, account, key, job)
        warm, _ = one_run(browser, endpoint, account, key, job, reuse=ctx)
        ctx.close()
        browser.close()

    # Baselines: one signed page as the page asks it; and everything.
    select = "id,state,creationTime,executionInfo,nodeInfo"
    page_ms, page_bytes = [], 0
    for _ in range(20):
        t = time.monotonic()
        r = raw.request("GET", f"/jobs/{job}/tasks", query={"maxresults": "100", "$select": select})
        page_ms.append((time.monotonic() - t) * 1000)
        page_bytes = len(r.content)
    t = time.monotonic()
    all_bytes, n, query = 0, 0, {"maxresults": "1000"}
    path = f"/jobs/{job}/tasks"
    while True:
        r = raw.request("GET", path, query=query)
        body = r.json()
        all_bytes += len(r.content)
        n += len(body["value"])
        link = body.get("odata.nextLink")
        if not link:
            break
        from urllib.parse import parse_qsl, urlsplit
        u = urlsplit(link)
        path, query = u.path, {k: v for k, v in parse_qsl(u.query) if k != "api-version"}
    all_s = time.monotonic() - t

    med = lambda k: statistics.median(r[k] for r in cold)  # noqa: E731
    print(json.dumps({
        "job": job, "task_counts": counts, "runs": runs,
        "cold": {"first_render_ms_median": round(med("first_render_ms"), 1),
                 "first_render_ms": [round(r["first_render_ms"], 1) for r in cold],
                 "bytes_until_render_median": med("bytes_until_render"),
                 "bytes_until_settled_median": med("bytes_until_settled"),
                 "rows": cold[0]["rows"], "responses_first_run": cold[0]["responses"],
                 "timings_ms_last_run": cold[-1]["timings_ms"]},
        "warm_reload": {"first_render_ms": round(warm["first_render_ms"], 1), "bytes_until_render": warm["bytes_until_render"],
                        "bytes_until_settled": warm["bytes_until_settled"]},
        "baseline_one_page_signed_client": {"ms_median": round(statistics.median(page_ms), 1), "body_bytes": page_bytes},
        "baseline_whole_job_list": {"tasks": n, "body_bytes": all_bytes, "seconds": round(all_s, 2)},
    }, indent=1))


if __name__ == "__main__":
    main()
