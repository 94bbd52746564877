//! Task rows, and the per-job counters kept in step with them.

use super::fields::TaskFields;
use super::jobs::{self, compile_with, list_page};
use super::txn::counts;
use super::{sql, Sqlite};
use crate::backend::Durability;
use crate::backend::{AddCheck, DeleteCheck, TaskChange, TaskResults};
use crate::types::NewTask;
use crate::types::{key_of, ListQuery, Page, Preconditions, Stored};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wire::enums::TaskState;
use wire::models::{CloudJob, CloudTask, TaskCountsResult, TaskDependencies, TaskStatistics};
use wire::time::Timestamp;
use wire::workflow;
use wire::{Error, ErrorCode};

fn task_not_found(id: &str) -> Error {
    Error::new(ErrorCode::TaskNotFound).with("TaskId", id)
}

fn job_not_found(id: &str) -> Error {
    Error::new(ErrorCode::JobNotFound).with("JobId", id)
}

/// The aggregated columns of one task, for the counters.
#[derive(Debug, Clone, PartialEq)]
struct CountKey {
    state: &'static str,
    result: &'static str,
    slots: i64,
    retries: i64,
}

fn count_key(t: &CloudTask) -> CountKey {
    CountKey {
        state: t.state.as_str(),
        result: t.execution_info.result.map(|r| r.as_str()).unwrap_or(""),
        slots: t.required_slots as i64,
        retries: t.execution_info.retry_count as i64,
    }
}

fn bump(conn: &Connection, job: &str, k: &CountKey, n: i64) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO task_counts (job, state, result, n, slots, retries) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (job, state, result) DO UPDATE SET n = n + excluded.n, slots = slots + excluded.slots, retries = retries + excluded.retries",
    )
    .and_then(|mut s| s.execute(params![job, k.state, k.result, n, k.slots * n.signum(), k.retries * n.signum()]))
    .map_err(sql)?;
    Ok(())
}

/// Reads a task inside a transaction.
pub(crate) fn load(conn: &Connection, job: &str, id: &str) -> Result<Option<CloudTask>, Error> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM tasks WHERE job = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row([key_of(job), key_of(id)], |r| r.get(0)).optional())
        .map_err(sql)?;
    doc.map(|d| serde_json::from_str(&d).map_err(|e| Error::internal(format!("stored task is unreadable: {e}")))).transpose()
}

/// How many of a new task's dependencies are not satisfied yet.
fn unsatisfied(conn: &Connection, job_key: &str, deps: &TaskDependencies) -> Result<i64, Error> {
    let (ids, ranges) = workflow::dependencies(deps);
    let mut left = 0i64;
    for id in ids {
        let sat: Option<i64> = conn
            .prepare_cached("SELECT satisfied FROM tasks WHERE job = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row(params![job_key, key_of(id)], |r| r.get(0)).optional())
            .map_err(sql)?;
        if sat != Some(1) {
            left += 1;
        }
    }
    for (lo, hi) in ranges {
        let sat: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM tasks INDEXED BY tasks_by_range_id WHERE job = ?1 AND range_id BETWEEN ?2 AND ?3 AND satisfied = 1",
            )
            .and_then(|mut s| s.query_row(params![job_key, lo, hi], |r| r.get(0)))
            .map_err(sql)?;
        left += (hi - lo + 1) - sat;
    }
    Ok(left)
}

