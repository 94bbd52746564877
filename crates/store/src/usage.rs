//! Pool usage: the core-hours each pool's nodes were allocated, per pool
//! and hour, as `GET /poolusagemetrics` reports them. The control plane
//! adds what its nodes used (`Store::add_pool_usage`); a bucket is created
//! at the first addition to it and only ever grows.

pub use crate::backend::PoolUsage;
use crate::handle::Store;
use wire::Error;

/// Seconds in one aggregation interval.
pub const INTERVAL_SECS: i64 = crate::backend::USAGE_INTERVAL_SECS;

impl Store {
    /// Adds each entry's core-hours to its (pool, hour) bucket, in one
    /// transaction (the server's own bookkeeping: not synced at once).
    pub async fn add_pool_usage(&self, usage: Vec<PoolUsage>) -> Result<(), Error> {
        if let Some(u) = usage.iter().find(|u| u.start.rem_euclid(INTERVAL_SECS) != 0 || !u.core_hours.is_finite()) {
            return Err(Error::internal(format!("a usage bucket must start on the hour and be finite: {u:?}")));
        }
        if usage.is_empty() {
            return Ok(());
        }
        self.backend.add_pool_usage(usage).await
    }

    /// The buckets whose hour starts in `[from, to)` (Unix seconds), by
    /// start time, then pool id.
    pub async fn pool_usage(&self, from: i64, to: i64) -> Result<Vec<PoolUsage>, Error> {
        self.backend.pool_usage(from, to).await
    }

    /// The start of the latest hour that has usage, if any.
    pub async fn latest_pool_usage(&self) -> Result<Option<i64>, Error> {
        self.backend.latest_pool_usage().await
    }
}
