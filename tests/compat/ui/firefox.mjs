// The dashboard's user journeys in Firefox: Debian's firefox-esr, headless,
// driven over WebDriver BiDi by puppeteer-core (pinned in ../node; it
// downloads no browser).
//
//   node firefox.mjs ENDPOINT ACCOUNT KEY SCREENSHOT_DIR FIREFOX_BINARY
//
// One browser for the whole run. It reads one command per line on stdin,
//   {"journey": NAME, "args": {...}}
// runs that journey (test_dashboard_firefox.py sends them, one per test, the
// same journeys as test_dashboard.py's Chromium ones) and answers one line
// on stdout:
//   {"ok": true, "result": {...}, "pageErrors": [...]}
//   {"ok": false, "error": "...", "pageErrors": [...]}
// The journey waits for what the page must show (a wait that times out is
// the error) and reports what it saw; the Python side compares that with the
// API. Every journey but a continuation (`fresh: false`) starts in a new
// browser context (its own session storage), like a new Playwright context.
// The first line, once the browser is up, is {"ready": true, "browser": ...}.

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const require = createRequire(new URL("../node/", import.meta.url));
const puppeteer = require("puppeteer-core");

const [endpoint, account, key, shots, firefox] = process.argv.slice(2);
if (!firefox) {
  console.error("usage: node firefox.mjs ENDPOINT ACCOUNT KEY SCREENSHOT_DIR FIREFOX_BINARY");
  process.exit(2);
}
const TIMEOUT = 15_000; // ms, for each wait in the browser
const VIEWPORT = { width: 1366, height: 860 };

// ---------------------------------------------------------------------------
// Page helpers (the counterparts of Playwright's expect()).

async function shot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `firefox-${name}.png`), fullPage: true });
}

const fill = (page, sel, value) => page.locator(sel).fill(value);
const click = (page, sel) => page.locator(sel).click();

function waitCount(page, sel, n, what) {
  return page.waitForFunction((s, k) => document.querySelectorAll(s).length === k, {}, sel, n)
    .catch((e) => fail(e, `${what || sel}: expected ${n} element(s)`));
}

function waitText(page, sel, text, timeout = TIMEOUT) {
  return page.waitForFunction((s, t) => {
    const el = document.querySelector(s);
    return el && el.textContent.includes(t);
  }, { timeout }, sel, text).catch((e) => fail(e, `${sel} never showed "${text}"`));
}

function fail(e, what) {
  throw new Error(`${what} (${e.message.split("\n")[0]})`);
}

const text = (page, sel) => page.$eval(sel, (e) => e.innerText);
const visible = (page, sel) => page.$eval(sel, (e) => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length)).catch(() => false);

async function signIn(page, k = key) {
  await page.goto(`${endpoint}/ui/`);
  await fill(page, "#account", account);
  await fill(page, "#key", k);
  await click(page, "#signin");
}

async function signedIn(page) {
  await signIn(page);
  await page.waitForSelector("#nav:not([hidden])");
}

const go = (page, hash) => page.goto(`${endpoint}/ui/${hash}`);

// ---------------------------------------------------------------------------
// The journeys (each `fn(session, args)`; session.page is the page).