/// Records a new task's dependencies in the reverse tables.
fn record_dependencies(conn: &Connection, job_key: &str, task_key: &str, deps: &TaskDependencies) -> Result<(), Error> {
    let (ids, ranges) = workflow::dependencies(deps);
    for id in ids {
        conn.prepare_cached("INSERT INTO task_dep_ids (job, task, dep) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![job_key, task_key, key_of(id)]))
            .map_err(sql)?;
    }
    for (lo, hi) in ranges {
        conn.prepare_cached("INSERT INTO task_dep_ranges (job, task, lo, hi) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![job_key, task_key, lo, hi]))
            .map_err(sql)?;
    }
    Ok(())
}

/// A task became satisfied (`delta` -1) or stopped being so (+1): adjusts
/// the count of each dependent, once per listing. Returns whether some
/// active dependent became ready.
fn propagate(conn: &Connection, job_key: &str, task: &CloudTask, delta: i64) -> Result<bool, Error> {
    let mut dependents: Vec<String> = conn
        // Pinned: when one task has many dependents (a fan-out), planner
        // statistics make the (job, dep) index look unselective, and walking
        // the job's rows instead costs O(tasks) per completion.
        .prepare_cached("SELECT task FROM task_dep_ids INDEXED BY task_dep_ids_by_dep WHERE job = ?1 AND dep = ?2")
        .and_then(|mut s| s.query_map(params![job_key, key_of(&task.id)], |r| r.get(0))?.collect())
        .map_err(sql)?;
    if let Some(n) = workflow::range_id(&task.id) {
        let in_ranges: Vec<String> = conn
            .prepare_cached("SELECT task FROM task_dep_ranges INDEXED BY task_dep_ranges_by_lo WHERE job = ?1 AND lo <= ?2 AND hi >= ?2")
            .and_then(|mut s| s.query_map(params![job_key, n], |r| r.get(0))?.collect())
            .map_err(sql)?;
        dependents.extend(in_ranges);
    }
    let mut released = false;
    for d in dependents {
        let row: Option<(i64, String)> = conn
            .prepare_cached("UPDATE tasks SET deps_left = deps_left + ?3 WHERE job = ?1 AND key = ?2 RETURNING deps_left, state")
            .and_then(|mut s| s.query_row(params![job_key, d, delta], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(sql)?;
        released |= matches!(row, Some((0, state)) if state == TaskState::Active.as_str());
    }
    Ok(released)
}

/// Writes back a changed task and adjusts the job's counters and, when the
/// task starts or stops satisfying its dependents, their dependency counts.
/// Returns the stored task and whether a dependent became ready.
pub(crate) fn save(conn: &Connection, job: &str, before: &CloudTask, after: &CloudTask) -> Result<(Stored, bool), Error> {
    let doc = serde_json::to_string(after).map_err(Error::internal)?;
    let (old, new) = (count_key(before), count_key(after));
    let job_key = key_of(job);
    let (sat_before, sat_after) = (workflow::satisfies_dependents(before), workflow::satisfies_dependents(after));
    conn.prepare_cached(
        "UPDATE tasks SET state = ?3, result = ?4, slots = ?5, retries = ?6, etag = ?7, last_modified = ?8, doc = ?9, node = ?10, exit_code = ?11, cleanup_at = ?12, satisfied = ?13
         WHERE job = ?1 AND key = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            job_key,
            key_of(&after.id),
            new.state,
            if new.result.is_empty() { None } else { Some(new.result) },
            new.slots,
            new.retries,
            after.e_tag,
            after.last_modified.to_string(),
            doc,
            after.node,
            after.execution_info.exit_code,
            after.cleanup_at.map(|t| t.to_string()),
            sat_after as i64
        ])
    })
    .map_err(sql)?;
    let released = if sat_before != sat_after { propagate(conn, &job_key, after, if sat_after { -1 } else { 1 })? } else { false };
    if old != new {
        bump(conn, &job_key, &old, -1)?;
        bump(conn, &job_key, &new, 1)?;
        crate::metrics::count_transition(old.state, new.state, new.result);
    }
    Ok((Stored { doc, etag: after.e_tag.clone(), last_modified: after.last_modified }, released))
}

impl Sqlite {
    /// Adds tasks to a job in one transaction. `check` sees the job as it is
    /// inside the transaction and may refuse the whole request. Each task
    /// gets its own result: `TaskExists` when its id is taken (also by an
    /// earlier task of the same request).
    pub(crate) async fn add_tasks(&self, job_id: &str, tasks: Vec<NewTask>, check: AddCheck) -> Result<Vec<Result<(), Error>>, Error> {
        let job_id = job_id.to_string();
        let r = self.write(move |conn| {
            let job = jobs::load(conn, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
            check(&job)?;
            let job_key = key_of(&job.id);
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO tasks (job, key, id, state, result, slots, retries, creation_time, etag, last_modified, doc, deps_left, range_id)
                     VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (job, key) DO NOTHING",
                )
                .map_err(sql)?;
            let mut results = Vec::with_capacity(tasks.len());
            let mut added: Vec<CountKey> = Vec::new();
            for t in &tasks {
                let k = count_key(&t.task);
                let deps_left = match &t.task.depends_on {
                    Some(d) => unsatisfied(conn, &job_key, d)?,
                    None => 0,
                };
                let task_key = key_of(&t.task.id);
                let n = insert
                    .execute(params![
                        job_key,
                        task_key,
                        t.task.id,
                        k.state,
                        k.slots,
                        k.retries,
                        t.task.creation_time.to_string(),
                        t.task.e_tag,
                        t.task.last_modified.to_string(),
                        t.doc,
                        deps_left,
                        workflow::range_id(&t.task.id)
                    ])
                    .map_err(sql)?;
                if n == 0 {
                    results.push(Err(Error::new(ErrorCode::TaskExists)));
                } else {
                    if let Some(d) = &t.task.depends_on {
                        record_dependencies(conn, &job_key, &task_key, d)?;
                    }
                    results.push(Ok(()));
                    added.push(k);
                }
            }
            // One counter update per distinct (state, result).
            let mut groups: Vec<(CountKey, i64, i64, i64)> = Vec::new();
            for k in added {
                match groups.iter_mut().find(|g| g.0.state == k.state && g.0.result == k.result) {
                    Some(g) => {
                        g.1 += 1;
                        g.2 += k.slots;
                        g.3 += k.retries;
                    }
                    None => {
                        let (s, r) = (k.slots, k.retries);
                        groups.push((k, 1, s, r))
                    }
                }
            }
            for (k, n, slots, retries) in groups {
                conn.prepare_cached(
                    "INSERT INTO task_counts (job, state, result, n, slots, retries) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (job, state, result) DO UPDATE SET n = n + excluded.n, slots = slots + excluded.slots, retries = retries + excluded.retries",
                )
                .and_then(|mut s| s.execute(params![job_key, k.state, k.result, n, slots, retries]))
                .map_err(sql)?;
            }
            Ok(results)
        })
        .await;
        // New tasks may be ready: after the commit, so a reader that sees the
        // new generation also sees them.
        self.signals.tasks_changed();
        r
    }

    /// The stored task; 404 `JobNotFound` or `TaskNotFound`.
    pub(crate) async fn get_task(&self, job_id: &str, task_id: &str) -> Result<Stored, Error> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.read_now(move |conn| {
            let row = conn
                .prepare_cached("SELECT doc, etag, last_modified FROM tasks WHERE job = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row([key_of(&job_id), key_of(&task_id)], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })
                    .optional()
                })
                .map_err(sql)?;
            match row {
                Some((doc, etag, lm)) => {
                    Ok(Stored { doc, etag, last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now) })
                }
                None => Err(if job_exists(conn, &job_id)? { task_not_found(&task_id) } else { job_not_found(&job_id) }),
            }
        })
    }

    /// Reads, checks and changes a task in one transaction; `f` may refuse.
    pub(crate) async fn update_task(&self, job_id: &str, task_id: &str, pre: Preconditions, f: TaskChange) -> Result<Stored, Error> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        let etags = self.etags.clone();
        self.signals.tasks_changed();
        let r = self
            .write(move |conn| {
                let job = jobs::load(conn, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                let before = load(conn, &job_id, &task_id)?.ok_or_else(|| task_not_found(&task_id))?;
                pre.check_write(&before.e_tag, &before.last_modified)?;
                let mut after = before.clone();
                let (now, etag) = etags.next();
                f(&job, &mut after, now)?;
                after.e_tag = etag;
                after.last_modified = now;
                save(conn, &job.id, &before, &after).map(|(stored, _)| stored)
            })
            .await;
        self.signals.tasks_changed();
        r
    }

    /// Deletes a task after `check` accepts it.
    pub(crate) async fn delete_task(&self, job_id: &str, task_id: &str, pre: Preconditions, check: DeleteCheck) -> Result<(), Error> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.signals.tasks_changed();
        let r = self
            .write(move |conn| {
                let job = jobs::load(conn, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                let task = load(conn, &job_id, &task_id)?.ok_or_else(|| task_not_found(&task_id))?;
                pre.check_write(&task.e_tag, &task.last_modified)?;
                check(&job, &task)?;
                let job_key = key_of(&job.id);
                let task_key = key_of(&task.id);
                for q in [
                    "DELETE FROM tasks WHERE job = ?1 AND key = ?2",
                    "DELETE FROM task_dep_ids WHERE job = ?1 AND task = ?2",
                    "DELETE FROM task_dep_ranges WHERE job = ?1 AND task = ?2",
                ] {
                    conn.prepare_cached(q).and_then(|mut s| s.execute([&job_key, &task_key])).map_err(sql)?;
                }
                bump(conn, &job_key, &count_key(&task), -1)
            })
            .await;
        self.signals.tasks_changed();
        r
    }

    /// A page of a job's tasks in id order.
    pub(crate) async fn list_tasks(&self, job_id: &str, q: ListQuery) -> Result<Page, Error> {
        let filter = compile_with(&q, &TaskFields)?;
        let job_id = job_id.to_string();
        self.read(move |conn| {
            if !job_exists(conn, &job_id)? {
                return Err(job_not_found(&job_id));
            }
            list_page(conn, "SELECT key, doc FROM tasks WHERE job = ?", vec![key_of(&job_id).into()], filter.as_ref(), &q)
        })
        .await
    }

    /// Task and slot counts by state, from the counters, and the total retries.
    pub(crate) async fn task_counts(&self, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
        let job_id = job_id.to_string();
        self.read(move |conn| {
            if !job_exists(conn, &job_id)? {
                return Err(job_not_found(&job_id));
            }
            counts(conn, &job_id)
        })
        .await
    }

    /// Tasks by state over every job: a sum over the counters (a few rows
    /// per job), never over the tasks.
    pub(crate) async fn task_totals(&self) -> Result<crate::metrics::TaskTotals, Error> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT state, SUM(n) FROM task_counts GROUP BY state").map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            let mut t = crate::metrics::TaskTotals::default();
            while let Some(r) = rows.next().map_err(sql)? {
                let state: String = r.get(0).map_err(sql)?;
                let n: i64 = r.get(1).map_err(sql)?;
                t.add(&state, n);
            }
            Ok(t)
        })
        .await
    }
}

