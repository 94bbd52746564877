//! Task rows, and the per-job counters kept in step with them.

use super::jobs::{self, compile_with, from_doc};
use super::txn::tally;
use super::writer::PgConn;
use super::{timestamp, Postgres};
use crate::backend::Durability;
use crate::backend::{AddCheck, DeleteCheck, TaskChange, TaskResults};
use crate::sqlite::fields::TaskFields;
use crate::types::NewTask;
use crate::types::{key_of, ListQuery, Page, Preconditions, Stored};
use std::collections::HashMap;
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

const BUMP: &str = "INSERT INTO task_counts (job, state, result, n, slots, retries) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (job, state, result) DO UPDATE SET n = task_counts.n + excluded.n,
         slots = task_counts.slots + excluded.slots, retries = task_counts.retries + excluded.retries";

fn bump(c: &mut PgConn, job: &str, k: &CountKey, n: i64) -> Result<(), Error> {
    c.execute(BUMP, &[&job, &k.state, &k.result, &n, &(k.slots * n.signum()), &(k.retries * n.signum())])?;
    Ok(())
}

/// Moves a task between counters: one round trip for both rows.
fn move_count(c: &mut PgConn, job: &str, old: &CountKey, new: &CountKey) -> Result<(), Error> {
    c.execute(
        "INSERT INTO task_counts (job, state, result, n, slots, retries)
         VALUES ($1, $2, $3, -1, -$4::int8, -$5::int8), ($1, $6, $7, 1, $8, $9)
         ON CONFLICT (job, state, result) DO UPDATE SET n = task_counts.n + excluded.n,
             slots = task_counts.slots + excluded.slots, retries = task_counts.retries + excluded.retries",
        &[&job, &old.state, &old.result, &old.slots, &old.retries, &new.state, &new.result, &new.slots, &new.retries],
    )?;
    Ok(())
}

fn parse_task(doc: &str) -> Result<CloudTask, Error> {
    serde_json::from_str(doc).map_err(|e| Error::internal(format!("stored task is unreadable: {e}")))
}

/// Reads a task inside a transaction.
pub(crate) fn load(c: &mut PgConn, job: &str, id: &str) -> Result<Option<CloudTask>, Error> {
    let row = c.query_opt("SELECT doc FROM tasks WHERE job = $1 AND key = $2", &[&key_of(job), &key_of(id)])?;
    row.map(|r| parse_task(r.get::<_, &str>(0))).transpose()
}

/// How many of a new task's dependencies are not satisfied yet.
fn unsatisfied(c: &mut PgConn, job_key: &str, deps: &TaskDependencies) -> Result<i64, Error> {
    let (ids, ranges) = workflow::dependencies(deps);
    let mut left = 0i64;
    if !ids.is_empty() {
        // Once per listing, as SQLite counts them.
        let keys: Vec<String> = ids.iter().map(|i| key_of(i)).collect();
        let row = c.query_opt(
            "SELECT count(*) FROM unnest($2::text[]) AS d(k) JOIN tasks t ON t.job = $1 AND t.key = d.k AND t.satisfied = 1",
            &[&job_key, &keys],
        )?;
        let sat: i64 = row.map(|r| r.get(0)).unwrap_or(0);
        left += keys.len() as i64 - sat;
    }
    for (lo, hi) in ranges {
        let row = c.query_opt(
            "SELECT count(*) FROM tasks WHERE job = $1 AND range_id BETWEEN $2 AND $3 AND range_id IS NOT NULL AND satisfied = 1",
            &[&job_key, &lo, &hi],
        )?;
        let sat: i64 = row.map(|r| r.get(0)).unwrap_or(0);
        left += (hi - lo + 1) - sat;
    }
    Ok(left)
}

