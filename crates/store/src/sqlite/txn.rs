//! What a job change may read inside its transaction (the store's [`Txn`]),
//! on the writer's connection.

use super::sql;
use crate::backend::Txn;
use crate::types::key_of;
use rusqlite::{Connection, OptionalExtension};
use wire::models::{TaskCounts, TaskCountsResult};
use wire::Error;

/// What a job change may read, on the writer's connection.
pub(crate) struct SqliteTxn<'c>(pub(crate) &'c Connection);

impl Txn for SqliteTxn<'_> {
    fn pool_state(&self, pool_id: &str) -> Result<Option<String>, Error> {
        pool_state(self.0, pool_id)
    }
    fn task_counts(&self, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
        counts(self.0, job_id)
    }
}

/// A pool's state, read inside a transaction.
pub(crate) fn pool_state(conn: &Connection, pool_id: &str) -> Result<Option<String>, Error> {
    conn.prepare_cached("SELECT state FROM pools WHERE key = ?1")
        .and_then(|mut s| s.query_row([key_of(pool_id)], |r| r.get(0)).optional())
        .map_err(sql)
}

/// A job's task and slot counts by state and its total retries, read inside
/// a transaction.
pub(crate) fn counts(conn: &Connection, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
    let mut stmt = conn.prepare_cached("SELECT state, result, n, slots, retries FROM task_counts WHERE job = ?1").map_err(sql)?;
    let mut rows = stmt.query([key_of(job_id)]).map_err(sql)?;
    let mut tasks = TaskCounts::default();
    let mut slots = TaskCounts::default();
    let mut retries = 0i64;
    while let Some(r) = rows.next().map_err(sql)? {
        let state: String = r.get(0).map_err(sql)?;
        let result: String = r.get(1).map_err(sql)?;
        let n: i64 = r.get(2).map_err(sql)?;
        let s: i64 = r.get(3).map_err(sql)?;
        retries += r.get::<_, i64>(4).map_err(sql)?;
        for (c, v) in [(&mut tasks, n), (&mut slots, s)] {
            match state.as_str() {
                "active" => c.active += v,
                "preparing" | "running" => c.running += v,
                "completed" => {
                    c.completed += v;
                    match result.as_str() {
                        "success" => c.succeeded += v,
                        "failure" => c.failed += v,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    Ok((TaskCountsResult { task_counts: tasks, task_slot_counts: slots }, retries))
}
