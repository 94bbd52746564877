//! The sampled system variables and the per-pool store of their samples.

use crate::value::{TimeInterval, Timestamp};
use chrono::{DateTime, Utc};
use std::time::Duration;

macro_rules! metrics {
    ($($variant:ident = $name:literal),+ $(,)?) => {
        /// A read-only system variable that is a time series of samples,
        /// read through its methods (`GetSample`, `GetSamplePercent`,
        /// `GetSamplePeriod`, `Count`, `HistoryBeginTime`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Metric { $($variant),+ }

        impl Metric {
            /// Every metric, in the order of a [`Tick`]'s values.
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),+];
            /// The variable's name in a formula, with its `$`.
            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name),+ }
            }
        }
    };
}

metrics! {
    CpuPercent = "$CPUPercent",
    WallClockSeconds = "$WallClockSeconds",
    MemoryBytes = "$MemoryBytes",
    DiskBytes = "$DiskBytes",
    DiskReadBytes = "$DiskReadBytes",
    DiskWriteBytes = "$DiskWriteBytes",
    DiskReadOps = "$DiskReadOps",
    DiskWriteOps = "$DiskWriteOps",
    NetworkInBytes = "$NetworkInBytes",
    NetworkOutBytes = "$NetworkOutBytes",
    SampleNodeCount = "$SampleNodeCount",
    ActiveTasks = "$ActiveTasks",
    RunningTasks = "$RunningTasks",
    PendingTasks = "$PendingTasks",
    SucceededTasks = "$SucceededTasks",
    FailedTasks = "$FailedTasks",
    PreemptedNodeCount = "$PreemptedNodeCount",
}

/// How many metrics a [`Tick`] holds.
pub const METRIC_COUNT: usize = 17;
const _: () = assert!(Metric::ALL.len() == METRIC_COUNT);

impl Metric {
    /// The metric a formula name stands for (case-insensitive, like every
    /// system variable name).
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.name().eq_ignore_ascii_case(name))
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// One sampling instant's values, one per metric; a metric not measured at
/// that instant is missing (it counts as an unavailable sample).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    values: [f64; METRIC_COUNT],
}

impl Default for Tick {
    fn default() -> Self {
        Tick { values: [f64::NAN; METRIC_COUNT] }
    }
}

impl Tick {
    /// A tick with every metric missing.
    pub fn new() -> Tick {
        Tick::default()
    }
    /// Sets one metric (a NaN value leaves it missing).
    pub fn set(&mut self, metric: Metric, value: f64) -> &mut Tick {
        self.values[metric.index()] = value;
        self
    }
    pub fn with(mut self, metric: Metric, value: f64) -> Tick {
        self.set(metric, value);
        self
    }
    pub fn get(&self, metric: Metric) -> Option<f64> {
        let v = self.values[metric.index()];
        (!v.is_nan()).then_some(v)
    }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    /// Milliseconds since the Unix epoch.
    at: i64,
    values: [f64; METRIC_COUNT],
}

/// The samples of one pool: a ring of the last `retention / period` ticks
/// (24 hours of 30-second samples by default: 2,880), oldest overwritten
/// first. Ticks must come in increasing time order. Memory grows with the
/// ticks actually stored, up to [`Samples::capacity`]; see
/// [`Samples::memory_bytes`].
#[derive(Debug, Clone)]
pub struct Samples {
    period: TimeInterval,
    capacity: usize,
    /// Chronological once rotated by `head`: `buf[head]` is the oldest when full.
    buf: Vec<Point>,
    head: usize,
}

