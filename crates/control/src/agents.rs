//! Agent reports: a node joins, reports attempts preparing, started and
//! finished, answers file requests, and disconnects.

use crate::cluster::Cluster;
use crate::config::{HEARTBEAT, STARTED_DEBOUNCE};
use crate::execution;
use crate::launch::node_info;
use crate::pool::{PoolSpec, StartTaskSpec};
use crate::provider::local::new_node_id;
use crate::scheduler::attempts::assign;
use crate::scheduler::placement;
use crate::state::multi::Started;
use crate::state::node::{Node, Slot};
use crate::state::sched::AssignFn;
use crate::sync::lock;
use proto::{FileReply, Hello, TaskOutcome, ToAgent, ToServer};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wire::enums::ComputeNodeState;
use wire::enums::TaskState;
use wire::models::{CloudJob, CloudTask};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

impl Cluster {
    /// Registers an agent that said hello; returns its node id and the
    /// attempts it runs that the server no longer assigns to it.
    pub async fn join(
        &self,
        hello: &Hello,
        pool: &PoolSpec,
        tx: mpsc::UnboundedSender<ToAgent>,
        account_url: &str,
    ) -> Result<String, Error> {
        // Attempt ids first: what this agent reports is judged against them.
        let mut ready = self.initialized.subscribe();
        if tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|v| *v)).await.is_err() {
            return Err(Error::new(ErrorCode::ServerBusy));
        }
        let slots = pool.task_slots_per_node;
        let pool_id = if pool.id.is_empty() { hello.pool_id.clone() } else { pool.id.clone() };
        let id = hello.node_id.clone().unwrap_or_else(new_node_id);
        // What the database says runs on this node.
        let assigned = self.store.tasks_on_node(&id).await?;
        let finished: std::collections::HashSet<u64> = hello.finished.iter().map(|f| f.outcome.attempt).collect();
        let slots_of = |attempt: u64| {
            let held = hello.held.iter().find(|h| h.attempt == attempt).map(|h| &h.task);
            let done = hello.finished.iter().find(|f| f.outcome.attempt == attempt).and_then(|f| f.task.as_ref());
            held.or(done).map(|t| t.slots.max(1))
        };
        if hello.leftovers > 0 {
            tracing::warn!(node = %id, processes = hello.leftovers, "the node's agent killed task processes an earlier agent left running");
        }
        let now = Timestamp::now();
        let mut stale = Vec::new();
        let mut needs_start: Option<StartTaskSpec> = None;
        let previous: Vec<(u64, Slot)>;
        let mut kept: Vec<(u64, bool)> = Vec::new();
        // Only a provider's node can be low-priority (one that joined from
        // elsewhere is the operator's own machine: dedicated).
        let provided = self.providers.nodes().iter().any(|n| n.id == id);
        {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let dedicated = !provided || !joins_as_low_priority(nodes.values(), &id, &pool_id, pool);
            let node = nodes.entry(id.clone()).or_insert_with(|| Node {
                id: id.clone(),
                pool_id: pool_id.clone(),
                state: ComputeNodeState::Idle,
                scheduling_enabled: true,
                slots,
                running: HashMap::new(),
                queued: Vec::new(),
                tx: None,
                ip: hello.ip_address.clone(),
                ssh_port: hello.ssh_port.unwrap_or(22),
                root_dir: hello.root_dir.clone(),
                agent_version: hello.agent_version.clone(),
                state_transition_time: now,
                allocation_time: now,
                last_boot_time: now,
                last_seen: Instant::now(),
                total_run: 0,
                total_succeeded: 0,
                recent: VecDeque::new(),
                is_dedicated: dedicated,
                recover_at: None,
                boot_id: String::new(),
                fill: placement::Fill::Spread,
                jobs_by_creation: false,
                start_attempt: None,
                start_retries: 0,
                start_task_info: None,
                drain: None,
                leave_after_retention: false,
                retained_until: None,
                preps: HashMap::new(),
                pool_packages: Vec::new(),
                usage: None,
                load: Default::default(),
                cores: 1,
                usage_recorded: now.0,
                certificates: Vec::new(),
            });
            node.certificates = pool.certificates.iter().map(|c| c.thumbprint.clone()).collect();
            if node.pending() {
                // A provider's node listed before it joined: its core-time
                // counts from now, and its kind is decided now.
                node.usage_recorded = chrono::Utc::now();
                node.is_dedicated = dedicated;
            }
            // Rebooted or reimaged by its provider (a container restarted
            // or recreated): job preparation runs again, as after the agent's reset.
            if matches!(node.state, ComputeNodeState::Rebooting | ComputeNodeState::Reimaging) && node.boot_id != hello.boot_id {
                node.preps.clear();
            }
            node.agent_version = hello.agent_version.clone();
            node.cores = hello.cores.unwrap_or(1).max(1);
            node.pool_packages = pool.application_packages.clone();
            node.fill = if pool.pack { placement::Fill::Pack } else { placement::Fill::Spread };
            node.jobs_by_creation = pool.jobs_by_creation;
            let booted = node.boot_id != hello.boot_id;
            node.boot_id = hello.boot_id.clone();
            node.tx = Some(tx);
            node.last_seen = Instant::now();
            node.ip = hello.ip_address.clone();
            node.ssh_port = hello.ssh_port.unwrap_or(22);
            node.root_dir = hello.root_dir.clone();
            node.slots = slots;
            // Attempts known only in memory (queued, or started but not yet
            // written) are settled below: the database decides what runs here.
            // A queued attempt the agent started or finished (its reports
            // were lost with the connection) stays, as running: its
            // assignment is written now (`kept`), or with its outcome.
            let queued: Vec<(u64, Slot)> = node.queued.drain(..).collect();
            for (a, slot) in queued {
                if hello.running.contains(&a) || finished.contains(&a) {
                    kept.push((a, hello.running.contains(&a)));
                    node.running.insert(a, slot);
                } else {
                    node.running.insert(a, slot); // drained with the others below
                }
            }
            let kept_ids: Vec<u64> = kept.iter().map(|(a, _)| *a).collect();
            previous = node.running.iter().filter(|(a, _)| !kept_ids.contains(a)).map(|(a, s)| (*a, s.clone())).collect();
            node.running.retain(|a, _| kept_ids.contains(a));
            // Running here, or ended with an outcome the agent still holds
            // (applied by `serve_agent` once the node has joined).
            for (job, task, attempt) in &assigned {
                if hello.running.contains(attempt) || finished.contains(attempt) {
                    let slots = slots_of(*attempt).unwrap_or(1);
                    node.running.insert(*attempt, Slot { job_id: job.clone(), task_id: task.clone(), slots });
                }
            }
            // The node's start task and job preparation or release runs
            // are not in the database either: they run on.
            let own =
                |a: u64| node.start_attempt == Some(a) || node.preps.values().any(|p| p.attempt == Some(a) || p.release_attempt == Some(a));
            for a in &hello.running {
                if !assigned.iter().any(|(_, _, x)| x == a) && !kept.iter().any(|(k, _)| k == a) && !own(*a) {
                    stale.push(*a);
                }
            }
            if matches!(
                node.state,
                ComputeNodeState::Offline
                    | ComputeNodeState::Unknown
                    | ComputeNodeState::Rebooting
                    | ComputeNodeState::Reimaging
                    | ComputeNodeState::Creating
                    | ComputeNodeState::Starting
            ) {
                // Back after a lost connection, not a reboot: what its start
                // task decided still holds (a new boot runs it again, below).
                let lost = matches!(node.state, ComputeNodeState::Offline | ComputeNodeState::Unknown);
                let held = if lost && !booted { crate::starttask::start_task_hold(node, pool) } else { None };
                node.set_state(held.unwrap_or(ComputeNodeState::Idle));
            }
            node.refresh_busy_state();
            if booted {
                node.last_boot_time = now;
                node.start_attempt = None;
                node.start_task_info = None;
                node.start_retries = 0;
                needs_start = pool.start_task.clone();
                // Preparation runs the earlier agent did not finish are gone
                // with it: they run again before the job's next task here.
                node.preps.retain(|_, p| p.attempt.is_none());
            }
        }
        for (a, slot) in previous {
            if self.abandon(a) {
                continue;
            }
            // An instance of a multi-instance run (not in the database): the
            // run cannot go on without it, so the task's attempt is lost —
            // the other instances are stopped and the task requeued, as
            // for a lost node (an instance the agent still runs is killed).
            if self.task_attempt(a) != a {
                self.requeue_attempt(&slot.job_id, &slot.task_id, a).await;
            }
        }
        if let Some(spec) = needs_start {
            self.run_start_task(&id, &pool_id, &spec);
        }
        // Attempts of an earlier server whose assignment never committed
        // (it was killed first): adopted when their task still waits, so
        // the task does not run again; any other unknown attempt is killed.
        for (a, running) in kept {
            let slot = self.core().nodes.get(&id).and_then(|n| n.running.get(&a).cloned());
            if let (true, Some(slot)) = (running, slot) {
                // Assigned and running, in one change.
                let _ = self
                    .write_attempt(
                        &slot.job_id,
                        &slot.task_id,
                        a,
                        store::Durability::Relaxed,
                        Some(Box::new(move |_, t, now| {
                            if t.attempt == Some(a) && t.state == TaskState::Preparing {
                                execution::transition(t, TaskState::Running, now);
                                t.execution_info.start_time = Some(now);
                            }
                            Ok(())
                        })),
                    )
                    .await;
            }
        }
        let unknown_outcomes = hello.finished.iter().filter(|f| {
            !assigned.iter().any(|(_, _, x)| *x == f.outcome.attempt)
                && !self.core().nodes.get(&id).is_some_and(|n| n.running.contains_key(&f.outcome.attempt))
        });
        for f in unknown_outcomes {
            if let Some(task) = &f.task {
                self.adopt(&id, &pool_id, account_url, f.outcome.attempt, task, false).await;
            }
        }
        for a in stale {
            let held = hello.held.iter().find(|h| h.attempt == a);
            let adopted = match held {
                Some(h) => self.adopt(&id, &pool_id, account_url, a, &h.task, true).await,
                None => false,
            };
            if !adopted {
                self.kill(&id, a);
            }
        }
        // Attempts the database assigns here that the agent no longer runs were lost.
        for (job, task, attempt) in assigned {
            if !hello.running.contains(&attempt) && !finished.contains(&attempt) {
                tracing::info!(node = %id, job = %job, task = %task, attempt, "the node's agent neither runs this attempt nor holds its outcome: requeued");
                self.requeue_attempt(&job, &task, attempt).await;
            }
        }
        self.node_back(&id);
        self.wake.notify_one();
        self.reconcile.notify_one();
        Ok(id)
    }

    /// Adopts an attempt that an earlier server started (its assignment was
    /// lost with that server) when its task is still `active` and unclaimed:
    /// the assignment is written now, and the attempt runs on (`running`) or
    /// its outcome, which follows, completes the task. Only attempts issued
    /// before this server started qualify (`first_attempt`): any other
    /// attempt this server does not know is stale.
    pub(crate) async fn adopt(
        &self,
        node: &str,
        pool: &str,
        account_url: &str,
        attempt: u64,
        of: &proto::AttemptOf,
        running: bool,
    ) -> bool {
        if attempt >= self.first_attempt.load(Ordering::Relaxed) {
            return false;
        }
        let key = (store::key_of(&of.job_id), store::key_of(&of.task_id));
        if !self.core().sched.inflight.insert(key.clone()) {
            return false;
        }
        let assign_it = assign(attempt, node.to_string(), node_info(account_url, pool, node, &of.job_id, &of.task_id));
        let change: AssignFn = Box::new(move |j: &CloudJob, t: &mut CloudTask, now: Timestamp| {
            assign_it(j, t, now)?;
            if running {
                execution::transition(t, TaskState::Running, now);
                t.execution_info.start_time = Some(now);
            }
            Ok(())
        });
        let done = self.store.update_tasks(vec![(of.job_id.clone(), of.task_id.clone(), change)], store::Durability::Prompt);
        let adopted = matches!(done.await, Ok(r) if r.first().is_some_and(|x| x.is_ok()));
        if adopted {
            tracing::info!(node = %node, job = %of.job_id, task = %of.task_id, attempt, "adopted an attempt an earlier server started");
            if let Some(n) = self.core().nodes.get_mut(node) {
                n.running.insert(attempt, Slot { job_id: of.job_id.clone(), task_id: of.task_id.clone(), slots: of.slots.max(1) });
                n.refresh_busy_state();
            }
        }
        self.leave_inflight(&key);
        // The task left the ready set: read-aheads taken before are stale.
        self.store.bump_tasks();
        adopted
    }

    /// The agent's connection ended.
    /// The agent's connection `tx` ended (a newer connection of the same
    /// node is left alone). The agent forgets the attempts waiting in its
    /// queue, so their tasks are scheduled again.
    pub fn disconnected(&self, node_id: &str, tx: &mpsc::UnboundedSender<ToAgent>) {
        {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let Some(n) = nodes.get_mut(node_id) else { return };
            if !n.tx.as_ref().is_some_and(|t| t.same_channel(tx)) {
                return;
            }
            n.tx = None;
            if !matches!(
                n.state,
                ComputeNodeState::LeavingPool
                    | ComputeNodeState::Rebooting
                    | ComputeNodeState::Reimaging
                    | ComputeNodeState::Deallocated
                    | ComputeNodeState::Preempted
            ) {
                n.set_state(ComputeNodeState::Offline);
            }
        }
        // Attempts queued there stay: the agent may have started (or even
        // finished) them with reports the connection lost. It tells when it
        // rejoins (see `join`); a node that does not is lost, and they are
        // taken back then (`check_liveness`).
    }

    /// Whether the connection `tx` of a node was superseded: the node was
    /// declared lost meanwhile (`unknown`, see `check_liveness`), or has a
    /// newer connection. (A node that left the pool has no entry.)
    pub fn superseded(&self, node_id: &str, tx: &mpsc::UnboundedSender<ToAgent>) -> bool {
        self.core().nodes.get(node_id).is_some_and(|n| match &n.tx {
            Some(t) => !t.same_channel(tx),
            None => n.state == ComputeNodeState::Unknown,
        })
    }

    pub fn heartbeat(&self, node_id: &str) {
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            n.last_seen = Instant::now();
        }
    }

    /// The answer to a node request (`Cluster::node_request`), taken only
    /// from the node it was sent to.
    pub fn node_reply(&self, node_id: &str, r: proto::NodeReply) {
        let mut core = self.core();
        if core.node_requests.get(&r.id).is_some_and(|(n, _)| n == node_id) {
            if let Some((_, w)) = core.node_requests.remove(&r.id) {
                let _ = w.send(r);
            }
        }
    }

    pub fn file_reply(&self, r: FileReply) {
        if let Some(w) = self.core().files.remove(&r.id) {
            let _ = w.send(r);
        }
    }

    /// An attempt's process is running. Most trivial attempts end within a
    /// few milliseconds, so the report waits a little (in one queue for all
    /// nodes, see `debounce_started`): if the attempt has ended by then, its
    /// outcome records `running` (at the agent's start time) in the same write.
    pub fn started(&self, node_id: &str, attempt: u64) {
        let _ = self.started_tx.send((tokio::time::Instant::now() + STARTED_DEBOUNCE, node_id.to_string(), attempt));
    }

    /// Writes the `Started` reports whose wait is over, for attempts still
    /// running, until `stop` (see `started`).
    pub async fn write_started_reports(self: Arc<Self>, mut stop: crate::supervisor::Stop) {
        let Some(mut rx) = lock(&self.started_rx).take() else { return };
        // Reports due this close together are handled in one wake-up.
        const SLACK: Duration = Duration::from_millis(3);
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = stop.stopped() => return,
            };
            let Some((due, node, attempt)) = next else { return };
            if due > tokio::time::Instant::now() + SLACK {
                tokio::time::sleep_until(due).await;
            }
            let still = self.core().nodes.get(&node).is_some_and(|n| n.running.contains_key(&attempt));
            if still {
                let me = self.clone();
                tokio::spawn(async move { me.record_started(&node, attempt).await });
            }
        }
    }

    pub(crate) async fn record_started(&self, node_id: &str, attempt: u64) {
        let slot = self.core().nodes.get(node_id).and_then(|n| n.running.get(&attempt).cloned());
        let Some(slot) = slot else { return };
        let attempt = match self.multi_started(attempt) {
            Started::Other => attempt,
            Started::Primary(task_attempt) => task_attempt,
            Started::Subtask => return,
        };
        let _ = self
            .write_attempt(
                &slot.job_id,
                &slot.task_id,
                attempt,
                store::Durability::Relaxed,
                Some(Box::new(move |_, t, now| {
                    if t.attempt != Some(attempt) || t.state != TaskState::Preparing {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    execution::transition(t, TaskState::Running, now);
                    t.execution_info.start_time = Some(now);
                    Ok(())
                })),
            )
            .await;
    }

    /// An attempt ended: record it (unless stale), free the slots, schedule more.
    /// Also whether the outcome is settled (recorded, or stale): the agent
    /// may forget it.
    pub async fn finished(self: &Arc<Self>, node_id: &str, o: TaskOutcome, base_url: String) -> (Option<(String, bool)>, bool) {
        let is_start = self.core().nodes.get(node_id).is_some_and(|n| n.start_attempt == Some(o.attempt));
        if is_start {
            self.start_task_finished(node_id, &o).await;
            return (None, true);
        }
        if self.prep_finished(node_id, &o, &base_url) {
            return (None, true);
        }
        if self.multi_finished(&o, &base_url).await {
            return (None, true);
        }
        // An attempt that ended without starting (e.g. its program is
        // missing) may still be in the node's queue.
        let slot = self.core().nodes.get_mut(node_id).and_then(|n| {
            n.running.remove(&o.attempt).or_else(|| {
                let i = n.queued.iter().position(|(a, _)| *a == o.attempt)?;
                Some(n.queued.remove(i).1)
            })
        });
        self.wake.notify_one();
        let Some(slot) = slot else {
            tracing::info!(node = %node_id, attempt = o.attempt, "dropped the outcome of an attempt the node no longer holds");
            return (None, true);
        };
        let subtasks = self.multi_end(o.attempt);
        self.complete_attempt(node_id, slot, o, base_url, subtasks).await
    }

    /// Applies an attempt's outcome, then acknowledges it to the agent, which
    /// keeps it until then (unless the store failed: the agent sends it again
    /// when it next connects).
    pub fn report_finished(self: &Arc<Self>, node_id: &str, o: TaskOutcome, base: String) {
        let c = self.clone();
        let n = node_id.to_string();
        tokio::spawn(async move {
            let attempt = o.attempt;
            let (changed, settled) = c.finished(&n, o, base).await;
            if let Some((job, _)) = changed {
                c.lifecycle.job_changed(&job);
            }
            if settled {
                c.send(&n, ToAgent::Ack { attempts: vec![attempt] });
            }
        });
    }

    /// One report of a joined node's agent, in the order the agent sent it.
    pub fn on_report(self: &Arc<Self>, node_id: &str, msg: ToServer, base: impl FnOnce() -> String) {
        match msg {
            ToServer::Preparing { attempt } => self.preparing(node_id, attempt),
            ToServer::Started { attempt } => {
                // In order with the frame's other reports: a queued
                // attempt holds its slots before anything else is placed.
                self.promote(node_id, attempt);
                self.started(node_id, attempt);
            }
            ToServer::Finished(o) => self.report_finished(node_id, *o, base()),
            ToServer::FileReply(r) => self.file_reply(r),
            ToServer::NodeReply(r) => self.node_reply(node_id, r),
            ToServer::ResetDone => {
                let me = self.clone();
                let node = node_id.to_string();
                tokio::spawn(async move { me.reset_done(&node).await });
            }
            ToServer::Heartbeat { usage: Some(u) } => self.node_measured(node_id, u),
            ToServer::Heartbeat { usage: None } | ToServer::Hello(_) => {}
        }
    }

    /// The pool a joining agent asks for, as the store has it; None when it
    /// does not exist or is being deleted (the agent is turned away).
    pub async fn pool_to_join(&self, pool_id: &str) -> Option<PoolSpec> {
        let Some(pool) = self.pool_spec(pool_id).await else {
            tracing::warn!(pool = %pool_id, "an agent asked to join a pool that does not exist");
            return None;
        };
        if pool.deleting {
            return None;
        }
        let mut pool = pool;
        // The certificates the pool references go to its nodes only.
        match crate::certificates::for_pool(&self.store, &pool).await {
            Ok(c) => pool.certificates = c,
            Err(e) => {
                tracing::warn!(pool = %pool_id, error = %e, "cannot read the pool's certificates; the agent is turned away");
                return None;
            }
        }
        Some(pool)
    }

    /// The first message a joined node gets: its id, the pool's user accounts
    /// and container settings, its slots, the heartbeat interval and the
    /// certificates the pool references.
    pub fn welcome(&self, node_id: &str, pool: &PoolSpec) -> ToAgent {
        let pool_id = pool.id.clone();
        let users = pool
            .user_accounts
            .iter()
            .map(|u| proto::UserAccount { name: u.name.clone(), admin: u.admin, uid: u.uid, gid: u.gid })
            .collect();
        let container_images = pool.container_images.clone();
        let container_registries = pool
            .container_registries
            .iter()
            .map(|r| proto::RegistryLogin { server: r.server.clone(), username: r.username.clone(), password: r.password.clone() })
            .collect();
        ToAgent::Welcome {
            node_id: node_id.to_string(),
            pool_id,
            heartbeat_ms: HEARTBEAT.as_millis() as u64,
            users,
            container_images,
            container_registries,
            task_slots: self.core().nodes.get(node_id).map(|n| n.slots).unwrap_or(1),
            certificates: pool.certificates.clone(),
        }
    }
}

/// Whether a provider's node joining `pool` now is low-priority: when the
/// pool has as many dedicated nodes as it wants and fewer low-priority ones
/// (dedicated nodes are made up first). Nodes on their way out do not count.
fn joins_as_low_priority<'a>(nodes: impl Iterator<Item = &'a Node>, joining: &str, pool_id: &str, pool: &PoolSpec) -> bool {
    let (mut dedicated, mut low) = (0u32, 0u32);
    // Nodes listed before they joined (the joining one among them) have no kind yet.
    for n in nodes.filter(|n| {
        n.pool_id.eq_ignore_ascii_case(pool_id)
            && n.id != joining
            && !n.pending()
            && n.state != ComputeNodeState::LeavingPool
            && n.drain != Some(crate::state::node::Drain::Leave)
    }) {
        if n.is_dedicated {
            dedicated += 1;
        } else {
            low += 1;
        }
    }
    dedicated >= pool.target_dedicated && low < pool.target_low_priority
}