const journeys = {
  /// The page's WebCrypto signer over the reference vectors: the signatures.
  signer: {
    async fn({ page }, { vectors }) {
      await page.goto(`${endpoint}/ui/`);
      const signatures = await page.evaluate(async (vs) => {
        const sk = await import("/ui/sharedkey.js");
        const out = [];
        for (const v of vs) {
          const k = await sk.importKey(v.key);
          const headers = v.headers.filter(([n]) => n.toLowerCase() !== "authorization");
          out.push(await sk.authorization(v.account, k, v.method, v.target, headers));
        }
        return out;
      }, vectors);
      return { signatures };
    },
  },

  /// A wrong key, then a key that is not base64, then the right key.
  signIn: {
    async fn({ page }, { wrongKey }) {
      await signIn(page, wrongKey);
      await page.waitForSelector(".signin-error:not([hidden])");
      const refused = await text(page, ".signin-error");
      const navHidden = !(await visible(page, "#nav"));
      await fill(page, "#key", "not base64!");
      await click(page, "#signin");
      await waitText(page, ".signin-error", "base64");
      const notBase64 = await text(page, ".signin-error");
      await shot(page, "signin");
      await fill(page, "#key", key);
      await click(page, "#signin");
      await page.waitForSelector("#nav:not([hidden])");
      const url = page.url();
      const stored = await page.evaluate(() => sessionStorage.getItem("openbatch.credentials"));
      await page.waitForSelector("#pools table");
      return { refused, navHidden, notBase64, url, stored };
    },
  },

  /// The overview's heatmap cells of a pool, then the pool page's node rows.
  overviewAndPool: {
    async fn({ page }, { pool }) {
      await signedIn(page);
      await page.waitForSelector(`tr[data-pool="${pool}"] .heatmap .cell`);
      const cells = await page.$$eval(`tr[data-pool="${pool}"] .heatmap .cell`, (cs) => cs.map((c) => ({ node: c.dataset.node, state: c.dataset.state })));
      await shot(page, "overview");
      await go(page, `#/pools/${pool}`);
      await page.waitForSelector("#nodes tr[data-node]");
      const nodes = await page.$$eval("#nodes tr[data-node]", (rows) => rows.map((r) => r.dataset.node));
      await shot(page, "pool");
      return { cells, nodes };
    },
  },

  /// A job's tasks: three pages, the failed filter, an id prefix.
  jobPage: {
    async fn({ page }, { job }) {
      await signedIn(page);
      const requests = [];
      page.on("request", (r) => requests.push(r.url()));
      await go(page, `#/jobs/${job}`);
      const rows = "#tasks tr[data-task]";
      await waitCount(page, rows, 100, "first page");
      await page.waitForSelector("#timeline svg rect");
      await shot(page, "job");
      const pages = [];
      await click(page, "#next");
      await page.waitForFunction((s) => { const r = document.querySelector(s); return r && r.dataset.task === "t0099"; }, {}, rows)
        .catch((e) => fail(e, "the second page never started at t0099"));
      pages.push(await page.$$eval(rows, (rs) => rs.map((r) => r.dataset.task)));
      await click(page, "#next");
      await waitCount(page, rows, 31, "third page");
      pages.push(await page.$$eval(rows, (rs) => rs.map((r) => r.dataset.task)));
      const nextDisabled = await page.$eval("#next", (b) => b.disabled);
      await click(page, "a.chip[data-filter=failed]");
      await waitCount(page, rows, 1, "failed filter");
      const failed = await page.$$eval(rows, (rs) => rs.map((r) => r.dataset.task));
      const failedCount = await text(page, "a.chip[data-filter=failed] .count");
      await fill(page, "#task-prefix", "t012");
      await page.focus("#task-prefix");
      await page.keyboard.press("Enter");
      await waitCount(page, rows, 0, "failed and prefix t012");
      await waitText(page, "#tasks", "No tasks match");
      await click(page, "a.chip[data-filter=all]");
      await waitCount(page, rows, 10, "prefix t012");
      const prefixed = await page.$$eval(rows, (rs) => rs.map((r) => r.dataset.task));
      return { pages, nextDisabled, failed, failedCount, prefixed, requests };
    },
  },

  /// A running task's page: output shown, then more of it without a reload.
  liveOutput: {
    async fn(s, { job, task }) {
      const { page } = s;
      await signedIn(page);
      await go(page, `#/jobs/${job}/tasks/${task}`);
      await page.evaluate(() => { window.__sameDocument = true; });
      await waitText(page, "#stdout", "line 3");
      const length = () => page.$eval("#stdout", (e) => e.textContent.length);
      const before = await length();
      const t0 = Date.now();
      let grewAfterMs = null;
      while (Date.now() - t0 < 1000) {
        if ((await length()) > before) {
          grewAfterMs = Date.now() - t0;
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      const status = await text(page, "#stdout-status");
      await shot(page, "task-running");
      return { grewAfterMs, status };
    },
  },

  /// The same page until the task ends: all of its output, then its files.
  liveOutputEnd: {
    fresh: false,
    async fn({ page }) {
      await waitText(page, "#stdout", "line 40", 30_000);
      await waitText(page, "#stdout-status", "complete");
      const sameDocument = await page.evaluate(() => window.__sameDocument === true);
      const stdout = await text(page, "#stdout");
      const stderr = await text(page, "#stderr");
      await page.waitForSelector("#files button::-p-text(stdout.txt)");
      await shot(page, "task");
      return { sameDocument, stdout, stderr };
    },
  },

  /// The pool page's node load, then the autoscale evaluate box: a formula
  /// and one with a syntax error.
  evaluate: {
    async fn({ page }, { pool, formula, bad }) {
      await signedIn(page);
      await go(page, `#/pools/${pool}`);
      await page.waitForSelector("#nodes tr[data-node]");
      // The node's CPU and memory, as its agent measures them (two heartbeats).
      await page.waitForFunction(() => {
        const cells = [...document.querySelectorAll("#nodes td[data-cpu], #nodes td[data-memory]")];
        return cells.length >= 2 && cells.every((td) => /^[0-9.]+ (%|B|KiB|MiB|GiB)$/.test(td.textContent));
      }, { timeout: 20_000 }).catch((e) => fail(e, "no CPU and memory figures for the node"));
      const load = await page.$$eval("#nodes td[data-cpu], #nodes td[data-memory]", (tds) => tds.map((td) => td.textContent));
      await fill(page, "#formula", formula);
      await click(page, "#evaluate");
      await page.waitForSelector("#autoscale-result > *");
      const shown = await text(page, "#autoscale-result");
      const children = await page.$eval("#autoscale-result", (e) => [...e.childNodes].map((n) => n.nodeName));
      const errorShown = await visible(page, "#autoscale-result .error");
      await shot(page, "pool-autoscale");
      await fill(page, "#formula", bad);
      await click(page, "#evaluate");
      await page.waitForSelector("#autoscale-result .error");
      const badShown = await text(page, "#autoscale-result");
      return { load, shown, children, errorShown, badShown };
    },
  },

  /// The schedules list, then one schedule's page with its jobs.
  schedules: {
    async fn({ page }, { schedule, job }) {
      await signedIn(page);
      await go(page, "#/schedules");
      await page.waitForSelector(`tr[data-schedule="${schedule}"]`);
      await shot(page, "schedules");
      await click(page, `tr[data-schedule="${schedule}"] a`);
      await page.waitForSelector(`#schedule-jobs a::-p-text(${job})`);
      const jobs = await page.$$eval("#schedule-jobs a", (as) => as.map((a) => a.textContent));
      await shot(page, "schedule");
      return { jobs };
    },
  },
};

// ---------------------------------------------------------------------------
// The browser and the command loop.

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: firefox,
  headless: true,
  // Quiet: no first-run pages, telemetry or update checks.
  extraPrefsFirefox: { "browser.shell.checkDefaultBrowser": false, "app.update.enabled": false, "toolkit.telemetry.enabled": false },
});