impl Samples {
    /// The default history: 24 hours.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
    /// The service's sample period.
    pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);

    /// A store for samples taken every `period`, keeping `retention` of
    /// history (at least one tick).
    pub fn new(period: Duration, retention: Duration) -> Samples {
        let period = if period.is_zero() { Duration::from_secs(1) } else { period };
        let capacity = (retention.as_nanos() / period.as_nanos()).clamp(1, 10_000_000) as usize;
        Samples { period: TimeInterval::from_std(period), capacity, buf: Vec::new(), head: 0 }
    }

    /// 24 hours of samples taken every `period`.
    pub fn with_period(period: Duration) -> Samples {
        Samples::new(period, Samples::DEFAULT_RETENTION)
    }

    /// The sample period (what `GetSamplePeriod()` returns).
    pub fn period(&self) -> TimeInterval {
        self.period
    }
    /// The most ticks kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Ticks stored.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes this store holds (its own size and its buffer's allocation).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Samples>() + self.buf.capacity() * std::mem::size_of::<Point>()
    }

    /// Adds the tick taken at `at`. A tick not later than the last one is
    /// refused (returns false); when full, the oldest tick is dropped.
    pub fn record(&mut self, at: DateTime<Utc>, tick: &Tick) -> bool {
        let at = at.timestamp_millis();
        if self.last_millis().is_some_and(|last| at <= last) {
            return false;
        }
        let point = Point { at, values: tick.values };
        if self.buf.len() < self.capacity {
            if self.buf.len() == self.buf.capacity() {
                // Grow by doubling but never past the capacity.
                let extra = self.buf.len().max(16).min(self.capacity - self.buf.len());
                self.buf.reserve_exact(extra);
            }
            self.buf.push(point);
        } else {
            self.buf[self.head] = point;
            self.head = (self.head + 1) % self.capacity;
        }
        true
    }

    /// Drops every tick.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }

    fn last_millis(&self) -> Option<i64> {
        (!self.buf.is_empty()).then(|| self.at(self.buf.len() - 1).at)
    }

    /// The `i`-th tick in time order.
    fn at(&self, i: usize) -> &Point {
        let n = self.buf.len();
        &self.buf[(self.head + i) % n]
    }

    /// The index of the first tick later than `ms`.
    fn first_after(&self, ms: i64) -> usize {
        let (mut lo, mut hi) = (0, self.buf.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.at(mid).at <= ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The available values of `metric` taken in `(from, to]`, oldest first.
    pub fn window(&self, metric: Metric, from: Timestamp, to: Timestamp) -> Vec<f64> {
        let (lo, hi) = (self.first_after(from.millis()), self.first_after(to.millis()));
        let k = metric.index();
        (lo..hi.max(lo)).map(|i| self.at(i).values[k]).filter(|v| !v.is_nan()).collect()
    }

    /// How many available values of `metric` were taken in `(from, to]`.
    pub fn count_window(&self, metric: Metric, from: Timestamp, to: Timestamp) -> usize {
        let (lo, hi) = (self.first_after(from.millis()), self.first_after(to.millis()));
        let k = metric.index();
        (lo..hi.max(lo)).filter(|&i| !self.at(i).values[k].is_nan()).count()
    }

    /// The last `n` available values of `metric`, oldest first.
    pub fn last(&self, metric: Metric, n: usize) -> Vec<f64> {
        let k = metric.index();
        let mut out: Vec<f64> = (0..self.buf.len()).rev().map(|i| self.at(i).values[k]).filter(|v| !v.is_nan()).take(n).collect();
        out.reverse();
        out
    }

    /// How many available values of `metric` the history holds.
    pub fn count(&self, metric: Metric) -> usize {
        let k = metric.index();
        self.buf.iter().filter(|p| !p.values[k].is_nan()).count()
    }

    /// When the oldest available value of `metric` was taken.
    pub fn begin_time(&self, metric: Metric) -> Option<Timestamp> {
        let k = metric.index();
        (0..self.buf.len()).map(|i| self.at(i)).find(|p| !p.values[k].is_nan()).map(|p| Timestamp::from_millis(p.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn ring_keeps_the_newest_and_stays_ordered() {
        let mut s = Samples::new(Duration::from_secs(30), Duration::from_secs(30 * 5));
        assert_eq!(s.capacity(), 5);
        for i in 0..12 {
            assert!(s.record(t(i * 30), &Tick::new().with(Metric::ActiveTasks, i as f64)));
        }
        assert_eq!(s.len(), 5);
        assert_eq!(s.last(Metric::ActiveTasks, 10), vec![7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(s.last(Metric::ActiveTasks, 2), vec![10.0, 11.0]);
        assert_eq!(s.begin_time(Metric::ActiveTasks), Some(Timestamp::from_datetime(t(7 * 30))));
        let from = Timestamp::from_datetime(t(8 * 30));
        let to = Timestamp::from_datetime(t(10 * 30));
        assert_eq!(s.window(Metric::ActiveTasks, from, to), vec![9.0, 10.0]);
        assert!(!s.record(t(11 * 30), &Tick::new()), "a tick at the same time is refused");
        assert!(!s.record(t(0), &Tick::new()), "an older tick is refused");
    }

    #[test]
    fn missing_values_are_not_samples() {
        let mut s = Samples::with_period(Duration::from_secs(30));
        s.record(t(0), &Tick::new().with(Metric::CpuPercent, 0.5));
        s.record(t(30), &Tick::new().with(Metric::ActiveTasks, 1.0));
        assert_eq!(s.count(Metric::CpuPercent), 1);
        assert_eq!(s.count(Metric::ActiveTasks), 1);
        assert_eq!(s.count(Metric::RunningTasks), 0);
        assert_eq!(s.begin_time(Metric::RunningTasks), None);
        assert_eq!(s.last(Metric::CpuPercent, 5), vec![0.5]);
    }

    #[test]
    fn memory_grows_with_the_ticks_up_to_the_capacity() {
        let mut s = Samples::with_period(Duration::from_secs(30));
        assert_eq!(s.capacity(), 2880);
        let empty = s.memory_bytes();
        s.record(t(0), &Tick::new());
        assert!(s.memory_bytes() > empty);
        for i in 1..10_000 {
            s.record(t(i * 30), &Tick::new().with(Metric::PendingTasks, 1.0));
        }
        assert_eq!(s.len(), 2880);
        let point = std::mem::size_of::<Point>();
        assert_eq!(s.memory_bytes(), std::mem::size_of::<Samples>() + 2880 * point);
    }

    #[test]
    fn metric_names_match_case_insensitively() {
        assert_eq!(Metric::from_name("$ActiveTasks"), Some(Metric::ActiveTasks));
        assert_eq!(Metric::from_name("$activetasks"), Some(Metric::ActiveTasks));
        assert_eq!(Metric::from_name("$CPUPercent"), Some(Metric::CpuPercent));
        assert_eq!(Metric::from_name("ActiveTasks"), None);
        assert_eq!(Metric::from_name("$CurrentDedicatedNodes"), None);
    }
}
