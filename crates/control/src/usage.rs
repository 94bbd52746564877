//! Pool usage metrics: each node's core-time, recorded per pool and hour in
//! the store (`store::usage`), as `GET /poolusagemetrics` reports it. A node
//! counts from the moment it joined until it leaves the registry; what it
//! used since it was last recorded is added every `USAGE_RECORD_EVERY`
//! (supervisor) and before the metrics are read.

use crate::cluster::Cluster;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use store::usage::{PoolUsage, INTERVAL_SECS};
use wire::Error;

/// How often the nodes' core-time is written to the store.
pub const USAGE_RECORD_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// `[from, to)` split into the hours it touches: (the hour's start in Unix
/// seconds, the seconds of the span in that hour).
pub fn split_hours(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(i64, f64)> {
    let (mut at, end) = (from.timestamp_millis(), to.timestamp_millis());
    let mut out = Vec::new();
    while at < end {
        let hour = at.div_euclid(INTERVAL_SECS * 1000) * INTERVAL_SECS;
        let next = ((hour + INTERVAL_SECS) * 1000).min(end);
        out.push((hour, (next - at) as f64 / 1000.0));
        at = next;
    }
    out
}

impl Cluster {
    /// Adds every node's core-hours since they were last recorded (or since
    /// it joined) up to `now` to its pool's hourly buckets.
    pub async fn record_usage(&self, now: DateTime<Utc>) -> Result<(), Error> {
        let mut used: HashMap<(String, i64), f64> = HashMap::new();
        {
            let mut core = self.core();
            for (pool, from, to, cores) in std::mem::take(&mut core.departed_usage) {
                for (hour, secs) in split_hours(from, to) {
                    *used.entry((pool.clone(), hour)).or_default() += secs * f64::from(cores) / 3600.0;
                }
            }
            for n in core.nodes.values_mut() {
                // A node not joined yet (a Slurm job in the queue) uses nothing.
                if n.pending() {
                    n.usage_recorded = now;
                    continue;
                }
                if n.usage_recorded >= now {
                    continue;
                }
                for (hour, secs) in split_hours(n.usage_recorded, now) {
                    *used.entry((n.pool_id.clone(), hour)).or_default() += secs * f64::from(n.cores) / 3600.0;
                }
                n.usage_recorded = now;
            }
        }
        if used.is_empty() {
            return Ok(());
        }
        // The pools' ids as created and their VM sizes (a deleted pool's
        // last nodes keep the id they carry, with no size).
        let pools: HashMap<String, (String, String)> = self
            .store
            .pool_summaries()
            .await?
            .into_iter()
            .filter_map(|p| {
                let id = p.get("id")?.as_str()?.to_string();
                let size = p.get("vmSize").and_then(|v| v.as_str()).unwrap_or_default().to_string();
                Some((id.to_lowercase(), (id, size)))
            })
            .collect();
        let usage = used
            .into_iter()
            .map(|((pool, start), core_hours)| {
                let (pool_id, vm_size) = pools.get(&pool.to_lowercase()).cloned().unwrap_or((pool, String::new()));
                PoolUsage { pool_id, start, vm_size, core_hours }
            })
            .collect();
        self.store.add_pool_usage(usage).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spans_split_at_the_hour() {
        let h = t("2026-01-01T10:00:00Z").timestamp();
        assert_eq!(split_hours(t("2026-01-01T10:15:00Z"), t("2026-01-01T10:45:30Z")), vec![(h, 1830.0)]);
        assert_eq!(
            split_hours(t("2026-01-01T10:59:59.5Z"), t("2026-01-01T12:00:01Z")),
            vec![(h, 0.5), (h + 3600, 3600.0), (h + 7200, 1.0)]
        );
        assert_eq!(split_hours(t("2026-01-01T10:00:00Z"), t("2026-01-01T10:00:00Z")), vec![]);
        assert_eq!(split_hours(t("2026-01-01T11:00:00Z"), t("2026-01-01T10:00:00Z")), vec![]);
    }
}