/// Records a new task's dependencies in the reverse tables.
fn record_dependencies(c: &mut PgConn, job_key: &str, task_key: &str, deps: &TaskDependencies) -> Result<(), Error> {
    let (ids, ranges) = workflow::dependencies(deps);
    if !ids.is_empty() {
        let keys: Vec<String> = ids.iter().map(|i| key_of(i)).collect();
        c.execute(
            "INSERT INTO task_dep_ids (job, task, dep) SELECT $1, $2, d FROM unnest($3::text[]) AS d",
            &[&job_key, &task_key, &keys],
        )?;
    }
    if !ranges.is_empty() {
        let (lo, hi): (Vec<i64>, Vec<i64>) = ranges.into_iter().unzip();
        c.execute(
            "INSERT INTO task_dep_ranges (job, task, lo, hi) SELECT $1, $2, l, h FROM unnest($3::int8[], $4::int8[]) AS r(l, h)",
            &[&job_key, &task_key, &lo, &hi],
        )?;
    }
    Ok(())
}

/// A task became satisfied (`delta` -1) or stopped being so (+1): adjusts
/// the count of each dependent, once per listing. Returns whether some
/// active dependent became ready.
fn propagate(c: &mut PgConn, job_key: &str, task: &CloudTask, delta: i64) -> Result<bool, Error> {
    let rows = c.query(
        "SELECT task FROM task_dep_ids WHERE job = $1 AND dep = $2
         UNION ALL
         SELECT task FROM task_dep_ranges WHERE job = $1 AND $3::int8 IS NOT NULL AND lo <= $3::int8 AND hi >= $3::int8",
        &[&job_key, &key_of(&task.id), &workflow::range_id(&task.id)],
    )?;
    if rows.is_empty() {
        return Ok(false);
    }
    let mut listings: HashMap<String, i64> = HashMap::new();
    for r in rows {
        *listings.entry(r.get(0)).or_default() += 1;
    }
    let (keys, counts): (Vec<String>, Vec<i64>) = listings.into_iter().unzip();
    let updated = c.query(
        "UPDATE tasks SET deps_left = deps_left + $2 * d.n FROM unnest($3::text[], $4::int8[]) AS d(k, n)
         WHERE tasks.job = $1 AND tasks.key = d.k RETURNING tasks.deps_left, tasks.state",
        &[&job_key, &delta, &keys, &counts],
    )?;
    Ok(updated.iter().any(|r| r.get::<_, i64>(0) == 0 && r.get::<_, &str>(1) == TaskState::Active.as_str()))
}

/// Writes back a changed task and adjusts the job's counters and, when the
/// task starts or stops satisfying its dependents, their dependency counts.
/// Returns the stored task and whether a dependent became ready.
pub(crate) fn save(c: &mut PgConn, job: &str, before: &CloudTask, after: &CloudTask) -> Result<(Stored, bool), Error> {
    let doc = serde_json::to_string(after).map_err(Error::internal)?;
    let (old, new) = (count_key(before), count_key(after));
    let job_key = key_of(job);
    let (sat_before, sat_after) = (workflow::satisfies_dependents(before), workflow::satisfies_dependents(after));
    c.execute(
        "UPDATE tasks SET state = $3, result = $4, slots = $5, retries = $6, etag = $7, last_modified = $8, doc = $9, node = $10,
             exit_code = $11, cleanup_at = $12, satisfied = $13
         WHERE job = $1 AND key = $2",
        &[
            &job_key,
            &key_of(&after.id),
            &new.state,
            &(if new.result.is_empty() { None } else { Some(new.result) }),
            &new.slots,
            &new.retries,
            &after.e_tag,
            &after.last_modified.to_string(),
            &doc,
            &after.node,
            &after.execution_info.exit_code.map(i64::from),
            &after.cleanup_at.map(|t| t.to_string()),
            &(sat_after as i64),
        ],
    )?;
    let released = if sat_before != sat_after { propagate(c, &job_key, after, if sat_after { -1 } else { 1 })? } else { false };
    if old != new {
        if (old.state, old.result) == (new.state, new.result) {
            // One row: a statement may not change it twice.
            c.execute(BUMP, &[&job_key, &new.state, &new.result, &0i64, &(new.slots - old.slots), &(new.retries - old.retries)])?;
        } else {
            move_count(c, &job_key, &old, &new)?;
        }
        crate::metrics::count_transition(old.state, new.state, new.result);
    }
    Ok((Stored { doc, etag: after.e_tag.clone(), last_modified: after.last_modified }, released))
}