let session = null; // {context, page, errors}

async function openSession() {
  if (session) await session.context.close().catch(() => {});
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport(VIEWPORT);
  page.setDefaultTimeout(TIMEOUT);
  const s = { context, page, errors: [] };
  page.on("pageerror", (e) => s.errors.push(String(e && e.message ? e.message : e)));
  session = s;
  return s;
}

// Uncaught errors in the page must be seen, or "no page errors" proves
// nothing: check that one thrown on purpose is reported.
{
  const s = await openSession();
  await s.page.goto("data:text/html,<p>probe</p><script>setTimeout(() => { throw new Error('probe error') }, 0)</script>");
  const deadline = Date.now() + 5000;
  while (!s.errors.some((e) => e.includes("probe error")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!s.errors.length) {
    console.error("firefox.mjs: an error thrown in the page was not reported (pageerror)");
    await browser.close();
    process.exit(1);
  }
  s.errors.length = 0;
}

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
reply({ ready: true, browser: await browser.version() });

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    reply({ ok: false, error: `not a JSON command: ${line}`, pageErrors: [] });
    continue;
  }
  const j = journeys[cmd.journey];
  if (!j) {
    reply({ ok: false, error: `no journey ${cmd.journey}`, pageErrors: [] });
    continue;
  }
  try {
    const s = j.fresh === false && session ? session : await openSession();
    const result = await j.fn(s, cmd.args || {});
    reply({ ok: true, result, pageErrors: s.errors.splice(0) });
  } catch (e) {
    reply({ ok: false, error: String(e && e.stack ? e.stack : e), pageErrors: session ? session.errors.splice(0) : [] });
  }
}
await browser.close();
