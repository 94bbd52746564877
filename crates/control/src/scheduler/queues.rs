//! Node queues: attempts handed to busy nodes ahead of a free slot, and when
//! they are taken back (retract, yield to a higher-priority job, rebalance).

use crate::cluster::Cluster;
use crate::config::RETRACT_EVERY;
use crate::execution;
use crate::state::node::Slot;
use proto::ToAgent;
use std::sync::Arc;
use std::time::Instant;
use wire::models::CloudJob;
use wire::Error;

impl Cluster {
    /// The node started a queued attempt: it holds its slots now.
    pub fn promote(&self, node_id: &str, attempt: u64) {
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            if let Some(i) = n.queued.iter().position(|(a, _)| *a == attempt) {
                let (a, slot) = n.queued.remove(i);
                n.running.insert(a, slot);
                n.refresh_busy_state();
            }
        }
    }

    /// The node took a queued attempt and fetches its files first: it is
    /// `preparing` from now on, so its assignment is written at once.
    pub fn preparing(self: &Arc<Self>, node_id: &str, attempt: u64) {
        self.promote(node_id, attempt);
        if !self.core().sched.unwritten.contains_key(&attempt) {
            return;
        }
        let Some(slot) = self.core().nodes.get(node_id).and_then(|n| n.running.get(&attempt).cloned()) else { return };
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me.write_attempt(&slot.job_id, &slot.task_id, attempt, store::Durability::Relaxed, None).await;
        });
    }

    /// Takes back the attempts queued on a node (it stops taking tasks, or
    /// another node has a free slot for them). With `tell`, the agent drops
    /// them too (one it started meanwhile is killed and runs again later).
    pub(crate) fn retract(&self, node_id: &str, which: impl Fn(u64, &Slot) -> bool, tell: bool) {
        let taken: Vec<u64> = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let Some(n) = nodes.get_mut(node_id) else { return };
            let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut n.queued).into_iter().partition(|(a, s)| which(*a, s));
            n.queued = kept;
            taken.into_iter().map(|(a, _)| a).collect()
        };
        for a in taken {
            self.abandon(a);
            if tell {
                self.send(node_id, ToAgent::Kill { attempt: a, grace_ms: 0 });
            }
        }
    }

    /// Takes back a task's queued attempt (the task was terminated or deleted).
    pub fn retract_task(&self, job: &str, task: &str) {
        let nodes: Vec<String> = self.core().nodes.keys().cloned().collect();
        for n in nodes {
            self.retract(&n, |_, s| s.job_id.eq_ignore_ascii_case(job) && s.task_id.eq_ignore_ascii_case(task), true);
        }
    }

    /// Takes back every queued attempt of a job (it ended, or was disabled).
    pub fn retract_job(&self, job: &str) {
        let nodes: Vec<String> = self.core().nodes.keys().cloned().collect();
        for n in nodes {
            self.retract(&n, |_, s| s.job_id.eq_ignore_ascii_case(job), true);
        }
    }

    /// Whether the pool's queues may be rearranged for `why` at `now` (see `RETRACT_EVERY`).
    pub(crate) fn may_retract(&self, pool: &str, why: &'static str, now: Instant) -> bool {
        self.core().sched.may_retract(pool, why, now, RETRACT_EVERY)
    }

    /// A job with ready tasks finds the pool full while the nodes' queues
    /// hold tasks of lower-priority jobs: those are taken back, so the next
    /// round gives the job their places (priority decides who runs next).
    /// (Only for a ready task that a queue can take, and at most every
    /// `RETRACT_EVERY` per pool: a task that cannot be placed after all must
    /// not make the queues churn.)
    pub(crate) async fn yield_queues(&self, pool: &str, job: &CloudJob, jobs: &[CloudJob], now: Instant) -> Result<(), Error> {
        if job.job_preparation_task.is_some() || !self.may_retract(pool, "yield", now) {
            return Ok(());
        }
        let lower: std::collections::HashSet<String> =
            jobs.iter().filter(|j| j.priority < job.priority).map(|j| store::key_of(&j.id)).collect();
        let holders: Vec<String> = self
            .core()
            .nodes
            .values()
            .filter(|n| n.pool_id == pool && n.tx.is_some() && n.queued.iter().any(|(_, s)| lower.contains(&store::key_of(&s.job_id))))
            .map(|n| n.id.clone())
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        let manager = job.job_manager_task.as_ref().and_then(|m| m.id.as_deref());
        let max_slots = self.core().nodes.values().filter(|n| n.pool_id == pool).map(|n| n.slots).max().unwrap_or(1);
        let Some(ready) = self.take_ready(&job.id, manager, 1, max_slots).await?.pop() else { return Ok(()) };
        let widest = self.core().nodes.values().filter(|n| n.pool_id == pool && n.schedulable()).map(|n| n.slots).max().unwrap_or(0);
        let queueable = ready.multi_instance_settings.is_none()
            && ready.required_slots.max(1) as u32 <= widest
            && execution::manager_of(job, &ready.id).is_none_or(|m| m.run_exclusive == Some(false));
        if let Some(r) = self.core().sched.ready.get_mut(&store::key_of(&job.id)) {
            r.tasks.push_front(ready);
        }
        if !queueable {
            return Ok(());
        }
        self.core().sched.retracted(pool, "yield", now);
        for node in holders {
            self.retract(&node, |_, s| lower.contains(&store::key_of(&s.job_id)), true);
        }
        Ok(())
    }

    /// A queued attempt should not wait behind a busy node while another
    /// node of the pool has a free slot: take it back, to be placed there.
    /// (Tasks of jobs with a preparation task stay: the free node may not
    /// have run it yet.)
    pub(crate) fn rebalance(&self, pool: &str, now: Instant) {
        if !self.may_retract(pool, "rebalance", now) {
            return;
        }
        let moves: Vec<(String, Vec<u64>)> = {
            let core = self.core();
            let movable = |job: &str| core.sched.job(job).is_some_and(|j| j.job_preparation_task.is_none());
            let nodes = &core.nodes;
            let of_pool = || nodes.values().filter(|n| n.pool_id == pool);
            let free: Vec<u32> = of_pool().filter(|n| n.schedulable()).map(|n| n.free()).filter(|f| *f > 0).collect();
            let Some(widest) = free.iter().copied().max() else { return };
            let mut budget: u32 = free.iter().sum();
            let mut moves = Vec::new();
            // (Not from a node out of contact: it may have started them.)
            for n in of_pool().filter(|n| !n.queued.is_empty() && n.free() == 0 && n.tx.is_some()) {
                let mut taken = Vec::new();
                for (a, s) in n.queued.iter().rev() {
                    if s.slots <= widest && s.slots <= budget && movable(&s.job_id) {
                        budget -= s.slots;
                        taken.push(*a);
                    }
                }
                moves.push((n.id.clone(), taken));
            }
            moves
        };
        if moves.iter().any(|(_, a)| !a.is_empty()) {
            self.core().sched.retracted(pool, "rebalance", now);
        }
        for (node, attempts) in moves {
            self.retract(&node, |a, _| attempts.contains(&a), true);
        }
    }
}