impl Postgres {
    pub(crate) async fn add_tasks(&self, job_id: &str, tasks: Vec<NewTask>, check: AddCheck) -> Result<Vec<Result<(), Error>>, Error> {
        let job_id = job_id.to_string();
        let r = self
            .write(move |c| {
                let job = jobs::load(c, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                check(&job)?;
                let job_key = key_of(&job.id);
                // A key repeated in the request: its first task is tried,
                // the later ones exist by then.
                let mut results: Vec<Result<(), Error>> = Vec::with_capacity(tasks.len());
                let mut first: HashMap<String, usize> = HashMap::with_capacity(tasks.len());
                let mut rows: Vec<usize> = Vec::with_capacity(tasks.len());
                let mut keys = Vec::with_capacity(tasks.len());
                for (i, t) in tasks.iter().enumerate() {
                    let key = key_of(&t.task.id);
                    if first.contains_key(&key) {
                        results.push(Err(Error::new(ErrorCode::TaskExists)));
                    } else {
                        first.insert(key.clone(), i);
                        results.push(Ok(()));
                        rows.push(i);
                        keys.push(key);
                    }
                }
                let mut ids = Vec::with_capacity(rows.len());
                let (mut states, mut slots, mut retries) = (Vec::new(), Vec::new(), Vec::new());
                let (mut created, mut etags, mut modified, mut docs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let (mut deps_left, mut range_ids) = (Vec::new(), Vec::new());
                for &i in &rows {
                    let t = &tasks[i];
                    let k = count_key(&t.task);
                    ids.push(t.task.id.as_str());
                    states.push(k.state);
                    slots.push(k.slots);
                    retries.push(k.retries);
                    created.push(t.task.creation_time.to_string());
                    etags.push(t.task.e_tag.as_str());
                    modified.push(t.task.last_modified.to_string());
                    docs.push(t.doc.as_str());
                    deps_left.push(match &t.task.depends_on {
                        Some(d) => unsatisfied(c, &job_key, d)?,
                        None => 0,
                    });
                    range_ids.push(workflow::range_id(&t.task.id));
                }
                // The counters of what was inserted move in the same
                // statement (one round trip for the whole collection).
                let inserted = c.query(
                    "WITH ins AS (
                       INSERT INTO tasks (job, key, id, state, result, slots, retries, creation_time, etag, last_modified, doc, deps_left, range_id)
                       SELECT $1, k, i, s, NULL, sl, r, ct, e, lm, d, dl, ri
                         FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[],
                                     $10::text[], $11::int8[], $12::int8[]) AS t(k, i, s, sl, r, ct, e, lm, d, dl, ri)
                       ON CONFLICT (job, key) DO NOTHING RETURNING key, state, slots, retries),
                     counted AS (
                       INSERT INTO task_counts (job, state, result, n, slots, retries)
                       SELECT $1, state, '', count(*), sum(slots)::int8, sum(retries)::int8 FROM ins GROUP BY state
                       ON CONFLICT (job, state, result) DO UPDATE SET n = task_counts.n + excluded.n,
                           slots = task_counts.slots + excluded.slots, retries = task_counts.retries + excluded.retries)
                     SELECT key FROM ins",
                    &[&job_key, &keys, &ids, &states, &slots, &retries, &created, &etags, &modified, &docs, &deps_left, &range_ids],
                )?;
                let mut added: Vec<bool> = vec![false; tasks.len()];
                for r in &inserted {
                    if let Some(&i) = first.get(r.get::<_, &str>(0)) {
                        added[i] = true;
                    }
                }
                for &i in &rows {
                    let t = &tasks[i];
                    if !added[i] {
                        results[i] = Err(Error::new(ErrorCode::TaskExists));
                        continue;
                    }
                    if let Some(d) = &t.task.depends_on {
                        record_dependencies(c, &job_key, &key_of(&t.task.id), d)?;
                    }
                }
                Ok(results)
            })
            .await;
        // New tasks may be ready: after the commit, so a reader that sees the
        // new generation also sees them.
        self.signals.tasks_changed();
        r
    }

