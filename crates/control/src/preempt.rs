//! Preemption of low-priority (spot) nodes, on an operator's demand (the
//! service preempts when Azure takes its capacity back; openbatch has no
//! such event, so people rehearse it with `openbatch node preempt`).
//!
//! A preempted node shows `preempted`, takes no tasks, and still counts as
//! one of its pool's low-priority nodes (`currentLowPriorityNodes`, as the
//! documentation says); the attempts it ran are killed and their tasks
//! requeued (requeueCount + 1, retryCount unchanged), as for any node lost
//! to a recovery operation. It comes back — reimaged, as a new spot VM
//! would be: its start task runs again — when the operator recovers it, or
//! by itself once the delay given with the preemption has passed
//! (`recover_due`, from the reconciliation loop).

use crate::cluster::Cluster;
use proto::ToAgent;
use std::time::{Duration, Instant};
use wire::enums::ComputeNodeState;
use wire::{Error, ErrorCode};

impl Cluster {
    /// Preempts the low-priority node `node_id` of `pool_id` at `now`; it
    /// recovers by itself `recover_after` later, if given. A dedicated node,
    /// or one preempted, leaving or deallocated already, is refused (409
    /// `OperationNotValidOnNode`).
    pub async fn preempt_node(&self, pool_id: &str, node_id: &str, recover_after: Option<Duration>, now: Instant) -> Result<(), Error> {
        let (running, own) = {
            let mut core = self.core();
            let n = core
                .nodes
                .get_mut(node_id)
                .filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id))
                .ok_or_else(|| Error::new(ErrorCode::NodeNotFound).with("NodeId", node_id))?;
            if n.is_dedicated {
                return Err(Error::msg(
                    ErrorCode::OperationNotValidOnNode,
                    "The compute node is dedicated: only a low-priority (spot) node can be preempted.",
                )
                .with("NodeId", node_id));
            }
            if matches!(
                n.state,
                ComputeNodeState::Preempted
                    | ComputeNodeState::LeavingPool
                    | ComputeNodeState::Deallocating
                    | ComputeNodeState::Deallocated
            ) {
                return Err(Error::msg(
                    ErrorCode::OperationNotValidOnNode,
                    format!("The compute node is {}: it cannot be preempted.", n.state.as_str()),
                )
                .with("NodeId", node_id));
            }
            n.set_state(ComputeNodeState::Preempted);
            n.recover_at = recover_after.and_then(|d| now.checked_add(d));
            n.drain = None;
            // Its start task and job preparation runs are lost with it: the
            // start task runs again when it recovers, preparation before
            // the next task of each job.
            let mut own: Vec<u64> = n.start_attempt.take().into_iter().collect();
            for p in n.preps.values() {
                own.extend(p.attempt.into_iter().chain(p.release_attempt));
            }
            n.preps.clear();
            (n.running.iter().map(|(a, s)| (*a, s.clone())).collect::<Vec<_>>(), own)
        };
        tracing::info!(node = %node_id, pool = %pool_id, tasks = running.len(), recover_after = ?recover_after, "preempting a low-priority node");
        // Attempts waiting in its queue are taken back (their tasks are still active).
        self.retract(node_id, |_, _| true, true);
        for (attempt, slot) in running {
            self.requeue_attempt(&slot.job_id, &slot.task_id, attempt).await;
            self.kill(node_id, attempt);
        }
        for attempt in own {
            self.send(node_id, ToAgent::Kill { attempt, grace_ms: 0 });
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Brings a preempted node back: it is reimaged (its task data goes, as
    /// with a new spot VM), then idle, and runs its pool's start task. A
    /// node that is not preempted is refused (409 `OperationNotValidOnNode`).
    pub fn recover_node(&self, pool_id: &str, node_id: &str) -> Result<(), Error> {
        {
            let mut core = self.core();
            let n = core
                .nodes
                .get_mut(node_id)
                .filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id))
                .ok_or_else(|| Error::new(ErrorCode::NodeNotFound).with("NodeId", node_id))?;
            if n.state != ComputeNodeState::Preempted {
                return Err(Error::msg(
                    ErrorCode::OperationNotValidOnNode,
                    format!("The compute node is {}, not preempted: there is nothing to recover.", n.state.as_str()),
                )
                .with("NodeId", node_id));
            }
            n.recover_at = None;
            n.set_state(ComputeNodeState::Reimaging);
        }
        tracing::info!(node = %node_id, pool = %pool_id, "a preempted node recovers");
        self.reset_node(node_id, true);
        Ok(())
    }

    /// Recovers the preempted nodes whose delay has passed at `now`.
    /// Returns how many.
    pub fn recover_due(&self, now: Instant) -> usize {
        let due: Vec<(String, String)> = self
            .core()
            .nodes
            .values()
            .filter(|n| n.state == ComputeNodeState::Preempted && n.recover_at.is_some_and(|t| t <= now))
            .map(|n| (n.pool_id.clone(), n.id.clone()))
            .collect();
        due.iter().filter(|(pool, node)| self.recover_node(pool, node).is_ok()).count()
    }
}
