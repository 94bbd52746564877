//! The store's own measurements, registered by the API's `/metrics`
//! (`api::metrics`): how long the writer's group commits take, and the
//! tasks that completed since the process started.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::LazyLock;

/// Seconds a group commit takes, from its transaction's first write to
/// `COMMIT` returning (every write of the group, and the fsync when one of
/// them is synced); buckets 0.1 ms to 3.3 s.
pub static COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));

/// Tasks that became `completed` with result `success` since the process
/// started (counted where a task's row is written, see `sqlite::tasks::save`).
pub static COMPLETED_SUCCESS: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Tasks that became `completed` with result `failure`.
pub static COMPLETED_FAILURE: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Tasks by state over every job, from the per-job counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTotals {
    pub active: i64,
    pub preparing: i64,
    pub running: i64,
    pub completed: i64,
}

impl TaskTotals {
    /// Adds `n` tasks in `state` (a counter row's state).
    pub(crate) fn add(&mut self, state: &str, n: i64) {
        match state {
            "active" => self.active += n,
            "preparing" => self.preparing += n,
            "running" => self.running += n,
            "completed" => self.completed += n,
            _ => {}
        }
    }
}

/// Counts a task that became `completed` (called by each backend where it
/// writes a task's row and its counters).
pub(crate) fn count_transition(old_state: &str, new_state: &str, new_result: &str) {
    if old_state != "completed" && new_state == "completed" {
        match new_result {
            "success" => COMPLETED_SUCCESS.inc(),
            "failure" => COMPLETED_FAILURE.inc(),
            _ => 0,
        };
    }
}