    pub(crate) async fn get_task(&self, job_id: &str, task_id: &str) -> Result<Stored, Error> {
        let row = self
            .query_opt("SELECT doc, etag, last_modified FROM tasks WHERE job = $1 AND key = $2", &[&key_of(job_id), &key_of(task_id)])
            .await?;
        match row {
            Some(r) => Ok(Stored { doc: r.get(0), etag: r.get(1), last_modified: timestamp(r.get(2)) }),
            None => Err(if self.job_exists(job_id).await? { task_not_found(task_id) } else { job_not_found(job_id) }),
        }
    }

    async fn job_exists(&self, id: &str) -> Result<bool, Error> {
        Ok(self.query_opt("SELECT 1 FROM jobs WHERE key = $1", &[&key_of(id)]).await?.is_some())
    }

    pub(crate) async fn update_task(&self, job_id: &str, task_id: &str, pre: Preconditions, f: TaskChange) -> Result<Stored, Error> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        let etags = self.etags.clone();
        self.signals.tasks_changed();
        let r = self
            .write(move |c| {
                let job = jobs::load(c, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                let before = load(c, &job_id, &task_id)?.ok_or_else(|| task_not_found(&task_id))?;
                pre.check_write(&before.e_tag, &before.last_modified)?;
                let mut after = before.clone();
                let (now, etag) = etags.next();
                f(&job, &mut after, now)?;
                after.e_tag = etag;
                after.last_modified = now;
                save(c, &job.id, &before, &after).map(|(stored, _)| stored)
            })
            .await;
        self.signals.tasks_changed();
        r
    }

    pub(crate) async fn delete_task(&self, job_id: &str, task_id: &str, pre: Preconditions, check: DeleteCheck) -> Result<(), Error> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.signals.tasks_changed();
        let r = self
            .write(move |c| {
                let job = jobs::load(c, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                let task = load(c, &job_id, &task_id)?.ok_or_else(|| task_not_found(&task_id))?;
                pre.check_write(&task.e_tag, &task.last_modified)?;
                check(&job, &task)?;
                let job_key = key_of(&job.id);
                let task_key = key_of(&task.id);
                for q in [
                    "DELETE FROM tasks WHERE job = $1 AND key = $2",
                    "DELETE FROM task_dep_ids WHERE job = $1 AND task = $2",
                    "DELETE FROM task_dep_ranges WHERE job = $1 AND task = $2",
                ] {
                    c.execute(q, &[&job_key, &task_key])?;
                }
                bump(c, &job_key, &count_key(&task), -1)
            })
            .await;
        self.signals.tasks_changed();
        r
    }

    pub(crate) async fn list_tasks(&self, job_id: &str, q: ListQuery) -> Result<Page, Error> {
        let filter = compile_with(&q, &TaskFields, 2)?;
        if !self.job_exists(job_id).await? {
            return Err(job_not_found(job_id));
        }
        self.list_page("SELECT key, doc FROM tasks WHERE job = $1", vec![Box::new(key_of(job_id))], filter, &q).await
    }

    pub(crate) async fn task_counts(&self, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
        if !self.job_exists(job_id).await? {
            return Err(job_not_found(job_id));
        }
        let rows = self.query("SELECT state, result, n, slots, retries FROM task_counts WHERE job = $1", &[&key_of(job_id)]).await?;
        Ok(tally(rows.iter().map(|r| (r.get::<_, &str>(0), r.get::<_, &str>(1), r.get(2), r.get(3), r.get(4)))))
    }

