// The openbatch dashboard: hash-routed pages over the Batch REST API.
//
//   #/                          overview: pools (node heatmap), jobs (task counts), recent failures
//   #/pools/ID                  a pool: nodes, start task, resize, autoscale evaluation
//   #/jobs/ID?state=S&prefix=P  a job: tasks (server-side filter and paging), timeline, actions
//   #/jobs/ID/tasks/TID         a task: properties, files, live stdout/stderr
//   #/schedules, #/schedules/ID job schedules and their jobs
//
// Each page refreshes itself on a timer while it is shown; leaving it aborts
// its requests and timers.

import { BatchError, Client, seg, target } from "./api.js";
import { ago, badge, bytes, duration, fill, h, link, percent, props, section, svg, table, time } from "./dom.js";

const main = document.getElementById("main");
let client = null;
let page = null;

const PAGE_SIZE = 100;
const SAMPLE = 500;
const OUTPUT_POLL_MS = 500;
const OUTPUT_KEEP = 2 << 20; // characters of output kept on screen
const OUTPUT_TAIL = 256 << 10; // bytes of an existing file read at first

// ---------------------------------------------------------------------------
// Pages, timers and errors.

function startPage() {
  if (page) {
    page.ctrl.abort();
    for (const t of page.timers) clearTimeout(t);
  }
  page = { ctrl: new AbortController(), timers: [] };
  return page;
}

const aborted = (e) => e && e.name === "AbortError";

/// Runs `fn` now and every `ms` while the page is shown (waiting for each run).
function every(p, ms, fn) {
  const tick = async () => {
    if (p.ctrl.signal.aborted) return;
    try {
      await fn();
      stamp();
    } catch (e) {
      if (aborted(e) || p.ctrl.signal.aborted) return;
      if (!handleAuth(e)) showError(e);
    }
    if (!p.ctrl.signal.aborted) p.timers.push(setTimeout(tick, typeof ms === "function" ? ms() : ms));
  };
  return tick();
}

function stamp() {
  fill(document.getElementById("updated"), `updated ${new Date().toLocaleTimeString()}`);
}

/// A rejected signature while signed in: the key was rotated or is wrong.
function handleAuth(e) {
  if (e instanceof BatchError && (e.code === "AuthenticationFailed" || e.code === "InvalidAuthenticationInfo")) {
    Client.signOut();
    client = null;
    signInPage("The server no longer accepts this key; sign in again.");
    return true;
  }
  return false;
}

function errorText(e) {
  return e instanceof BatchError ? e.describe() : String(e && e.message ? e.message : e);
}

function showError(e) {
  let box = main.querySelector(".page-error");
  if (!box) {
    box = h("p", { class: "page-error error", role: "alert" });
    main.prepend(box);
  }
  fill(box, errorText(e));
}

function clearError() {
  const box = main.querySelector(".page-error");
  if (box) box.remove();
}

/// A button that runs an action and reports its outcome next to it.
function action(label, run, attrs = {}) {
  const note = h("span", { class: "note", role: "status" });
  const b = h("button", {
    type: "button", ...attrs,
    onclick: async () => {
      b.disabled = true;
      fill(note, "…");
      try {
        const msg = await run();
        fill(note, msg || "done");
        note.className = "note ok";
      } catch (e) {
        if (handleAuth(e)) return;
        fill(note, errorText(e));
        note.className = "note error";
      } finally {
        b.disabled = false;
      }
    },
  }, label);
  return [b, note];
}

// ---------------------------------------------------------------------------
// Sign in.

