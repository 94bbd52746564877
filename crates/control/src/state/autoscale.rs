//! Autoscale's memory: each pool's sample history (what its formula's
//! `$PendingTasks`, `$CPUPercent`, … read), the node counters of the last
//! sample (resource samples are differences between two), and when the
//! pool's formula is next due. The rules here need nothing but this state:
//! turning task counts and the nodes' measurements into one sample tick.

use ::autoscale::{Metric, Samples, Tick};
use chrono::{DateTime, Utc};
use proto::NodeUsage;
use std::collections::HashMap;
use std::time::Duration;
use store::PoolTaskCounts;

/// The most ticks kept per pool: 24 hours of the service's 30-second
/// samples. A shorter sample period keeps as many ticks (less history), so
/// a pool never holds more than about 400 KiB.
pub const MAX_TICKS: u32 = 2_880;

/// Autoscale's state for every pool, by lower-cased pool id.
#[derive(Default)]
pub struct Autoscale {
    pub pools: HashMap<String, PoolScale>,
    /// When each pool's autoscale was last enabled or changed
    /// (`enableautoscale`), for the service's limit of one call per 30 s.
    pub enabled_at: HashMap<String, DateTime<Utc>>,
}

/// The service's shortest time between two `enableautoscale` calls on a pool.
pub const ENABLE_AUTOSCALE_SPACING: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

impl Autoscale {
    /// Records an `enableautoscale` call on a pool at `now`; false (and
    /// nothing recorded) when the last one is less than 30 s before.
    pub fn enable_allowed(&mut self, pool_key: &str, now: DateTime<Utc>) -> bool {
        if self.enabled_at.get(pool_key).is_some_and(|t| now < *t + ENABLE_AUTOSCALE_SPACING && now >= *t) {
            return false;
        }
        self.enabled_at.insert(pool_key.to_string(), now);
        true
    }
}

/// One pool's autoscale state.
pub struct PoolScale {
    pub samples: Samples,
    /// Each node's counters at the last sample.
    pub last: HashMap<String, NodeUsage>,
    /// When the last sample was taken.
    pub last_at: Option<DateTime<Utc>>,
    /// When the formula is next evaluated; `None`: at the next chance.
    pub next_eval: Option<DateTime<Utc>>,
}

impl PoolScale {
    pub fn new(period: Duration) -> PoolScale {
        let retention = (period * MAX_TICKS).min(Samples::DEFAULT_RETENTION);
        PoolScale { samples: Samples::new(period, retention), last: HashMap::new(), last_at: None, next_eval: None }
    }

    /// Records the sample taken at `now` from the pool's task counts and its
    /// nodes' latest measurements (a node without one counts in no resource
    /// figure). Returns the tick recorded; none when the pool already has a
    /// sample as late.
    /// `preempted` is how many of its nodes are preempted now.
    pub fn sample(&mut self, now: DateTime<Utc>, counts: PoolTaskCounts, nodes: &[(String, NodeUsage)], preempted: usize) -> Option<Tick> {
        if self.last_at.is_some_and(|t| t >= now) {
            return None;
        }
        let mut tick = task_tick(counts);
        tick.set(Metric::PreemptedNodeCount, preempted as f64);
        let elapsed = self.last_at.map(|t| (now - t).num_milliseconds() as f64 / 1000.0).filter(|s| *s > 0.0);
        resource_tick(&mut tick, &self.last, nodes, elapsed);
        self.samples.record(now, &tick);
        self.last = nodes.iter().cloned().collect();
        self.last_at = Some(now);
        Some(tick)
    }
}