    /// A pool's task counts for autoscale, over its active jobs: completed
    /// tasks from `task_counts`; ready (no dependency left) and running
    /// tasks from `tasks` (a multi-instance task counts its instances: only
    /// documents that mention `multiInstanceSettings` are parsed).
    pub(crate) async fn pool_task_counts(&self, pool_id: &str) -> Result<crate::backend::PoolTaskCounts, Error> {
        let pool = key_of(pool_id);
        let done = self
            .query(
                "SELECT c.result, SUM(c.n)::bigint FROM task_counts c JOIN jobs j ON j.key = c.job
                  WHERE j.pool = $1 AND j.state = 'active' AND c.state = 'completed' GROUP BY c.result",
                &[&pool],
            )
            .await?;
        let live = self
            .query(
                "SELECT t.state, SUM(CASE WHEN strpos(t.doc, '\"multiInstanceSettings\"') = 0 THEN 1
                        ELSE GREATEST(1, COALESCE(ob_json_num(t.doc, ARRAY['multiInstanceSettings', 'numberOfInstances']), 1)) END)::bigint
                   FROM tasks t JOIN jobs j ON j.key = t.job
                  WHERE j.pool = $1 AND j.state = 'active' AND t.state IN ('active', 'preparing', 'running')
                    AND (t.state <> 'active' OR t.deps_left = 0)
                  GROUP BY t.state",
                &[&pool],
            )
            .await?;
        let mut c = crate::backend::PoolTaskCounts::default();
        for r in &done {
            let n = r.get::<_, Option<i64>>(1).unwrap_or(0).max(0) as u64;
            match r.get::<_, &str>(0) {
                "success" => c.succeeded += n,
                "failure" => c.failed += n,
                _ => {}
            }
        }
        for r in &live {
            let n = r.get::<_, Option<i64>>(1).unwrap_or(0).max(0) as u64;
            match r.get::<_, &str>(0) {
                "active" => c.active += n,
                _ => c.running += n,
            }
        }
        Ok(c)
    }

    /// Tasks by state over every job: a sum over the counters, never over
    /// the tasks.
    pub(crate) async fn task_totals(&self) -> Result<crate::metrics::TaskTotals, Error> {
        let rows = self.query("SELECT state, SUM(n)::bigint FROM task_counts GROUP BY state", &[]).await?;
        let mut t = crate::metrics::TaskTotals::default();
        for r in &rows {
            t.add(r.get::<_, &str>(0), r.get::<_, Option<i64>>(1).unwrap_or(0));
        }
        Ok(t)
    }
}

/// What the scheduler and the background workers read.
impl Postgres {
    pub(crate) async fn schedulable_jobs(&self, pool_id: &str) -> Result<Vec<CloudJob>, Error> {
        let rows = self
            .query("SELECT doc FROM jobs WHERE pool = $1 AND state = 'active' ORDER BY priority DESC, creation_time", &[&key_of(pool_id)])
            .await?;
        rows.iter().map(|r| from_doc(r.get::<_, &str>(0))).collect()
    }