function signInPage(message) {
  startPage();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  fill(document.getElementById("updated"));
  const err = h("p", { class: "error signin-error", role: "alert", hidden: !message }, message || "");
  const account = h("input", { id: "account", name: "account", required: true, autocomplete: "username", spellcheck: "false", value: localStorage.getItem("openbatch.account") || "" });
  const key = h("input", { id: "key", name: "key", type: "password", required: true, autocomplete: "off", spellcheck: "false" });
  const submit = h("button", { id: "signin", type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "signin card",
      onsubmit: async (ev) => {
        ev.preventDefault();
        submit.disabled = true;
        err.hidden = true;
        try {
          client = await Client.signIn(account.value, key.value);
          localStorage.setItem("openbatch.account", client.account);
          key.value = "";
          route();
        } catch (e) {
          err.hidden = false;
          fill(err, e instanceof BatchError ? e.message : String(e));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h1", null, "Sign in"),
    h("p", { class: "muted" }, "The Batch account name and one of its keys. The key stays in this tab (session storage) and signs each request; it is never sent itself."),
    h("label", { for: "account" }, "Account name"), account,
    h("label", { for: "key" }, "Account key"), key,
    submit, err,
  );
  fill(main, form);
  (account.value ? key : account).focus();
}

// ---------------------------------------------------------------------------
// Overview.

const NODE_FIELDS = "id,state,schedulingState,runningTasksCount,runningTaskSlotsCount";

function heatmap(pool, nodes) {
  if (nodes instanceof Error) return h("p", { class: "error" }, errorText(nodes));
  if (!nodes.length) return h("p", { class: "muted" }, "no nodes");
  const slots = pool.taskSlotsPerNode || 1;
  return h(
    "div",
    { class: "heatmap" },
    nodes.map((n) => {
      const used = n.runningTaskSlotsCount || 0;
      const cell = h("a", {
        class: `cell st-${n.state}`, href: `#/pools/${seg(pool.id)}`,
        title: `${n.id}: ${n.state}, ${used} of ${slots} slots in use${n.schedulingState === "disabled" ? ", scheduling disabled" : ""}`,
        dataset: { node: n.id, state: n.state },
      }, used ? String(used) : "");
      cell.style.setProperty("--fill", String(Math.min(1, used / slots)));
      return cell;
    }),
  );
}

function countsBar(c) {
  if (!c) return h("span", { class: "muted" }, "—");
  const total = c.active + c.running + c.completed;
  const part = (n, cls) => {
    const el = h("span", { class: cls, title: `${n} ${cls.replace("seg-", "")}` });
    el.style.setProperty("--w", total ? String(n / total) : "0");
    return el;
  };
  return h("div", { class: "bar", title: `${c.active} active, ${c.running} running, ${c.succeeded} succeeded, ${c.failed} failed` },
    part(c.succeeded, "seg-succeeded"), part(c.failed, "seg-failed"), part(c.running, "seg-running"), part(c.active, "seg-active"));
}

async function overview(p) {
  const { signal } = p.ctrl;
  const pools = h("div", { id: "pools" }, h("p", { class: "muted" }, "Loading…"));
  const jobs = h("div", { id: "jobs" }, h("p", { class: "muted" }, "Loading…"));
  const failures = h("div", { id: "failures" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("h1", null, "Overview"), section("Pools", pools), section("Jobs", jobs), section("Recent failures", failures));
  await every(p, 3000, async () => {
    const [poolList, jobList] = await Promise.all([
      client.all("/pools", { $select: "id,state,allocationState,vmSize,currentDedicatedNodes,currentLowPriorityNodes,targetDedicatedNodes,targetLowPriorityNodes,taskSlotsPerNode,enableAutoScale" }, 200, { signal }),
      client.all("/jobs", { $select: "id,state,poolInfo,creationTime,priority", maxresults: 100 }, 100, { signal }),
    ]);
    const nodeLists = await Promise.all(poolList.map((pl) => client.all(`/pools/${seg(pl.id)}/nodes`, { $select: NODE_FIELDS }, 1000, { signal }).catch((e) => (aborted(e) ? Promise.reject(e) : e))));
    const counts = await Promise.all(jobList.map((j) => client.get(`/jobs/${seg(j.id)}/taskcounts`, {}, { signal }).then((r) => r.taskCounts).catch((e) => (aborted(e) ? Promise.reject(e) : null))));
    clearError();

    fill(pools, poolList.length ? table(
      ["Pool", "State", "Nodes", "Slots in use", "Node heatmap"],
      poolList.map((pl, i) => {
        const ns = nodeLists[i];
        const used = ns instanceof Error ? "—" : ns.reduce((a, n) => a + (n.runningTaskSlotsCount || 0), 0);
        const slots = ns instanceof Error ? "—" : ns.length * (pl.taskSlotsPerNode || 1);
        return h("tr", { dataset: { pool: pl.id } },
          h("td", null, link(`#/pools/${seg(pl.id)}`, pl.id)),
          h("td", null, badge(pl.state), " ", badge(pl.allocationState)),
          h("td", { class: "num" }, `${(pl.currentDedicatedNodes || 0) + (pl.currentLowPriorityNodes || 0)} / ${(pl.targetDedicatedNodes || 0) + (pl.targetLowPriorityNodes || 0)}`),
          h("td", { class: "num" }, `${used} / ${slots}`),
          h("td", { class: "wide" }, heatmap(pl, ns)));
      }),
    ) : h("p", { class: "muted" }, "No pools."));

    fill(jobs, jobList.length ? table(
      ["Job", "State", "Pool", "Tasks", "Active", "Running", "Succeeded", "Failed"],
      jobList.map((j, i) => {
        const c = counts[i];
        const n = (k) => h("td", { class: "num" }, c ? String(c[k]) : "—");
        return h("tr", { dataset: { job: j.id } },
          h("td", null, link(`#/jobs/${seg(j.id)}`, j.id)),
          h("td", null, badge(j.state)),
          h("td", null, j.poolInfo && j.poolInfo.poolId ? link(`#/pools/${seg(j.poolInfo.poolId)}`, j.poolInfo.poolId) : "auto pool"),
          h("td", { class: "wide" }, countsBar(c)),
          n("active"), n("running"), n("succeeded"), n("failed"));
      }),
    ) : h("p", { class: "muted" }, "No jobs."));

    // Failed tasks of the jobs that have some (ten jobs at most, ten tasks each).
    const failing = jobList.filter((j, i) => counts[i] && counts[i].failed > 0).slice(0, 10);
    const lists = await Promise.all(failing.map((j) => client
      .get(`/jobs/${seg(j.id)}/tasks`, { $filter: "executionInfo/result eq 'failure'", $select: "id,executionInfo,nodeInfo", maxresults: 10 }, { signal })
      .then((r) => (r.value || []).map((t) => ({ job: j.id, ...t })))
      .catch((e) => (aborted(e) ? Promise.reject(e) : []))));
    const recent = lists.flat().sort((a, b) => String((b.executionInfo || {}).endTime).localeCompare(String((a.executionInfo || {}).endTime))).slice(0, 15);
    fill(failures, recent.length ? table(
      ["Task", "Exit code", "Failure", "Ended"],
      recent.map((t) => {
        const e = t.executionInfo || {};
        const f = e.failureInfo;
        return h("tr", null,
          h("td", null, link(`#/jobs/${seg(t.job)}/tasks/${seg(t.id)}`, `${t.job} / ${t.id}`)),
          h("td", { class: "num" }, e.exitCode ?? "—"),
          h("td", null, f ? `${f.code || f.category}${f.message ? ": " + f.message : ""}` : "non-zero exit code"),
          h("td", null, ago(e.endTime)));
      }),
    ) : h("p", { class: "muted" }, "No failed tasks."));
  });
}

// ---------------------------------------------------------------------------
// Pool.

async function poolPage(p, id) {
  const { signal } = p.ctrl;
  const path = `/pools/${seg(id)}`;
  const head = h("div", { class: "head" }, h("h1", null, "Pool ", h("span", { class: "id" }, id)));
  const info = h("div");
  const nodes = h("div", { id: "nodes" }, h("p", { class: "muted" }, "Loading…"));
  const startTask = h("div");
  const dedicated = h("input", { id: "target-dedicated", type: "number", min: 0, value: 0 });
  const low = h("input", { id: "target-lowpriority", type: "number", min: 0, value: 0 });
  const formula = h("textarea", { id: "formula", rows: 5, spellcheck: "false", placeholder: "$TargetDedicatedNodes = min(4, $PendingTasks.GetSample(1));" });
  const result = h("div", { id: "autoscale-result", "aria-live": "polite" });
  let seeded = false;

  const evaluate = action("Evaluate", async () => {
    fill(result);
    try {
      const run = await client.post(`${path}/evaluateautoscale`, { autoScaleFormula: formula.value });
      fill(result, autoscaleRun(run));
      return run.error ? "the formula has errors" : "evaluated";
    } catch (e) {
      if (!(e instanceof BatchError) || handleAuth(e)) throw e;
      fill(result, h("p", { class: "error" }, e.describe()));
      return "the server refused the evaluation";
    }
  }, { id: "evaluate" });

  fill(main, head, info,
    section("Nodes", nodes, h("p", { class: "muted small" }, "CPU: busy share between the agent's last two measurements (every heartbeat); memory: in use on the node's machine.")),
    section("Start task", startTask),
    section("Resize",
      h("div", { class: "form-row" },
        h("label", { for: "target-dedicated" }, "Dedicated nodes"), dedicated,
        h("label", { for: "target-lowpriority" }, "Spot/low-priority nodes"), low,
        ...action("Resize", async () => {
          await client.post(`${path}/resize`, { targetDedicatedNodes: Number(dedicated.value), targetLowPriorityNodes: Number(low.value) });
          return "resize requested";
        }, { id: "resize" }),
        ...action("Stop resize", async () => {
          await client.post(`${path}/stopresize`);
          return "resize stopped";
        }))),
    section("Autoscale formula",
      h("label", { for: "formula" }, "Formula (evaluated against the pool, not applied)"), formula,
      h("div", { class: "form-row" }, ...evaluate),
      result));

  await every(p, 3000, async () => {
    const [pool, nodeList, loads] = await Promise.all([
      client.get(path, {}, { signal }),
      client.all(`${path}/nodes`, {}, 1000, { signal }),
      // openbatch's own: CPU and memory as each node's agent measures them.
      client.get(`/openbatch/pools/${seg(id)}/nodeload`, {}, { signal }).then((r) => r.value || [], () => []),
    ]);
    const loadOf = new Map(loads.map((l) => [l.id, l]));
    clearError();
    if (!seeded) {
      seeded = true;
      dedicated.value = pool.targetDedicatedNodes || 0;
      low.value = pool.targetLowPriorityNodes || 0;
      if (pool.autoScaleFormula) formula.value = pool.autoScaleFormula;
    }
    fill(head, h("h1", null, "Pool ", h("span", { class: "id" }, id)), badge(pool.state), " ", badge(pool.allocationState));
    fill(info, props([
      ["VM size", pool.vmSize],
      ["Nodes (current / target)", `dedicated ${pool.currentDedicatedNodes || 0} / ${pool.targetDedicatedNodes || 0}, spot ${pool.currentLowPriorityNodes || 0} / ${pool.targetLowPriorityNodes || 0}`],
      ["Task slots per node", pool.taskSlotsPerNode || 1],
      ["Scheduling", (pool.taskSchedulingPolicy || {}).nodeFillType],
      ["Autoscale", pool.enableAutoScale ? "enabled" : "disabled"],
      ["Created", time(pool.creationTime)],
      pool.resizeErrors && pool.resizeErrors.length ? ["Resize errors", pool.resizeErrors.map((e) => `${e.code}: ${e.message}`).join("; ")] : null,
    ]));
    const st = pool.startTask;
    fill(startTask, st ? [
      props([["Command line", h("code", null, st.commandLine)], ["Wait for success", String(!!st.waitForSuccess)], ["Max retries", st.maxTaskRetryCount ?? 0]]),
    ] : h("p", { class: "muted" }, "No start task."));
    fill(nodes, nodeList.length ? table(
      ["Node", "State", "Scheduling", "Running tasks", "Slots in use", "CPU", "Memory", "Tasks run", "Succeeded", "Start task", "IP address"],
      nodeList.map((n) => {
        const s = n.startTaskInfo;
        const running = (n.recentTasks || []).filter((t) => t.taskState === "running");
        return h("tr", { dataset: { node: n.id } },
          h("td", null, h("span", { class: "id" }, n.id)),
          h("td", null, badge(n.state)),
          h("td", null, n.schedulingState),
          h("td", null, running.length ? running.map((t) => [link(`#/jobs/${seg(t.jobId)}/tasks/${seg(t.taskId)}`, `${t.jobId}/${t.taskId}`), " "]) : String(n.runningTasksCount || 0)),
          h("td", { class: "num" }, `${n.runningTaskSlotsCount || 0} / ${pool.taskSlotsPerNode || 1}`),
          h("td", { class: "num", dataset: { cpu: "" } }, percent((loadOf.get(n.id) || {}).cpuPercent)),
          h("td", { class: "num", dataset: { memory: "" } }, bytes((loadOf.get(n.id) || {}).memoryBytes)),
          h("td", { class: "num" }, n.totalTasksRun || 0),
          h("td", { class: "num" }, n.totalTasksSucceeded || 0),
          h("td", null, s ? [badge(s.state), s.exitCode !== undefined ? ` exit ${s.exitCode}` : "", s.failureInfo ? ` ${s.failureInfo.code || ""}` : ""] : "—"),
          h("td", null, n.ipAddress || "—"));
      }),
    ) : h("p", { class: "muted" }, "No nodes."));
  });
}

/// An AutoScaleRun: each variable's value, and the error if any.
function autoscaleRun(run) {
  const vars = String(run.results || "").split(";").map((s) => s.trim()).filter(Boolean).map((s) => {
    const i = s.indexOf("=");
    return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + 1)];
  });
  const out = [];
  if (vars.length) out.push(table(["Variable", "Value"], vars.map(([k, v]) => h("tr", null, h("td", null, h("code", null, k)), h("td", null, v))), { class: "vars" }));
  if (run.error) {
    const e = run.error;
    out.push(h("div", { class: "error" }, `${e.code}: ${e.message}`,
      (e.values || []).length ? h("ul", null, e.values.map((v) => h("li", null, `${v.name}: ${v.value}`))) : null));
  }
  if (!out.length) out.push(h("p", { class: "muted" }, "The evaluation returned no variables."));
  return out;
}

// ---------------------------------------------------------------------------
// Job.

const FILTERS = {
  all: ["All", null, null],
  active: ["Active", "state eq 'active'", "active"],
  running: ["Running", "state eq 'running'", "running"],
  completed: ["Completed", "state eq 'completed'", "completed"],
  succeeded: ["Succeeded", "executionInfo/result eq 'success'", "succeeded"],
  failed: ["Failed", "executionInfo/result eq 'failure'", "failed"],
};

function jobHash(id, state, prefix) {
  const q = new URLSearchParams();
  if (state && state !== "all") q.set("state", state);
  if (prefix) q.set("prefix", prefix);
  const s = q.toString();
  return `#/jobs/${seg(id)}${s ? "?" + s : ""}`;
}

async function jobPage(p, id, query) {
  const { signal } = p.ctrl;
  const path = `/jobs/${seg(id)}`;
  const state = FILTERS[query.get("state")] ? query.get("state") : "all";
  const prefix = query.get("prefix") || "";
  const head = h("div", { class: "head" }, h("h1", null, "Job ", h("span", { class: "id" }, id)));
  const info = h("div");
  const chips = h("div", { class: "chips", role: "tablist" });
  const tasks = h("div", { id: "tasks" }, h("p", { class: "muted" }, "Loading…"));
  const pager = h("div", { class: "pager" });
  const timeline = h("div", { id: "timeline" }, h("p", { class: "muted" }, "Loading…"));
  const search = h("input", { id: "task-prefix", type: "search", placeholder: "task id starts with…", value: prefix });
  const disableMode = h("select", { id: "disable-mode" }, ["requeue", "terminate", "wait"].map((m) => h("option", { value: m }, m)));

  // Server-side filter and paging: one page of `maxresults` at a time,
  // following the continuation link; `links[i]` is page i.
  const filters = [];
  if (FILTERS[state][1]) filters.push(FILTERS[state][1]);
  if (prefix) filters.push(`startswith(id,'${prefix.replace(/'/g, "''")}')`);
  const first = target(`${path}/tasks`, { maxresults: PAGE_SIZE, $select: "id,state,creationTime,executionInfo,nodeInfo", $filter: filters.join(" and ") });
  const links = [first];
  let at = 0;
  let current = null;

  let seq = 0;
  async function loadPage() {
    const mine = ++seq;
    const got = await client.page(links[at], { signal });
    if (mine !== seq) return; // a later load (a click on a pager button) wins
    current = got;
    fill(tasks, current.items.length ? table(
      ["Task", "State", "Exit code", "Node", "Started", "Duration", "Retries"],
      current.items.map((t) => {
        const e = t.executionInfo || {};
        return h("tr", { dataset: { task: t.id } },
          h("td", null, link(`#/jobs/${seg(id)}/tasks/${seg(t.id)}`, t.id)),
          h("td", null, badge(t.state === "completed" && e.result ? e.result : t.state, t.state === "completed" && e.result ? `completed (${e.result})` : t.state)),
          h("td", { class: "num" }, e.exitCode ?? "—"),
          h("td", null, (t.nodeInfo || {}).nodeId || "—"),
          h("td", null, e.startTime ? time(e.startTime) : "—"),
          h("td", { class: "num" }, e.startTime ? duration(e.startTime, e.endTime) : "—"),
          h("td", { class: "num" }, e.retryCount || 0));
      }),
    ) : h("p", { class: "muted" }, "No tasks match."));
    fill(pager,
      h("button", { type: "button", id: "prev", disabled: at === 0, onclick: () => { at--; loadPage().catch((e) => aborted(e) || showError(e)); } }, "← Previous"),
      h("span", { class: "muted" }, `page ${at + 1} · ${current.items.length} tasks`),
      h("button", { type: "button", id: "next", disabled: !current.next, onclick: () => { links[at + 1] = current.next; at++; loadPage().catch((e) => aborted(e) || showError(e)); } }, "Next →"));
  }

  fill(main, head,
    h("div", { class: "actions" },
      ...action("Terminate", async () => {
        if (!confirm(`Terminate job ${id}? Its running tasks are stopped.`)) return "cancelled";
        await client.post(`${path}/terminate`, { terminateReason: "UserTerminate" });
        return "terminating";
      }, { id: "terminate-job", class: "danger" }),
      h("label", { for: "disable-mode", class: "muted" }, "running tasks:"), disableMode,
      ...action("Disable", async () => {
        await client.post(`${path}/disable`, { disableTasks: disableMode.value });
        return "disabling";
      }, { id: "disable-job" }),
      ...action("Enable", async () => {
        await client.post(`${path}/enable`);
        return "enabling";
      }, { id: "enable-job" })),
    info,
    section("Tasks",
      h("form", { class: "form-row", onsubmit: (ev) => { ev.preventDefault(); location.hash = jobHash(id, state, search.value.trim()); } }, chips, search),
      tasks, pager),
    section("Timeline", timeline));

  let tick = 0;
  await every(p, 3000, async () => {
    // The task page is asked at once, beside the job and its counts.
    const [job, counts] = await Promise.all([client.get(path, {}, { signal }), client.get(`${path}/taskcounts`, {}, { signal }), loadPage()]);
    const c = counts.taskCounts;
    clearError();
    fill(head, h("h1", null, "Job ", h("span", { class: "id" }, id)), badge(job.state));
    const ex = job.executionInfo || {};
    fill(info, props([
      ["Pool", job.poolInfo && job.poolInfo.poolId ? link(`#/pools/${seg(job.poolInfo.poolId)}`, job.poolInfo.poolId) : "auto pool"],
      ["Priority", job.priority ?? 0],
      ["Created", time(job.creationTime)],
      ["Started", time(ex.startTime)],
      ex.endTime ? ["Ended", time(ex.endTime)] : null,
      ex.terminateReason ? ["Terminate reason", ex.terminateReason] : null,
      job.jobManagerTask ? ["Job manager", job.jobManagerTask.id] : null,
      ["Task counts", countsBar(c)],
    ]));
    const total = c.active + c.running + c.completed;
    const n = { all: total, active: c.active, running: c.running, completed: c.completed, succeeded: c.succeeded, failed: c.failed };
    fill(chips, Object.entries(FILTERS).map(([k, [label]]) =>
      h("a", { href: jobHash(id, k, prefix), class: `chip${k === state ? " on" : ""}`, role: "tab", "aria-selected": String(k === state), dataset: { filter: k } },
        label, h("span", { class: "count" }, String(n[k])))));
    if (tick++ % 3 === 0) await drawTimeline(timeline, path, signal);
  });
}

/// Task start and end times of a bounded sample: the first SAMPLE completed
/// and the first running tasks (by id), never the whole job.
async function drawTimeline(el, path, signal) {
  const sel = { $select: "id,state,executionInfo" };
  const [done, running] = await Promise.all([
    client.get(`${path}/tasks`, { ...sel, $filter: "state eq 'completed'", maxresults: SAMPLE }, { signal }),
    client.get(`${path}/tasks`, { ...sel, $filter: "state eq 'running'", maxresults: 200 }, { signal }),
  ]);
  const now = new Date().toISOString();
  const rows = [...(done.value || []), ...(running.value || [])]
    .filter((t) => t.executionInfo && t.executionInfo.startTime)
    .map((t) => ({ id: t.id, start: Date.parse(t.executionInfo.startTime), end: Date.parse(t.executionInfo.endTime || now), result: t.state === "running" ? "running" : t.executionInfo.result || "success" }))
    .sort((a, b) => a.start - b.start);
  if (!rows.length) {
    fill(el, h("p", { class: "muted" }, "No task has started yet."));
    return;
  }
  const t0 = rows[0].start;
  const t1 = Math.max(...rows.map((r) => r.end), t0 + 1);
  const W = 1000, H = 200, rowH = H / rows.length;
  const x = (t) => ((t - t0) / (t1 - t0)) * W;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "timeline", role: "img", "aria-label": "task start and end times" },
    rows.map((r, i) => svg("rect", { x: x(r.start).toFixed(1), y: (i * rowH).toFixed(2), width: Math.max(1, x(r.end) - x(r.start)).toFixed(1), height: Math.max(rowH, 0.5).toFixed(2), class: `tl-${r.result}` },
      svg("title", null, `${r.id}: ${((r.end - r.start) / 1000).toFixed(2)} s`))));
  const more = (done["odata.nextLink"] || running["odata.nextLink"]) ? ` (a sample: the first ${SAMPLE} completed and 200 running tasks by id)` : "";
  fill(el, chart,
    h("div", { class: "axis" }, h("span", null, new Date(t0).toLocaleTimeString()), h("span", { class: "muted" }, `${rows.length} tasks${more}; each bar is one task from start to end`), h("span", null, new Date(t1).toLocaleTimeString())),
    h("div", { class: "legend" }, h("span", { class: "tl-success" }, "succeeded"), h("span", { class: "tl-failure" }, "failed"), h("span", { class: "tl-running" }, "running")));
}

