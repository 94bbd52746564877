//! The node registry: what the API reads of nodes, and the operations on a
//! node (scheduling state, reboot/reimage, drain, removal, file requests).

use crate::cluster::Cluster;
use crate::state::node::{Drain, Node, Slot};
use proto::{FileOp, FileReply, FileRequest, NodeOp, NodeReply, NodeRequest, ToAgent};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use wire::enums::ComputeNodeState;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

impl Cluster {
    /// `f` of each node of a pool (the API renders them; see `api::render::node`).
    pub fn pool_nodes<R>(&self, pool_id: &str, f: impl FnMut(&Node) -> R) -> Vec<R> {
        self.core().nodes.values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(f).collect()
    }

    /// `f` of one node of a pool, if it is there.
    pub fn node<R>(&self, pool_id: &str, node_id: &str, f: impl FnOnce(&Node) -> R) -> Option<R> {
        self.core().nodes.get(node_id).filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(f)
    }

    /// `steady` when the pool has the nodes its target asks for (local nodes
    /// fill what remote nodes leave; none are starting or leaving), else `resizing`.
    pub fn allocation_state(&self, pool_id: &str, target: usize) -> &'static str {
        let provided = self.providers.nodes();
        let children: std::collections::HashSet<&str> = provided.iter().map(|n| n.id.as_str()).collect();
        let mut core = self.core();
        let nodes = &mut core.nodes;
        let of_pool: Vec<&Node> = nodes.values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).collect();
        let leaving = of_pool.iter().any(|n| n.state == ComputeNodeState::LeavingPool || n.drain == Some(Drain::Leave));
        // Listed, but its agent has not joined yet: still resizing.
        let joining = of_pool.iter().any(|n| n.pending());
        let remote = of_pool.iter().filter(|n| !children.contains(n.id.as_str())).count();
        let local = of_pool.iter().filter(|n| children.contains(n.id.as_str())).count();
        let pending = provided.iter().filter(|n| !nodes.contains_key(&n.id) && n.pool.eq_ignore_ascii_case(pool_id)).count();
        if !leaving && !joining && pending == 0 && local == target.saturating_sub(remote) {
            "steady"
        } else {
            "resizing"
        }
    }

    /// Each node of a pool: its state, and whether it is dedicated (else
    /// low-priority).
    pub fn node_kinds(&self, pool_id: &str) -> Vec<(ComputeNodeState, bool)> {
        self.core().nodes.values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| (n.state, n.is_dedicated)).collect()
    }

    /// How many nodes each pool has in each state (pool ids as the nodes
    /// carry them), for `/metrics`.
    pub fn node_counts(&self) -> Vec<(String, ComputeNodeState, u64)> {
        let mut counts: std::collections::BTreeMap<(String, &'static str), (ComputeNodeState, u64)> = Default::default();
        for n in self.core().nodes.values() {
            counts.entry((n.pool_id.clone(), n.state.as_str())).or_insert((n.state, 0)).1 += 1;
        }
        counts.into_iter().map(|((pool, _), (state, n))| (pool, state, n)).collect()
    }

    /// Asks a node's agent to kill an attempt; the slot frees when the agent reports.
    pub fn kill(&self, node_id: &str, attempt: u64) {
        if self.multi_abort(attempt).is_some() {
            return; // every instance of the multi-instance run was told
        }
        self.send(node_id, ToAgent::Kill { attempt, grace_ms: 3_000 });
    }

    /// Sets a node's scheduling state; errors when it is already there.
    pub fn set_scheduling(&self, pool_id: &str, node_id: &str, enabled: bool) -> Result<Vec<(u64, Slot)>, Error> {
        let mut core = self.core();
        let nodes = &mut core.nodes;
        let n = nodes
            .get_mut(node_id)
            .filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id))
            .ok_or_else(|| Error::new(ErrorCode::NodeNotFound))?;
        n.scheduling_enabled = enabled;
        let running = n.running.iter().map(|(a, s)| (*a, s.clone())).collect();
        drop(core);
        if !enabled {
            self.retract(node_id, |_, _| true, true);
        }
        self.wake.notify_one();
        Ok(running)
    }

    /// The attempts running on a node.
    pub fn running_on(&self, node_id: &str) -> Vec<(u64, Slot)> {
        self.core().nodes.get(node_id).map(|n| n.running.iter().map(|(a, s)| (*a, s.clone())).collect()).unwrap_or_default()
    }

    pub fn node_exists(&self, pool_id: &str, node_id: &str) -> bool {
        self.core().nodes.get(node_id).is_some_and(|n| n.pool_id.eq_ignore_ascii_case(pool_id))
    }

    pub fn set_node_state(&self, node_id: &str, state: ComputeNodeState) {
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            n.set_state(state);
        }
    }

    /// Reboot or reimage: the agent stops every attempt (and wipes task data
    /// for a reimage), then reports `ResetDone` (see `reset_done`). The
    /// node shows `rebooting`/`reimaging` until then (the caller sets it).
    pub fn reset_node(&self, node_id: &str, wipe: bool) {
        // The agent forgets the attempts waiting in its queue.
        self.retract(node_id, |_, _| true, false);
        self.send(node_id, ToAgent::Reset { wipe });
    }

    /// A reboot or reimage asked through the API: a provider that resets
    /// nodes by its own means (`NodeProvider::reset`: a container restarted
    /// or recreated) does it; the node's agent then rejoins with a new boot
    /// id (see `join`), and a provider that fails makes the node
    /// `unusable`. Other nodes: `reset_node`.
    pub fn reboot_node(self: &Arc<Self>, node_id: &str, wipe: bool) {
        let reset = self.providers.owner(node_id).and_then(|e| e.provider.reset(node_id, wipe));
        let Some(reset) = reset else {
            self.reset_node(node_id, wipe);
            return;
        };
        // The agent forgets the attempts waiting in its queue.
        self.retract(node_id, |_, _| true, false);
        let c = self.clone();
        let id = node_id.to_string();
        tokio::spawn(async move {
            match reset.await {
                // The agent has NODE_LOST_AFTER from now to rejoin.
                Ok(()) => c.heartbeat(&id),
                Err(reason) => {
                    tracing::error!(node = %id, %reason, "cannot reboot or reimage a provider's node: unusable");
                    c.node_unusable(&id).await;
                }
            }
        });
    }

    /// The node's agent finished a reset: it is back (`idle`), runs its
    /// pool's start task again, and job preparation runs again before the
    /// next task of a job (rerunOnNodeRebootAfterSuccess, the default).
    pub async fn reset_done(&self, node_id: &str) {
        let c = self;
        let id = node_id.to_string();
        {
            let pool = {
                let mut core = c.core();
                let nodes = &mut core.nodes;
                let reset = nodes.get_mut(&id).filter(|n| {
                    matches!(
                        n.state,
                        ComputeNodeState::Deallocating
                            | ComputeNodeState::Rebooting
                            | ComputeNodeState::Reimaging
                            | ComputeNodeState::Starting
                    )
                });
                if let Some(n) = reset {
                    // The agent stopped every attempt without reporting
                    // them (their tasks were requeued or ended before).
                    n.running.clear();
                    n.queued.clear();
                }
                match nodes.get_mut(&id) {
                    Some(n) if n.state == ComputeNodeState::Deallocating => {
                        // Stopped: it keeps its place in the pool and runs
                        // nothing (not even its start task) until started.
                        n.set_state(ComputeNodeState::Deallocated);
                        None
                    }
                    Some(n)
                        if matches!(n.state, ComputeNodeState::Rebooting | ComputeNodeState::Reimaging | ComputeNodeState::Starting) =>
                    {
                        // Preparation runs again after a reboot
                        // (rerunOnNodeRebootAfterSuccess, the default).
                        n.preps.clear();
                        n.last_boot_time = Timestamp::now();
                        n.start_retries = 0;
                        n.set_state(ComputeNodeState::Idle);
                        n.refresh_busy_state();
                        Some(n.pool_id.clone())
                    }
                    _ => None,
                }
            };
            if let Some(pool) = pool {
                if let Some(spec) = c.pool_spec(&pool).await.and_then(|p| p.start_task) {
                    c.run_start_task(&id, &pool, &spec);
                }
            }
            c.wake.notify_one();
        }
    }

    /// The node root directory of a node.
    pub fn node_root(&self, pool_id: &str, node_id: &str) -> Option<String> {
        self.core().nodes.get(node_id).filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| n.root_dir.clone())
    }

    /// Sends a file request to the node and waits for the reply.
    pub async fn file(&self, node_id: &str, base: String, path: String, op: FileOp) -> Result<FileReply, Error> {
        let id = self.next_file.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.core().files.insert(id, tx);
        if !self.send(node_id, ToAgent::File(FileRequest { id, base, path, op })) {
            self.core().files.remove(&id);
            return Err(Error::msg(ErrorCode::TaskFilesUnavailable, "The compute node that holds these files is not reachable."));
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.core().files.remove(&id);
                Err(Error::new(ErrorCode::OperationTimedOut))
            }
        }
    }

    /// Sends an operation to a node's agent (its user accounts, its logs)
    /// and waits up to `timeout` for the reply.
    pub async fn node_request(&self, node_id: &str, op: NodeOp, timeout: Duration) -> Result<NodeReply, Error> {
        let id = self.next_file.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.core().node_requests.insert(id, (node_id.to_string(), tx));
        if !self.send(node_id, ToAgent::Node(NodeRequest { id, op })) {
            self.core().node_requests.remove(&id);
            return Err(Error::msg(ErrorCode::OperationNotValidOnNode, "The compute node's agent is not connected."));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.core().node_requests.remove(&id);
                Err(Error::new(ErrorCode::OperationTimedOut))
            }
        }
    }

    /// Lets a node finish its running tasks, then restart or leave.
    pub async fn drain(self: &Arc<Self>, node_id: &str, what: Drain) {
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            n.drain = Some(what);
        }
        self.retract(node_id, |_, _| true, true);
        self.drain_if_done(node_id).await;
    }

    /// Lets a node that leaves its pool finish its running tasks; with
    /// `after_retention` (`retaineddata`) it also waits until the files of
    /// every task that ran on it are past their `retentionTime`.
    pub async fn drain_leaving(self: &Arc<Self>, node_id: &str, after_retention: bool) {
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            n.leave_after_retention = after_retention;
        }
        self.drain(node_id, Drain::Leave).await;
    }

    /// Nodes leaving with `retaineddata` whose tasks' retention has ended
    /// by `now` leave (the liveness loop calls this).
    pub async fn leave_after_retention(self: &Arc<Self>, now: Timestamp) {
        let due: Vec<String> = self
            .core()
            .nodes
            .values()
            .filter(|n| n.drain == Some(Drain::Leave) && n.leave_after_retention && n.running.is_empty())
            .filter(|n| n.retained_until.is_none_or(|r| r <= now))
            .map(|n| n.id.clone())
            .collect();
        for id in due {
            if let Some(n) = self.core().nodes.get_mut(&id) {
                n.leave_after_retention = false;
            }
            self.drain_if_done(&id).await;
        }
    }

    pub(crate) async fn drain_if_done(self: &Arc<Self>, node_id: &str) {
        let now = Timestamp::now();
        let what = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            match nodes.get_mut(node_id) {
                // Task data still retained: it leaves later (`leave_after_retention`).
                Some(n) if n.drain == Some(Drain::Leave) && n.leave_after_retention && n.retained_until.is_some_and(|r| r > now) => None,
                Some(n) if n.running.is_empty() => n.drain.take(),
                _ => None,
            }
        };
        match what {
            Some(Drain::Restart { wipe }) => {
                self.set_node_state(node_id, if wipe { ComputeNodeState::Reimaging } else { ComputeNodeState::Rebooting });
                self.reboot_node(node_id, wipe);
            }
            Some(Drain::Leave) => self.remove_node(node_id, true).await,
            Some(Drain::Deallocate) => self.stop_node(node_id),
            None => {}
        }
    }

    /// Deallocates (stops) an idle or running node, as `nodeDeallocateOption`
    /// says. With `drain` (`taskcompletion`, `retaineddata`) its running
    /// tasks finish while it takes no new ones; otherwise (`requeue`,
    /// `terminate`) it shows `deallocating` at once, and the caller ends its
    /// running tasks and then calls [`Cluster::stop_node`]. Its agent stops
    /// every attempt, and the node is `deallocated`: it stays in its pool
    /// (and counts towards its target) and runs nothing until
    /// [`Cluster::start_node`].
    pub async fn deallocate_node(self: &Arc<Self>, pool_id: &str, node_id: &str, drain: bool) -> Result<(), Error> {
        self.check_node_state(pool_id, node_id, "deallocated", |s| matches!(s, ComputeNodeState::Idle | ComputeNodeState::Running))?;
        if drain {
            self.drain(node_id, Drain::Deallocate).await;
        } else {
            // Before its tasks are requeued, so that none comes back to it.
            self.set_node_state(node_id, ComputeNodeState::Deallocating);
        }
        Ok(())
    }

    /// The agent of a `deallocating` node stops every attempt.
    pub fn stop_node(&self, node_id: &str) {
        self.set_node_state(node_id, ComputeNodeState::Deallocating);
        self.reset_node(node_id, false);
    }

    /// Starts a deallocated node: `starting` while its agent restarts, then
    /// `idle`, with its pool's start task run again as after a reboot.
    pub fn start_node(&self, pool_id: &str, node_id: &str) -> Result<(), Error> {
        self.check_node_state(pool_id, node_id, "started", |s| s == ComputeNodeState::Deallocated)?;
        self.set_node_state(node_id, ComputeNodeState::Starting);
        self.reset_node(node_id, false);
        Ok(())
    }

    /// 404 `NodeNotFound` when the pool has no such node; 409
    /// `OperationInvalidForCurrentState` naming the state when `ok` refuses it.
    pub fn check_node_state(
        &self,
        pool_id: &str,
        node_id: &str,
        verb: &str,
        ok: impl FnOnce(ComputeNodeState) -> bool,
    ) -> Result<(), Error> {
        let state = self.node(pool_id, node_id, |n| n.state).ok_or_else(|| Error::new(ErrorCode::NodeNotFound).with("NodeId", node_id))?;
        if ok(state) {
            return Ok(());
        }
        Err(Error::new(ErrorCode::OperationInvalidForCurrentState)
            .with("NodeId", node_id)
            .with("Reason", format!("A node in state '{}' cannot be {verb}.", state.as_str())))
    }

    /// Completes the tasks running on a node as terminated (`TaskEnded`,
    /// as by a user's request) and kills them.
    pub async fn terminate_running_on(&self, node_id: &str) {
        for (attempt, slot) in self.running_on(node_id) {
            let task_attempt = self.task_attempt(attempt);
            let _ = self
                .store
                .update_task(&slot.job_id, &slot.task_id, Default::default(), move |_, t, now| {
                    if t.attempt != Some(task_attempt) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    crate::jobs::complete_with_failure(t, now, "TaskEnded", "Task Was Ended by User Request");
                    t.attempt = None;
                    t.node = None;
                    Ok(())
                })
                .await;
            self.kill(node_id, attempt);
            self.lifecycle.job_changed(&slot.job_id);
        }
    }

    /// Removes a node from its pool: its tasks are requeued (when `requeue`)
    /// and its agent told to shut down.
    pub async fn remove_node(&self, node_id: &str, requeue: bool) {
        let running = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            match nodes.get_mut(node_id) {
                Some(n) => {
                    n.set_state(ComputeNodeState::LeavingPool);
                    n.scheduling_enabled = false;
                    let queued = n.queued.drain(..);
                    n.running.drain().chain(queued).collect::<Vec<_>>()
                }
                None => Vec::new(),
            }
        };
        for (a, s) in running {
            if requeue {
                self.requeue_attempt(&s.job_id, &s.task_id, a).await;
            } else {
                self.abandon(a);
            }
        }
        self.send(node_id, ToAgent::Shutdown);
        {
            let mut core = self.core();
            if let Some(n) = core.nodes.remove(node_id).filter(|n| !n.pending()) {
                // Its core-time since the last record goes in with the next.
                core.departed_usage.push((n.pool_id, n.usage_recorded, chrono::Utc::now(), n.cores));
            }
        }
        tokio::spawn(self.providers.remove(node_id));
        self.wake.notify_one();
    }
}
