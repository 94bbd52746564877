//! Liveness and recovery: nodes that go silent, nodes expected back after a
//! restart, orphaned assignments, and the retention of task directories.

use crate::cluster::Cluster;
use crate::config::NODE_LOST_AFTER;
use crate::state::node::Slot;
use proto::FileOp;
use std::time::Instant;
use wire::enums::ComputeNodeState;
use wire::models::CloudTask;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

impl Cluster {
    /// Nodes this server waits for before it schedules (see `expect_nodes`).
    pub(crate) fn node_back(&self, node: &str) {
        let mut core = self.core();
        let expected = &mut core.expected;
        if let Some((_, nodes)) = expected.as_mut() {
            nodes.remove(node);
        }
    }

    /// After a restart, scheduling waits until the nodes that may hold
    /// attempts of the earlier server are back (or `NODE_LOST_AFTER` has
    /// passed): an attempt whose assignment did not commit shows its task as
    /// `active`, and placing that task before its node reports the attempt
    /// would run it twice. Waited for: the local nodes and every node the
    /// database assigns tasks to.
    pub async fn expect_nodes(&self) -> Result<(), Error> {
        let mut nodes: std::collections::HashSet<String> =
            self.store.assigned_tasks().await?.into_iter().map(|(_, _, node, _)| node).collect();
        nodes.extend(self.providers.expected());
        let joined: Vec<String> = self.core().nodes.keys().cloned().collect();
        for id in joined {
            nodes.remove(&id);
        }
        if !nodes.is_empty() {
            tracing::info!(nodes = nodes.len(), "waiting for the nodes of the last run before scheduling");
            self.core().expected = Some((Instant::now() + NODE_LOST_AFTER, nodes));
        }
        Ok(())
    }

    /// Holds scheduling until `until`: a replica that has just taken over
    /// from a dead leader lets the agents rejoin and report what they run
    /// first, also those whose attempts' assignments never committed (their
    /// tasks read `active`), so that no task is placed twice.
    pub fn hold_scheduling(&self, until: Instant) {
        self.core().hold = Some(until);
    }

    /// Whether scheduling still waits for nodes of the last run.
    pub(crate) fn awaiting_nodes(&self, now: Instant) -> bool {
        let mut core = self.core();
        match core.hold {
            Some(t) if now < t => return true,
            Some(_) => core.hold = None,
            None => {}
        }
        let expected = &mut core.expected;
        match expected.as_ref() {
            Some((deadline, nodes)) if !nodes.is_empty() && now < *deadline => true,
            Some(_) => {
                *expected = None;
                false
            }
            None => false,
        }
    }

    /// After a server restart: tasks the database assigns to nodes that have
    /// not come back within the grace period lost their attempts; requeue them.
    pub async fn requeue_orphans(&self) -> Result<(), Error> {
        for (job, task, node, attempt) in self.store.assigned_tasks().await? {
            let known = self.core().nodes.get(&node).is_some_and(|n| n.tx.is_some() && n.running.contains_key(&attempt));
            if !known {
                tracing::warn!(node = %node, job = %job, task = %task, "requeueing a task whose node did not come back");
                self.requeue_attempt(&job, &task, attempt).await;
            }
        }
        Ok(())
    }

    /// Marks nodes silent for too long as `unknown` and requeues their tasks.
    pub async fn check_liveness(&self, now: Instant) {
        let lost: Vec<(String, Vec<(u64, Slot)>)> = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            nodes
                .values_mut()
                .filter(|n| {
                    now.saturating_duration_since(n.last_seen) > NODE_LOST_AFTER
                        && !matches!(n.state, ComputeNodeState::Unknown | ComputeNodeState::LeavingPool | ComputeNodeState::Unusable)
                        && !n.pending()
                })
                .map(|n| {
                    n.set_state(ComputeNodeState::Unknown);
                    n.tx = None;
                    let queued = n.queued.drain(..);
                    (n.id.clone(), n.running.drain().chain(queued).collect())
                })
                .collect()
        };
        for (node, attempts) in lost {
            tracing::warn!(node = %node, "node lost contact; requeueing its tasks");
            for (a, s) in attempts {
                self.requeue_attempt(&s.job_id, &s.task_id, a).await;
            }
        }
    }

    /// Deletes the directories of completed tasks whose `retentionTime` has
    /// passed; their file operations then answer `TaskFilesCleanedup`.
    pub async fn clean_expired(&self) -> Result<(), Error> {
        let now = Timestamp::now();
        for (job, task) in self.store.due_cleanups(now, 200).await? {
            // Mark first, so no request reads a half-deleted directory.
            let marked = self
                .store
                .update_task(&job, &task, Default::default(), move |_, t, _| {
                    if t.cleanup_at.is_none_or(|c| c > now) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    t.cleanup_at = None;
                    t.files_cleaned = true;
                    Ok(())
                })
                .await;
            let Ok(stored) = marked else { continue };
            let Ok(t) = serde_json::from_str::<CloudTask>(&stored.doc) else { continue };
            if let Some(info) = &t.node_info {
                if let (Some(node), Some(dir)) = (&info.node_id, &info.task_root_directory) {
                    if t.node.is_none() && self.core().nodes.get(node).is_some_and(|n| n.tx.is_some()) {
                        let _ = self.file(node, dir.clone(), String::new(), FileOp::Delete { recursive: true }).await;
                    }
                }
            }
        }
        Ok(())
    }
}
