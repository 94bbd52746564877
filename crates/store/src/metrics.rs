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