/// What the scheduler needs to pick tasks.
impl Sqlite {
    /// Active jobs on a pool, highest priority first, then oldest.
    pub(crate) async fn schedulable_jobs(&self, pool_id: &str) -> Result<Vec<CloudJob>, Error> {
        let pool = key_of(pool_id);
        self.read(move |conn| {
            let mut s = conn
                .prepare_cached("SELECT doc FROM jobs WHERE pool = ?1 AND state = 'active' ORDER BY priority DESC, creation_time, rowid")
                .map_err(sql)?;
            let rows = s.query_map([&pool], |r| r.get::<_, String>(0)).map_err(sql)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(serde_json::from_str(&r.map_err(sql)?).map_err(Error::internal)?);
            }
            Ok(out)
        })
        .await
    }

    /// A pool's task counts for autoscale, over its active jobs: completed
    /// tasks from `task_counts`; ready and running tasks by the
    /// `tasks_by_state` index (a multi-instance task counts its instances:
    /// only documents that mention `multiInstanceSettings` are parsed).
    pub(crate) async fn pool_task_counts(&self, pool_id: &str) -> Result<crate::backend::PoolTaskCounts, Error> {
        let pool = key_of(pool_id);
        self.read(move |conn| {
            let mut jobs = conn.prepare_cached("SELECT key FROM jobs WHERE pool = ?1 AND state = 'active'").map_err(sql)?;
            let keys = jobs.query_map([&pool], |r| r.get::<_, String>(0)).map_err(sql)?.collect::<Result<Vec<_>, _>>().map_err(sql)?;
            let mut done = conn
                .prepare_cached("SELECT result, sum(n) FROM task_counts WHERE job = ?1 AND state = 'completed' GROUP BY result")
                .map_err(sql)?;
            let mut live = conn
                .prepare_cached(
                    "SELECT sum(CASE WHEN instr(doc, '\"multiInstanceSettings\"') = 0 THEN 1
                                ELSE max(1, coalesce(json_extract(doc, '$.multiInstanceSettings.numberOfInstances'), 1)) END)
                       FROM tasks INDEXED BY tasks_by_state WHERE job = ?1 AND state = ?2 AND (?2 <> 'active' OR deps_left = 0)",
                )
                .map_err(sql)?;
            let mut c = crate::backend::PoolTaskCounts::default();
            for job in &keys {
                let rows = done.query_map([job], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(sql)?;
                for row in rows {
                    match row.map_err(sql)? {
                        (r, n) if r == "success" => c.succeeded += n.max(0) as u64,
                        (r, n) if r == "failure" => c.failed += n.max(0) as u64,
                        _ => {}
                    }
                }
                let count = |state: &str, stmt: &mut rusqlite::CachedStatement| -> Result<u64, Error> {
                    let n: Option<i64> = stmt.query_row(params![job, state], |r| r.get(0)).map_err(sql)?;
                    Ok(n.unwrap_or(0).max(0) as u64)
                };
                c.active += count("active", &mut live)?;
                c.running += count("preparing", &mut live)? + count("running", &mut live)?;
            }
            Ok(c)
        })
        .await
    }

    /// Up to `limit` of a job's active tasks, in id order, skipping those that
    /// wait for dependencies.
    /// Only tasks needing at most `max_slots` slots: those that fit no node
    /// wait without holding up the rest of the job.
    pub(crate) async fn ready_tasks(&self, job_id: &str, limit: usize, max_slots: u32) -> Result<Vec<CloudTask>, Error> {
        let job = key_of(job_id);
        self.read_now(move |conn| {
            let mut s = conn
                .prepare_cached(
                    // Walk only the job's active tasks: once most of a job's
                    // tasks are completed, planner statistics can make the id
                    // index look as good, and it would skip over all of them.
                    "SELECT doc FROM tasks INDEXED BY tasks_by_state WHERE job = ?1 AND state = 'active'
                     AND deps_left = 0 AND slots <= ?3 ORDER BY key LIMIT ?2",
                )
                .map_err(sql)?;
            let rows = s.query_map(params![job, limit as i64, max_slots as i64], |r| r.get::<_, String>(0)).map_err(sql)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(serde_json::from_str(&r.map_err(sql)?).map_err(Error::internal)?);
            }
            Ok(out)
        })
    }

    /// Applies `f` to many tasks in one transaction (one fsync): each entry
    /// is (job id, task id, change); each gets its own result, and a refused
    /// change leaves its task untouched.
    pub(crate) fn update_tasks(
        &self,
        changes: Vec<(String, String, TaskChange)>,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<TaskResults, Error>> + Send + 'static {
        let etags = self.etags.clone();
        let signals = self.signals.clone();
        let readied = Arc::new(AtomicBool::new(false));
        let readied_in = readied.clone();
        let done = self.submit(
            move |conn| {
                let mut out = Vec::with_capacity(changes.len());
                let mut jobs_seen: Vec<CloudJob> = Vec::new();
                for (job_id, task_id, f) in changes {
                    let r = (|| {
                        let job = match jobs_seen.iter().find(|j| j.id.eq_ignore_ascii_case(&job_id)) {
                            Some(j) => j.clone(),
                            None => {
                                let j = jobs::load(conn, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                                jobs_seen.push(j.clone());
                                j
                            }
                        };
                        let before = load(conn, &job_id, &task_id)?.ok_or_else(|| task_not_found(&task_id))?;
                        let mut after = before.clone();
                        let (now, etag) = etags.next();
                        f(&job, &mut after, now)?;
                        after.e_tag = etag;
                        after.last_modified = now;
                        let (_, released) = save(conn, &job.id, &before, &after)?;
                        if released || (after.state == TaskState::Active && before.state != TaskState::Active) {
                            readied_in.store(true, Ordering::SeqCst);
                        }
                        Ok(after)
                    })();
                    out.push(r);
                }
                Ok(out)
            },
            durability,
        );
        async move {
            let r = done.await;
            // A task became ready (retry, requeue, dependencies met): after the commit.
            if readied.load(Ordering::SeqCst) {
                signals.tasks_changed();
            }
            r
        }
    }

    /// The sum of the resource statistics of a job's tasks (those that ran).
    pub(crate) async fn job_task_stats(&self, job_id: &str) -> Result<Option<TaskStatistics>, Error> {
        let job = key_of(job_id);
        self.read(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT json_extract(doc, '$.stats') FROM tasks WHERE job = ?1 AND json_extract(doc, '$.stats') IS NOT NULL",
                )
                .map_err(sql)?;
            let rows = s.query_map([&job], |r| r.get::<_, String>(0)).map_err(sql)?;
            let mut total: Option<TaskStatistics> = None;
            for r in rows {
                let Ok(st) = serde_json::from_str::<TaskStatistics>(&r.map_err(sql)?) else { continue };
                total = Some(match total {
                    None => st,
                    Some(mut t) => {
                        let add = |a: wire::time::Duration, b: wire::time::Duration| wire::time::Duration(a.0.saturating_add(b.0));
                        t.user_cpu_time = add(t.user_cpu_time, st.user_cpu_time);
                        t.kernel_cpu_time = add(t.kernel_cpu_time, st.kernel_cpu_time);
                        t.wall_clock_time = add(t.wall_clock_time, st.wall_clock_time);
                        t.wait_time = add(t.wait_time, st.wait_time);
                        t.read_iops += st.read_iops;
                        t.write_iops += st.write_iops;
                        t.read_io_gib += st.read_io_gib;
                        t.write_io_gib += st.write_io_gib;
                        t.start_time = t.start_time.min(st.start_time);
                        t.last_update_time = t.last_update_time.max(st.last_update_time);
                        t
                    }
                });
            }
            Ok(total)
        })
        .await
    }

    /// Completed tasks whose directories are due for deletion by `now`:
    /// (job id, task id).
    pub(crate) async fn due_cleanups(&self, now: Timestamp, limit: usize) -> Result<Vec<(String, String)>, Error> {
        self.read(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT j.id, t.id FROM tasks t JOIN jobs j ON j.key = t.job
                     WHERE t.cleanup_at IS NOT NULL AND t.cleanup_at <= ?1 ORDER BY t.cleanup_at LIMIT ?2",
                )
                .map_err(sql)?;
            let rows = s
                .query_map(params![now.to_string(), limit as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })
        .await
    }

    /// Tasks assigned to a node: (job id, task id, attempt).
    pub(crate) async fn tasks_on_node(&self, node_id: &str) -> Result<Vec<(String, String, u64)>, Error> {
        let node = node_id.to_string();
        self.read(move |conn| {
            let mut s =
                conn.prepare_cached("SELECT j.id, t.doc FROM tasks t JOIN jobs j ON j.key = t.job WHERE t.node = ?1").map_err(sql)?;
            let rows = s.query_map([&node], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(sql)?;
            let mut out = Vec::new();
            for r in rows {
                let (job, doc) = r.map_err(sql)?;
                let t: CloudTask = serde_json::from_str(&doc).map_err(Error::internal)?;
                out.push((job, t.id, t.attempt.unwrap_or(0)));
            }
            Ok(out)
        })
        .await
    }

    /// Every task assigned to some node: (job id, task id, node id, attempt).
    pub(crate) async fn assigned_tasks(&self) -> Result<Vec<(String, String, String, u64)>, Error> {
        self.read(|conn| {
            let mut s =
                conn.prepare("SELECT j.id, t.doc FROM tasks t JOIN jobs j ON j.key = t.job WHERE t.node IS NOT NULL").map_err(sql)?;
            let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(sql)?;
            let mut out = Vec::new();
            for r in rows {
                let (job, doc) = r.map_err(sql)?;
                let t: CloudTask = serde_json::from_str(&doc).map_err(Error::internal)?;
                if let (Some(node), Some(attempt)) = (t.node.clone(), t.attempt) {
                    out.push((job, t.id, node, attempt));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The highest attempt id handed out so far.
    pub(crate) async fn max_attempt(&self) -> Result<u64, Error> {
        self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(json_extract(doc, '$._attempt')), 0) FROM tasks", [], |r| r.get::<_, i64>(0))
                .map(|v| v.max(0) as u64)
                .map_err(sql)
        })
        .await
    }
}

fn job_exists(conn: &Connection, id: &str) -> Result<bool, Error> {
    conn.prepare_cached("SELECT 1 FROM jobs WHERE key = ?1").and_then(|mut s| s.exists([key_of(id)])).map_err(sql)
}
