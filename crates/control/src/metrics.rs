//! The control plane's own measurements, registered by the API's
//! `/metrics` (`api::metrics`).

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::LazyLock;

/// Seconds from when a task became ready to run (added, or back to `active`
/// for a retry or a reactivation) to when its process started on a node, as
/// the task's times record them (see `execution::transition`); buckets 1 ms
/// to 131 s. Tasks with dependencies are left out: the time their last
/// dependency was satisfied is not recorded.
pub static DISPATCH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| Histogram::new(exponential_buckets(0.001, 2.0, 18)));
