//! What the scheduler keeps between rounds: ready tasks read ahead, the pools'
//! active jobs, assignments not yet written, and when queues were last
//! rearranged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use wire::models::{CloudJob, CloudTask};
use wire::time::Timestamp;
use wire::Error;

/// A task by (job key, task key).
pub(crate) type TaskKey = (String, String);

/// A change that assigns a task to a node.
pub(crate) type AssignFn = Box<dyn FnOnce(&CloudJob, &mut CloudTask, Timestamp) -> Result<(), Error> + Send>;

/// The assignment of a queued attempt, not yet written.
pub(crate) struct Unwritten {
    /// The task's key in `inflight`.
    pub(crate) key: (String, String),
    pub(crate) node: String,
    pub(crate) assign: AssignFn,
}

/// A job's ready tasks read ahead of need.
pub(crate) struct ReadAhead {
    /// The store generation they were read at.
    pub(crate) generation: (u64, u64),
    /// The largest node's slots when they were read (tasks needing more
    /// were left out).
    pub(crate) max_slots: u32,
    /// The read returned every ready task there was.
    pub(crate) exhausted: bool,
    pub(crate) tasks: VecDeque<CloudTask>,
}

/// The scheduler's memory (part of [`super::Core`]).
#[derive(Default)]
pub(crate) struct Sched {
    /// Active jobs per pool, with the job generation they were read at.
    pub(crate) jobs: HashMap<String, (u64, Arc<Vec<CloudJob>>)>,
    /// Tasks assigned in memory whose assignment has not committed yet.
    pub(crate) inflight: HashSet<TaskKey>,
    /// Tasks that became ready again (a retry) while still in `inflight`:
    /// a read-ahead taken meanwhile left them out, so when they leave
    /// `inflight` the read-aheads are declared stale.
    pub(crate) readied_inflight: HashSet<TaskKey>,
    /// Assignments of queued attempts (see `Node::queued`), by attempt:
    /// written with the attempt's first report, in the same change.
    pub(crate) unwritten: HashMap<u64, Unwritten>,
    /// Ready tasks read ahead per job (by job key), valid while the store's
    /// generation is the one they were read at.
    pub(crate) ready: HashMap<String, ReadAhead>,
    /// When each pool's queues were last rearranged, by reason.
    retracted_at: HashMap<(String, &'static str), Instant>,
}

impl Sched {
    /// Whether the pool's queues may be rearranged for `why` at `now`: at
    /// most once every `every` per pool and reason.
    pub(crate) fn may_retract(&self, pool: &str, why: &'static str, now: Instant, every: std::time::Duration) -> bool {
        self.retracted_at.get(&(pool.to_string(), why)).is_none_or(|t| now.saturating_duration_since(*t) >= every)
    }

    /// The pool's queues were rearranged for `why` at `now`.
    pub(crate) fn retracted(&mut self, pool: &str, why: &'static str, now: Instant) {
        self.retracted_at.insert((pool.to_string(), why), now);
    }

    /// An active job from the cache of the pools' jobs.
    pub(crate) fn job(&self, job_id: &str) -> Option<&CloudJob> {
        self.jobs.values().flat_map(|(_, jobs)| jobs.iter()).find(|j| j.id.eq_ignore_ascii_case(job_id))
    }
}