/// The task samples: `$PendingTasks` is `$ActiveTasks + $RunningTasks`.
pub fn task_tick(c: PoolTaskCounts) -> Tick {
    Tick::new()
        .with(Metric::ActiveTasks, c.active as f64)
        .with(Metric::RunningTasks, c.running as f64)
        .with(Metric::PendingTasks, (c.active + c.running) as f64)
        .with(Metric::SucceededTasks, c.succeeded as f64)
        .with(Metric::FailedTasks, c.failed as f64)
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// The resource samples, as the documentation defines them, from each
/// node's measurement now and at the last sample (`elapsed` seconds ago):
/// `$CPUPercent` the average over the nodes of their busy share of CPU time
/// since the last sample; `$MemoryBytes` the average memory in use, in
/// megabytes, and `$DiskBytes` the average disk space in use, in gigabytes
/// (the documentation's units); `$DiskReadBytes $DiskWriteBytes
/// $DiskReadOps $DiskWriteOps $NetworkInBytes $NetworkOutBytes` the sums
/// over the nodes of what their counters moved since the last sample;
/// `$WallClockSeconds` the node-seconds that covered; `$SampleNodeCount`
/// the nodes measured. A figure no node could give is missing from the
/// tick (an unavailable sample), as on a pool without nodes.
pub fn resource_tick(tick: &mut Tick, last: &HashMap<String, NodeUsage>, nodes: &[(String, NodeUsage)], elapsed: Option<f64>) {
    tick.set(Metric::SampleNodeCount, nodes.len() as f64);
    let avg = |v: Vec<f64>| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    tick.set(Metric::MemoryBytes, avg(nodes.iter().filter_map(|(_, u)| u.memory_bytes).map(|b| b as f64 / MIB).collect()));
    tick.set(Metric::DiskBytes, avg(nodes.iter().filter_map(|(_, u)| u.disk_bytes).map(|b| b as f64 / GIB).collect()));
    let pairs: Vec<(&NodeUsage, &NodeUsage)> = nodes.iter().filter_map(|(id, now)| last.get(id).map(|before| (before, now))).collect();
    let cpu: Vec<f64> = pairs
        .iter()
        .filter_map(|(b, n)| {
            let busy = n.cpu_busy?.checked_sub(b.cpu_busy?)?;
            let total = n.cpu_total?.checked_sub(b.cpu_total?).filter(|t| *t > 0)?;
            Some((busy as f64 / total as f64 * 100.0).min(100.0))
        })
        .collect();
    tick.set(Metric::CpuPercent, avg(cpu));
    // A counter that went back (the machine restarted) counts from zero.
    let moved = |f: fn(&NodeUsage) -> Option<u64>| -> f64 {
        let d: Vec<u64> = pairs.iter().filter_map(|(b, n)| Some(f(n)?.checked_sub(f(b)?).unwrap_or(f(n)?))).collect();
        if d.is_empty() {
            f64::NAN
        } else {
            d.iter().sum::<u64>() as f64
        }
    };
    tick.set(Metric::DiskReadBytes, moved(|u| u.disk_read_bytes));
    tick.set(Metric::DiskWriteBytes, moved(|u| u.disk_write_bytes));
    tick.set(Metric::DiskReadOps, moved(|u| u.disk_read_ops));
    tick.set(Metric::DiskWriteOps, moved(|u| u.disk_write_ops));
    tick.set(Metric::NetworkInBytes, moved(|u| u.net_in_bytes));
    tick.set(Metric::NetworkOutBytes, moved(|u| u.net_out_bytes));
    tick.set(
        Metric::WallClockSeconds,
        match elapsed {
            Some(s) if !pairs.is_empty() => s * pairs.len() as f64,
            _ => f64::NAN,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enableautoscale_is_limited_to_one_call_per_pool_every_30_seconds() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let s = |n: i64| t0 + chrono::TimeDelta::seconds(n);
        let mut a = Autoscale::default();
        assert!(a.enable_allowed("p", t0));
        assert!(a.enable_allowed("q", s(1)), "each pool has its own limit");
        assert!(!a.enable_allowed("p", s(29)));
        assert!(!a.enable_allowed("p", s(29)), "a refused call does not restart the 30 s");
        assert!(a.enable_allowed("p", s(30)));
        assert!(!a.enable_allowed("p", s(45)));
        assert!(a.enable_allowed("q", s(31)));
    }

    fn usage(busy: u64, total: u64, mem_mib: u64, read: u64) -> NodeUsage {
        NodeUsage {
            cpu_busy: Some(busy),
            cpu_total: Some(total),
            memory_bytes: Some(mem_mib << 20),
            disk_bytes: Some(3 << 30),
            disk_read_bytes: Some(read),
            ..NodeUsage::default()
        }
    }

    #[test]
    fn resource_samples_are_differences_averages_and_sums() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().with_timezone(&Utc);
        let mut p = PoolScale::new(Duration::from_secs(30));
        let counts = PoolTaskCounts { active: 7, running: 3, succeeded: 2, failed: 1 };
        let first = p.sample(t0, counts, &[("a".into(), usage(100, 1000, 512, 4096))], 0).unwrap();
        assert!(p.sample(t0, counts, &[], 0).is_none(), "one sample per instant");
        assert_eq!(first.get(Metric::PendingTasks), Some(10.0));
        assert_eq!(first.get(Metric::SampleNodeCount), Some(1.0));
        assert_eq!(first.get(Metric::MemoryBytes), Some(512.0));
        assert_eq!(first.get(Metric::DiskBytes), Some(3.0));
        assert_eq!(first.get(Metric::CpuPercent), None, "no earlier measurement to compare with");
        assert_eq!(first.get(Metric::DiskReadBytes), None);

        let nodes = [("a".to_string(), usage(400, 2000, 1024, 8192)), ("b".to_string(), usage(50, 100, 0, 1))];
        let second = p.sample(t0 + chrono::Duration::seconds(30), counts, &nodes, 0).unwrap();
        assert_eq!(second.get(Metric::CpuPercent), Some(30.0), "a: 300 busy of 1000; b is new");
        assert_eq!(second.get(Metric::MemoryBytes), Some(512.0), "(1024 + 0) / 2");
        assert_eq!(second.get(Metric::DiskReadBytes), Some(4096.0));
        assert_eq!(second.get(Metric::WallClockSeconds), Some(30.0));
        assert_eq!(second.get(Metric::SampleNodeCount), Some(2.0));

        // A node whose counters went back (restarted) counts from zero.
        let third = p.sample(t0 + chrono::Duration::seconds(60), counts, &[("b".to_string(), usage(60, 120, 0, 5))], 0).unwrap();
        assert_eq!(third.get(Metric::DiskReadBytes), Some(4.0));
        let fourth = p.sample(t0 + chrono::Duration::seconds(90), counts, &[("b".to_string(), usage(1, 2, 0, 2))], 0).unwrap();
        assert_eq!(fourth.get(Metric::DiskReadBytes), Some(2.0));
        assert_eq!(p.samples.len(), 4);

        // No nodes: no resource samples, task samples still.
        let empty = p.sample(t0 + chrono::Duration::seconds(120), counts, &[], 2).unwrap();
        assert_eq!((empty.get(Metric::CpuPercent), empty.get(Metric::ActiveTasks)), (None, Some(7.0)));
        assert_eq!((first.get(Metric::PreemptedNodeCount), empty.get(Metric::PreemptedNodeCount)), (Some(0.0), Some(2.0)));
        assert_eq!(empty.get(Metric::SampleNodeCount), Some(0.0));
    }

    #[test]
    fn a_short_period_keeps_as_many_ticks_not_a_day() {
        assert_eq!(PoolScale::new(Duration::from_secs(1)).samples.capacity(), MAX_TICKS as usize);
        assert_eq!(PoolScale::new(Duration::from_secs(30)).samples.capacity(), MAX_TICKS as usize);
        assert_eq!(PoolScale::new(Duration::from_secs(60)).samples.capacity(), 1_440);
    }
}
