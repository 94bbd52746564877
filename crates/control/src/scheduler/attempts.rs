//! Writing attempts: the assignment change, its ordering before every later
//! report of the attempt, and requeueing a lost attempt.

use crate::cluster::Cluster;
use crate::execution;
use crate::state::sched::AssignFn;
use wire::enums::{JobState, TaskState};
use wire::models::{CloudJob, CloudTask, ComputeNodeInformation};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

/// The change that gives an `active` task of an active job to `attempt` on
/// `node` (`preparing`): a scheduling round's, or an adoption's.
pub(crate) fn assign(attempt: u64, node: String, info: ComputeNodeInformation) -> AssignFn {
    Box::new(move |j: &CloudJob, t: &mut CloudTask, now: Timestamp| {
        if t.state != TaskState::Active || j.state != JobState::Active {
            return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
        }
        t.attempt = Some(attempt);
        t.node = Some(node);
        t.node_info = Some(info);
        execution::transition(t, TaskState::Preparing, now);
        Ok(())
    })
}

impl Cluster {
    /// Sends a task whose attempt was lost back to `active` (requeueCount + 1).
    pub async fn requeue_attempt(&self, job: &str, task: &str, attempt: u64) {
        if self.abandon(attempt) {
            return; // its assignment was never written: the task is still active
        }
        // Losing any instance of a multi-instance task loses the whole attempt.
        let attempt = self.multi_abort(attempt).unwrap_or(attempt);
        let r = self
            .write_attempt(
                job,
                task,
                attempt,
                store::Durability::Prompt,
                Some(Box::new(move |_, t, now| {
                    if t.attempt != Some(attempt) || !matches!(t.state, TaskState::Preparing | TaskState::Running) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    execution::requeue(t, now);
                    Ok(())
                })),
            )
            .await;
        if let Ok(t) = &r {
            self.readied(job, &t.id);
        }
        self.wake.notify_one();
    }

    /// Writes a change to an attempt's task, preceded — in the same change —
    /// by the attempt's assignment when that was never written (a queued
    /// attempt's first report). Whichever report comes first carries it, and
    /// later changes queue behind it.
    /// With no change (`f` None), only an assignment not yet written is.
    /// Every change the server makes to an attempt's task goes through here,
    /// written without waiting for an fsync (`store::Durability::Relaxed`,
    /// or `Prompt` when work waits on it).
    pub(crate) async fn write_attempt(
        &self,
        job: &str,
        task: &str,
        attempt: u64,
        durability: store::Durability,
        f: Option<AssignFn>,
    ) -> Result<CloudTask, Error> {
        let (done, pending) = {
            let mut core = self.core();
            let unwritten = &mut core.sched.unwritten;
            let pending = unwritten.remove(&attempt);
            let (assign, pending) = match pending {
                Some(u) => (Some(u.assign), Some((u.key, u.node))),
                None if f.is_none() => return Err(Error::new(ErrorCode::OperationInvalidForCurrentState)),
                None => (None, None),
            };
            let change: AssignFn = Box::new(move |j, t, now| {
                if let Some(assign) = assign {
                    assign(j, t, now)?;
                }
                f.map_or(Ok(()), |f| f(j, t, now))
            });
            // Queued while `unwritten` is locked: no later change to the
            // attempt can be queued ahead of its assignment.
            (self.store.update_tasks(vec![(job.to_string(), task.to_string(), change)], durability), pending)
        };
        let r = done.await.and_then(|mut v| v.pop().unwrap_or_else(|| Err(Error::internal("no result"))));
        if let Some((key, node)) = pending {
            self.leave_inflight(&key);
            if r.is_err() {
                // The task changed before the node took it (terminated, deleted, job ended).
                // (A read-ahead that began while it was in flight left it out: read again.)
                self.kill(&node, attempt);
                self.store.bump_tasks();
            }
            self.wake.notify_one();
        }
        r
    }

    /// A task's assignment is settled (written or abandoned).
    pub(crate) fn leave_inflight(&self, key: &(String, String)) {
        let stale = {
            let mut core = self.core();
            core.sched.inflight.remove(key);
            core.sched.readied_inflight.remove(key)
        };
        if stale {
            self.store.bump_tasks();
        }
    }

    /// Forgets a queued attempt whose assignment was never written: its task
    /// is still `active` and is scheduled again. False when it was written.
    pub(crate) fn abandon(&self, attempt: u64) -> bool {
        let Some(u) = self.core().sched.unwritten.remove(&attempt) else { return false };
        self.leave_inflight(&u.key);
        // A read-ahead taken meanwhile left the task out.
        self.store.bump_tasks();
        self.wake.notify_one();
        true
    }
}