// ---------------------------------------------------------------------------
// Task.

/// Follows one output file of a task: reads what is new with
/// `ocp-range: bytes=N-` every OUTPUT_POLL_MS and appends it.
function follow(p, taskPath, name, pre, status, isDone) {
  const { signal } = p.ctrl;
  const file = `${taskPath}/files/${seg(name)}`;
  const decoder = new TextDecoder();
  let offset = null;
  const tick = async () => {
    if (signal.aborted) return;
    let again = true;
    try {
      if (offset === null) {
        const size = await client.fileSize(file, { signal });
        offset = Math.max(0, size - OUTPUT_TAIL);
        if (offset > 0) pre.append(`… (${bytes(offset)} not shown; the file's tail follows)\n`);
      }
      const done = isDone();
      const chunk = await client.fileFrom(file, offset, { signal });
      if (chunk && chunk.length) {
        const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
        offset += chunk.length;
        pre.append(decoder.decode(chunk, { stream: true }));
        if (pre.textContent.length > OUTPUT_KEEP) pre.textContent = pre.textContent.slice(-OUTPUT_KEEP);
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.bytes = String(offset);
      if (done) {
        // The task had ended before this read, so it saw the whole file.
        fill(status, `${bytes(offset)} · complete`);
        again = false;
      } else {
        fill(status, h("span", { class: "live" }, "live"), ` · ${bytes(offset)}`);
      }
    } catch (e) {
      if (aborted(e)) return;
      if (handleAuth(e)) return;
      if (e.code === "TaskFilesUnavailable") fill(status, "waiting for the task to start on a node");
      else if (e.code === "FileNotFound") fill(status, "no such file yet");
      else fill(status, h("span", { class: "error" }, errorText(e)));
      if (isDone()) again = false;
    }
    if (again && !signal.aborted) p.timers.push(setTimeout(tick, OUTPUT_POLL_MS));
  };
  tick();
}

async function taskPage(p, jobId, taskId) {
  const { signal } = p.ctrl;
  const path = `/jobs/${seg(jobId)}/tasks/${seg(taskId)}`;
  const head = h("div", { class: "head" });
  const info = h("div");
  const failure = h("div");
  const raw = h("pre", { class: "json" });
  const files = h("div", { id: "files" }, h("p", { class: "muted" }, "Loading…"));
  const viewer = h("div", { id: "viewer" });
  const out = {};
  for (const name of ["stdout", "stderr"]) {
    out[name] = { pre: h("pre", { id: name, class: "output", tabindex: 0 }), status: h("span", { class: "muted", id: `${name}-status` }) };
  }
  let task = null;
  const isDone = () => task !== null && task.state === "completed";

  fill(main, h("p", { class: "crumbs" }, link(`#/jobs/${seg(jobId)}`, `job ${jobId}`), " / task"),
    head,
    h("div", { class: "actions" },
      ...action("Terminate", async () => {
        await client.json("POST", target(`${path}/terminate`));
        return "terminated";
      }, { id: "terminate-task", class: "danger" }),
      ...action("Reactivate", async () => {
        await client.json("POST", target(`${path}/reactivate`));
        return "reactivated";
      }, { id: "reactivate-task" })),
    info, failure,
    h("div", { class: "outputs" },
      ["stdout", "stderr"].map((n) => section(h("span", null, `${n}.txt `, out[n].status), out[n].pre))),
    section("Files", files, viewer),
    h("details", { class: "card" }, h("summary", null, "All properties"), raw));

  let started = false;
  let lastFiles = 0;
  await every(p, () => (isDone() ? 10000 : 1000), async () => {
    task = await client.get(path, {}, { signal });
    clearError();
    const e = task.executionInfo || {};
    const state = task.state === "completed" && e.result ? e.result : task.state;
    fill(head, h("h1", null, "Task ", h("span", { class: "id" }, taskId)), badge(state, task.state === "completed" ? `completed (${e.result || "?"})` : task.state));
    const node = task.nodeInfo || {};
    fill(info, props([
      ["Command line", h("code", null, task.commandLine)],
      task.displayName ? ["Display name", task.displayName] : null,
      ["Exit code", e.exitCode ?? "—"],
      ["Node", node.nodeId ? [link(`#/pools/${seg(node.poolId || "")}`, node.poolId || ""), ` / ${node.nodeId}`] : "—"],
      ["Created", time(task.creationTime)],
      ["Started", time(e.startTime)],
      ["Ended", time(e.endTime)],
      ["Duration", e.startTime ? duration(e.startTime, e.endTime) : "—"],
      ["Retries / requeues", `${e.retryCount || 0} / ${e.requeueCount || 0}`],
      ["Required slots", task.requiredSlots || 1],
    ]));
    const f = e.failureInfo;
    fill(failure, f ? section("Failure",
      props([["Category", f.category], ["Code", f.code], ["Message", f.message],
        ...(f.details || []).map((d) => [d.name, d.value])]),
    ) : "");
    fill(raw, JSON.stringify(task, null, 2));
    if (!started && (task.state !== "active" || node.nodeId)) {
      started = true;
      for (const n of ["stdout", "stderr"]) follow(p, path, `${n}.txt`, out[n].pre, out[n].status, isDone);
    } else if (!started) {
      for (const n of ["stdout", "stderr"]) fill(out[n].status, "waiting for the task to start");
    }
    if (started && (Date.now() - lastFiles > 5000 || isDone())) {
      lastFiles = Date.now();
      await listFiles(files, viewer, path, signal);
    }
  });
}

async function listFiles(el, viewer, path, signal) {
  let items;
  try {
    items = await client.all(`${path}/files`, { recursive: "true" }, 1000, { signal });
  } catch (e) {
    if (aborted(e)) throw e;
    fill(el, h("p", { class: "muted" }, errorText(e)));
    return;
  }
  fill(el, items.length ? table(["Name", "Size", "Modified"], items.map((f) => {
    const p = f.properties || {};
    return h("tr", null,
      h("td", null, f.isDirectory ? `${f.name}/` : h("button", { type: "button", class: "link", onclick: () => view(viewer, `${path}/files/${f.name.split("/").map(seg).join("/")}`, f.name, signal) }, f.name)),
      h("td", { class: "num" }, f.isDirectory ? "" : bytes(p.contentLength)),
      h("td", null, time(p.lastModified)));
  })) : h("p", { class: "muted" }, "No files."));
}

/// Shows the first MiB of a file as text.
async function view(el, file, name, signal) {
  fill(el, h("p", { class: "muted" }, `Loading ${name}…`));
  try {
    const r = await client.send("GET", target(file), { headers: { "ocp-range": "bytes=0-1048575" }, signal });
    const data = new Uint8Array(await r.arrayBuffer());
    fill(el, h("h3", null, name), h("pre", { class: "output" }, new TextDecoder().decode(data)), data.length === 1048576 ? h("p", { class: "muted" }, "(first MiB shown)") : null);
  } catch (e) {
    if (!aborted(e)) fill(el, h("p", { class: "error" }, errorText(e)));
  }
}

// ---------------------------------------------------------------------------
// Job schedules.

async function schedulesPage(p) {
  const { signal } = p.ctrl;
  const list = h("div", { id: "schedules" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("h1", null, "Job schedules"), section("Schedules", list));
  await every(p, 5000, async () => {
    const items = await client.all("/jobschedules", { $select: "id,state,schedule,executionInfo,jobSpecification" }, 500, { signal });
    clearError();
    fill(list, items.length ? table(["Schedule", "State", "Recurrence", "Next run", "Recent job", "Pool"], items.map((s) => {
      const ex = s.executionInfo || {};
      const sch = s.schedule || {};
      const pool = ((s.jobSpecification || {}).poolInfo || {}).poolId;
      return h("tr", { dataset: { schedule: s.id } },
        h("td", null, link(`#/schedules/${seg(s.id)}`, s.id)),
        h("td", null, badge(s.state)),
        h("td", null, sch.recurrenceInterval || "once"),
        h("td", null, time(ex.nextRunTime)),
        h("td", null, ex.recentJob ? link(`#/jobs/${seg(ex.recentJob.id)}`, ex.recentJob.id) : "—"),
        h("td", null, pool ? link(`#/pools/${seg(pool)}`, pool) : "—"));
    })) : h("p", { class: "muted" }, "No job schedules."));
  });
}

async function schedulePage(p, id) {
  const { signal } = p.ctrl;
  const path = `/jobschedules/${seg(id)}`;
  const head = h("div", { class: "head" });
  const info = h("div");
  const jobs = h("div", { id: "schedule-jobs" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("p", { class: "crumbs" }, link("#/schedules", "job schedules")), head, info, section("Recent jobs", jobs));
  await every(p, 5000, async () => {
    const [s, jobList] = await Promise.all([
      client.get(path, {}, { signal }),
      client.all(`${path}/jobs`, { $select: "id,state,creationTime,executionInfo", maxresults: 50 }, 50, { signal }),
    ]);
    clearError();
    const ex = s.executionInfo || {};
    const sch = s.schedule || {};
    fill(head, h("h1", null, "Job schedule ", h("span", { class: "id" }, id)), badge(s.state));
    fill(info, props([
      ["Recurrence", sch.recurrenceInterval || "once"],
      ["Do not run until", time(sch.doNotRunUntil)],
      ["Do not run after", time(sch.doNotRunAfter)],
      ["Start window", sch.startWindow],
      ["Next run", time(ex.nextRunTime)],
      ["Ended", time(ex.endTime)],
      ["Pool", ((s.jobSpecification || {}).poolInfo || {}).poolId],
    ]));
    jobList.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
    fill(jobs, jobList.length ? table(["Job", "State", "Created", "Ended"], jobList.map((j) => h("tr", null,
      h("td", null, link(`#/jobs/${seg(j.id)}`, j.id)),
      h("td", null, badge(j.state)),
      h("td", null, time(j.creationTime)),
      h("td", null, time((j.executionInfo || {}).endTime))))) : h("p", { class: "muted" }, "No jobs yet."));
  });
}

// ---------------------------------------------------------------------------
// Routing.

async function route() {
  if (!client) client = await Client.restore();
  if (!client) {
    signInPage();
    return;
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  fill(document.getElementById("who-account"), client.account);
  const hash = location.hash.replace(/^#/, "") || "/";
  const [pathPart, queryPart] = hash.split("?");
  const parts = pathPart.split("/").filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  const query = new URLSearchParams(queryPart || "");
  const p = startPage();
  const nav = parts[0] === "schedules" ? "schedules" : "overview";
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("on", a.dataset.nav === nav);
  fill(main, h("p", { class: "muted" }, "Loading…"));
  if (parts.length === 0) return overview(p);
  if (parts[0] === "pools" && parts.length === 2) return poolPage(p, parts[1]);
  if (parts[0] === "jobs" && parts.length === 2) return jobPage(p, parts[1], query);
  if (parts[0] === "jobs" && parts.length === 4 && parts[2] === "tasks") return taskPage(p, parts[1], parts[3]);
  if (parts[0] === "schedules" && parts.length === 1) return schedulesPage(p);
  if (parts[0] === "schedules" && parts.length === 2) return schedulePage(p, parts[1]);
  fill(main, h("h1", null, "Not found"), h("p", null, link("#/", "Back to the overview")));
}

document.getElementById("signout").addEventListener("click", () => {
  Client.signOut();
  client = null;
  location.hash = "#/";
  signInPage();
});
window.addEventListener("hashchange", route);
route();