    pub(crate) async fn ready_tasks(&self, job_id: &str, limit: usize, max_slots: u32) -> Result<Vec<CloudTask>, Error> {
        let rows = self
            .query(
                "SELECT doc FROM tasks WHERE job = $1 AND state = 'active' AND deps_left = 0 AND slots <= $3 ORDER BY key LIMIT $2",
                &[&key_of(job_id), &(limit as i64), &(max_slots as i64)],
            )
            .await?;
        rows.iter().map(|r| parse_task(r.get::<_, &str>(0))).collect()
    }

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
            move |c| {
                // Every task of the batch in one round trip.
                let mut current = prefetch(c, &changes)?;
                let mut out = Vec::with_capacity(changes.len());
                let mut jobs_seen: Vec<CloudJob> = Vec::new();
                for (job_id, task_id, f) in changes {
                    let r = (|| {
                        let job = match jobs_seen.iter().find(|j| j.id.eq_ignore_ascii_case(&job_id)) {
                            Some(j) => j.clone(),
                            None => {
                                let j = jobs::load(c, &job_id)?.ok_or_else(|| job_not_found(&job_id))?;
                                jobs_seen.push(j.clone());
                                j
                            }
                        };
                        let k = (key_of(&job_id), key_of(&task_id));
                        let before = current.get(&k).cloned().flatten().ok_or_else(|| task_not_found(&task_id))?;
                        let mut after = before.clone();
                        let (now, etag) = etags.next();
                        f(&job, &mut after, now)?;
                        after.e_tag = etag;
                        after.last_modified = now;
                        let (_, released) = save(c, &job.id, &before, &after)?;
                        if released || (after.state == TaskState::Active && before.state != TaskState::Active) {
                            readied_in.store(true, Ordering::SeqCst);
                        }
                        // A later change to the same task in this batch sees this one.
                        current.insert(k, Some(after.clone()));
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

    pub(crate) async fn job_task_stats(&self, job_id: &str) -> Result<Option<TaskStatistics>, Error> {
        let rows = self
            .query(
                "SELECT s::text FROM (SELECT doc::jsonb -> 'stats' AS s FROM tasks WHERE job = $1) AS x
                 WHERE s IS NOT NULL AND jsonb_typeof(s) <> 'null'",
                &[&key_of(job_id)],
            )
            .await?;
        let mut total: Option<TaskStatistics> = None;
        for r in rows {
            let Ok(st) = serde_json::from_str::<TaskStatistics>(r.get::<_, &str>(0)) else { continue };
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
    }

    pub(crate) async fn due_cleanups(&self, now: Timestamp, limit: usize) -> Result<Vec<(String, String)>, Error> {
        let rows = self
            .query(
                "SELECT j.id, t.id FROM tasks t JOIN jobs j ON j.key = t.job
                 WHERE t.cleanup_at IS NOT NULL AND t.cleanup_at <= $1 ORDER BY t.cleanup_at LIMIT $2",
                &[&now.to_string(), &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(crate) async fn tasks_on_node(&self, node_id: &str) -> Result<Vec<(String, String, u64)>, Error> {
        let rows = self.query("SELECT j.id, t.doc FROM tasks t JOIN jobs j ON j.key = t.job WHERE t.node = $1", &[&node_id]).await?;
        let mut out = Vec::new();
        for r in rows {
            let t = parse_task(r.get::<_, &str>(1))?;
            out.push((r.get(0), t.id, t.attempt.unwrap_or(0)));
        }
        Ok(out)
    }

    pub(crate) async fn assigned_tasks(&self) -> Result<Vec<(String, String, String, u64)>, Error> {
        let rows = self.query("SELECT j.id, t.doc FROM tasks t JOIN jobs j ON j.key = t.job WHERE t.node IS NOT NULL", &[]).await?;
        let mut out = Vec::new();
        for r in rows {
            let t = parse_task(r.get::<_, &str>(1))?;
            if let (Some(node), Some(attempt)) = (t.node.clone(), t.attempt) {
                out.push((r.get(0), t.id, node, attempt));
            }
        }
        Ok(out)
    }

    pub(crate) async fn max_attempt(&self) -> Result<u64, Error> {
        let rows = self
            .query(
                "SELECT COALESCE(MAX(CASE WHEN jsonb_typeof(doc::jsonb -> '_attempt') = 'number'
                                           THEN (doc::jsonb ->> '_attempt')::numeric END), 0)::int8 FROM tasks",
                &[],
            )
            .await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
    }
}

/// The tasks a batch of changes touches, read in one query: (job key,
/// task key) → the task, None when it does not exist.
fn prefetch(c: &mut PgConn, changes: &[(String, String, TaskChange)]) -> Result<HashMap<(String, String), Option<CloudTask>>, Error> {
    let (jobs, tasks): (Vec<String>, Vec<String>) = changes.iter().map(|(j, t, _)| (key_of(j), key_of(t))).unzip();
    let rows = c.query(
        "SELECT t.job, t.key, t.doc FROM unnest($1::text[], $2::text[]) AS w(j, k) JOIN tasks t ON t.job = w.j AND t.key = w.k",
        &[&jobs, &tasks],
    )?;
    let mut out: HashMap<(String, String), Option<CloudTask>> = jobs.into_iter().zip(tasks).map(|k| (k, None)).collect();
    for r in rows {
        out.insert((r.get(0), r.get(1)), Some(parse_task(r.get::<_, &str>(2))?));
    }
    Ok(out)
}
