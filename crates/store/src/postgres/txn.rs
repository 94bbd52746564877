//! What a job change may read inside its transaction (the store's [`Txn`]),
//! on the writer's connection.

use super::writer::PgConn;
use crate::backend::Txn;
use crate::types::key_of;
use wire::models::{TaskCounts, TaskCountsResult};
use wire::Error;

/// What a job change may read, on the writer's connection.
pub(crate) struct PgTxn<'c>(pub(crate) std::cell::RefCell<&'c mut PgConn>);

impl Txn for PgTxn<'_> {
    fn pool_state(&self, pool_id: &str) -> Result<Option<String>, Error> {
        pool_state(&mut self.0.borrow_mut(), pool_id)
    }
    fn task_counts(&self, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
        counts(&mut self.0.borrow_mut(), job_id)
    }
}

/// A pool's state, read inside a transaction.
pub(crate) fn pool_state(c: &mut PgConn, pool_id: &str) -> Result<Option<String>, Error> {
    Ok(c.query_opt("SELECT state FROM pools WHERE key = $1", &[&key_of(pool_id)])?.map(|r| r.get(0)))
}

/// A job's task and slot counts by state and its total retries, read inside
/// a transaction.
pub(crate) fn counts(c: &mut PgConn, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
    let rows = c.query("SELECT state, result, n, slots, retries FROM task_counts WHERE job = $1", &[&key_of(job_id)])?;
    Ok(tally(rows.iter().map(|r| (r.get::<_, &str>(0), r.get::<_, &str>(1), r.get(2), r.get(3), r.get(4)))))
}

/// Sums `task_counts` rows (state, result, n, slots, retries) into counts.
pub(crate) fn tally<'a>(rows: impl Iterator<Item = (&'a str, &'a str, i64, i64, i64)>) -> (TaskCountsResult, i64) {
    let mut tasks = TaskCounts::default();
    let mut slots = TaskCounts::default();
    let mut retries = 0i64;
    for (state, result, n, s, r) in rows {
        retries += r;
        for (c, v) in [(&mut tasks, n), (&mut slots, s)] {
            match state {
                "active" => c.active += v,
                "preparing" | "running" => c.running += v,
                "completed" => {
                    c.completed += v;
                    match result {
                        "success" => c.succeeded += v,
                        "failure" => c.failed += v,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    (TaskCountsResult { task_counts: tasks, task_slot_counts: slots }, retries)
}
