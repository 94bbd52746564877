//! The policy over a [`NodeProvider`](super::NodeProvider): how many nodes
//! each pool wants, which go first, what happens to their tasks.

use super::registry::Backoff;
use super::{NodePhase, PoolTarget, ProvidedNode, ProviderEvent};
use crate::cluster::Cluster;
use crate::state::node::{Drain, Node, Slot};
use crate::sync::lock;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::enums::ComputeNodeState;
use wire::Error;

/// The first wait before a pool asks a provider that failed again; it
/// doubles with each failure, up to `RETRY_MAX`.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// A resize error as the pool's `resizeErrors` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeError {
    pub code: &'static str,
    pub message: String,
}

/// What went wrong, in words: an internal error's reason, else its message.
fn reason(e: &Error) -> String {
    e.values.iter().find(|(k, _)| k == "Reason").map_or_else(|| e.message.clone(), |(_, v)| v.clone())
}

fn vm_size_of(p: &Map<String, Value>) -> &str {
    p.get("vmSize").and_then(Value::as_str).unwrap_or_default()
}

/// A pool summary's wanted node count (0 while deleting).
pub(crate) fn target_of(p: &Map<String, Value>) -> usize {
    let (d, l) = targets_of(p);
    d + l
}

/// A pool summary's wanted dedicated and low-priority node counts (0 while
/// deleting).
pub(crate) fn targets_of(p: &Map<String, Value>) -> (usize, usize) {
    if p.get("state").and_then(Value::as_str) == Some("deleting") {
        return (0, 0);
    }
    let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    (n("targetDedicatedNodes"), n("targetLowPriorityNodes"))
}

/// Of a pool's nodes of one kind, which go first when there are too many:
/// dead ones, preempted ones, then idle ones, then the least busy.
fn removal_order(nodes: &mut [Held]) {
    nodes.sort_by_key(|h| (!h.dead, !h.preempted, !h.idle, h.used, h.id.clone()));
}

/// A provider's node of a pool as the reconciliation weighs it.
#[derive(Clone)]
struct Held {
    id: String,
    dedicated: bool,
    dead: bool,
    preempted: bool,
    idle: bool,
    used: u32,
}

impl Cluster {
    /// After a restart, the provider finds the nodes of the last run.
    pub async fn recover_nodes(&self) -> Result<(), Error> {
        let targets: Vec<(PoolTarget, String)> = self
            .store
            .pool_summaries()
            .await?
            .iter()
            .map(|p| {
                let pool = p.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                (PoolTarget { pool, nodes: target_of(p) }, vm_size_of(p).to_string())
            })
            .collect();
        self.providers.recover(&targets).await
    }

    /// A provider's node died and cannot come back: it is `unusable`, and
    /// its attempts are requeued. It stays listed (as on Azure) until it is
    /// removed or its pool is deleted; it counts toward the pool's target.
    pub async fn node_unusable(&self, node_id: &str) {
        let attempts: Vec<(u64, Slot)> = {
            let mut core = self.core();
            let Some(n) = core.nodes.get_mut(node_id) else { return };
            n.set_state(ComputeNodeState::Unusable);
            n.scheduling_enabled = false;
            n.tx = None;
            let queued = n.queued.drain(..);
            n.running.drain().chain(queued).collect()
        };
        for (a, s) in attempts {
            self.requeue_attempt(&s.job_id, &s.task_id, a).await;
        }
        self.wake.notify_one();
    }

    /// Lists the providers' nodes that have not joined yet as nodes of
    /// their pools — `creating` while the provider makes them (a container
    /// being created, a Slurm job waiting in the queue), `starting` once
    /// they run and their agent has not joined — under the ids their agents
    /// join with, so that a node goes creating → starting → idle. Those the
    /// provider no longer runs (it could not start them) go. Run at the
    /// start and the end of each reconciliation pass.
    pub(crate) async fn sync_pending(&self) {
        let provided = self.providers.nodes();
        let by_id: HashMap<&str, &ProvidedNode> = provided.iter().map(|n| (n.id.as_str(), n)).collect();
        let new: Vec<&ProvidedNode> = {
            let mut core = self.core();
            core.nodes.retain(|id, n| !n.pending() || by_id.contains_key(id.as_str()));
            for n in core.nodes.values_mut().filter(|n| n.pending()) {
                if let Some(p) = by_id.get(n.id.as_str()) {
                    n.set_state(phase_state(p.phase));
                }
            }
            provided.iter().filter(|p| !core.nodes.contains_key(&p.id)).collect()
        };
        let mut specs: HashMap<&str, Option<crate::pool::PoolSpec>> = HashMap::new();
        for p in &new {
            if !specs.contains_key(p.pool.as_str()) {
                specs.insert(p.pool.as_str(), self.pool_spec(&p.pool).await);
            }
        }
        let still: HashSet<String> = self.providers.nodes().into_iter().map(|n| n.id).collect();
        let mut core = self.core();
        for p in new {
            // Still the provider's (and, below, not joined meanwhile).
            if !still.contains(&p.id) {
                continue;
            }
            let spec = specs.get(p.pool.as_str()).and_then(Option::as_ref);
            core.nodes.entry(p.id.clone()).or_insert_with(|| Node::placeholder(&p.id, &p.pool, phase_state(p.phase), spec));
        }
    }

    /// Records (or, with None, clears) a pool's resize error in its
    /// document, only when it changes.
    async fn set_resize_error(&self, pool: &str, error: Option<ResizeError>) {
        let wanted = error.map(|e| json!([{"code": e.code, "message": e.message}]));
        let current = match self.store.get_pool(pool).await {
            Ok(stored) => serde_json::from_str::<Map<String, Value>>(&stored.doc).ok().and_then(|mut d| d.remove("resizeErrors")),
            Err(_) => return,
        };
        if current == wanted {
            return;
        }
        let r = self
            .store
            .update_pool(pool, Default::default(), move |doc, _| {
                match wanted {
                    Some(v) => doc.insert("resizeErrors".into(), v),
                    None => doc.remove("resizeErrors"),
                };
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(pool = %pool, error = %e, "cannot record the pool's resize error");
        }
    }

    /// Asks the pool's provider for `count` more nodes, within its
    /// `max-nodes`, unless a failure's back-off still runs. A failure (or
    /// the cap) shows in the pool's `resizeErrors`; success clears them.
    async fn grow(&self, pool: &Map<String, Value>, count: usize, now: Instant) {
        let id = pool.get("id").and_then(Value::as_str).unwrap_or_default();
        if lock(&self.resize_backoff).get(id).is_some_and(|b| now < b.next) {
            return;
        }
        let entry = self.providers.for_size(vm_size_of(pool));
        let room = entry.max_nodes.map_or(count, |max| max.saturating_sub(entry.provider.nodes().len()).min(count));
        let mut error = None;
        if room > 0 {
            if let Err(e) = entry.provider.add(id, room) {
                error = Some(ResizeError {
                    code: "AllocationFailed",
                    message: format!("The {} provider '{}' could not start nodes: {}", entry.kind, entry.name, reason(&e)),
                });
            }
        }
        if error.is_none() && room < count {
            error = Some(ResizeError {
                code: "AccountCoreQuotaReached",
                message: format!(
                    "The provider '{}' runs at most {} nodes (max-nodes); {} more could not be allocated.",
                    entry.name,
                    entry.max_nodes.unwrap_or_default(),
                    count - room
                ),
            });
        }
        // Success clears nothing yet: an asynchronous failure comes back
        // as `AddFailed`; the error and the back-off go once the nodes
        // joined (see `reconcile_pools_at`).
        if let Some(e) = error {
            self.resize_failed(id, &entry.name, e, now).await;
        }
    }

    /// A pool could not grow: its `resizeErrors` say why, and it waits
    /// (doubling, up to `RETRY_MAX`) before it asks again.
    async fn resize_failed(&self, pool: &str, provider: &str, e: ResizeError, now: Instant) {
        let delay = {
            let mut backoff = lock(&self.resize_backoff);
            let delay = backoff.get(pool).map_or(RETRY_FIRST, |b| (b.delay * 2).min(RETRY_MAX));
            backoff.insert(pool.to_string(), Backoff { next: now + delay, delay });
            delay
        };
        tracing::warn!(%pool, %provider, code = e.code, message = %e.message, retry_in = ?delay, "cannot grow the pool");
        self.set_resize_error(pool, Some(e)).await;
    }

    /// Brings each pool to its targets: provider nodes are added or removed
    /// (idle ones first) so that, with the nodes that joined from elsewhere,
    /// the pool has the dedicated and low-priority nodes it asks for (a
    /// node's kind is decided when it joins; each kind is shrunk to its
    /// own target, preempted nodes first). Nodes beyond a target leave as
    /// the pool's latest resize or autoscale evaluation said
    /// (`nodeDeallocationOption`): `requeue` (the default) stops and
    /// requeues their tasks, `terminate` ends them, `taskcompletion` and
    /// `retaineddata` let them finish first (the node takes no new ones).
    /// A deleted pool loses all its nodes, and goes once they are gone.
    pub async fn reconcile_pools(self: &Arc<Self>) -> Result<(), Error> {
        self.reconcile_pools_at(Instant::now()).await
    }

    /// `reconcile_pools` at the time `now` (the provider back-off and the
    /// recovery of preempted nodes read it).
    pub async fn reconcile_pools_at(self: &Arc<Self>, now: Instant) -> Result<(), Error> {
        // Preempted nodes whose delay has passed come back first.
        self.recover_due(now);
        let r = self.reconcile_pass(now).await;
        self.sync_pending().await;
        r
    }

    async fn reconcile_pass(self: &Arc<Self>, now: Instant) -> Result<(), Error> {
        let events = self.providers.check(&|id| self.core().nodes.get(id).is_some_and(|n| n.state == ComputeNodeState::LeavingPool));
        for (provider, e) in events {
            match e {
                ProviderEvent::Restarted { node } => {
                    tracing::warn!(node = %node, %provider, "a node's agent exited; restarted it")
                }
                ProviderEvent::Lost { node, reason } => {
                    tracing::error!(node = %node, %provider, %reason, "a node died and cannot come back: unusable");
                    self.node_unusable(&node).await;
                }
                ProviderEvent::AddFailed { pool, reason } => {
                    let kind = self.providers.entries().iter().find(|e| e.name == provider).map_or("", |e| e.kind.as_str());
                    let error = ResizeError {
                        code: "AllocationFailed",
                        message: format!("The {kind} provider '{provider}' could not start nodes: {reason}"),
                    };
                    self.resize_failed(&pool, &provider, error, now).await;
                }
            }
        }
        self.sync_pending().await;
        let pools = self.store.pool_summaries().await?;
        let mut wanted: HashMap<String, (usize, usize)> = HashMap::new();
        let mut options: HashMap<String, String> = HashMap::new();
        for p in &pools {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(o) = p.get(crate::autoscale::DEALLOCATION_MEMBER).and_then(Value::as_str) {
                options.insert(id.clone(), o.to_ascii_lowercase());
            }
            wanted.insert(id, targets_of(p));
        }
        // Nodes of pools that no longer exist go too.
        let pools_of_nodes: Vec<String> = self.core().nodes.values().map(|n| n.pool_id.clone()).collect();
        for p in pools_of_nodes {
            wanted.entry(p).or_insert((0, 0));
        }
        for p in &pools {
            if p.get("state").and_then(Value::as_str) == Some("deleting") {
                let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
                let has_nodes = self.core().nodes.values().any(|n| n.pool_id == id);
                if !has_nodes {
                    self.store.remove_pool(id).await?;
                }
            }
        }
        for (pool, (want_dedicated, want_low)) in wanted {
            let provided = self.providers.nodes();
            let owned: HashSet<&str> = provided.iter().map(|n| n.id.as_str()).collect();
            let deleting = pools.iter().any(|p| {
                p.get("id").and_then(Value::as_str) == Some(pool.as_str()) && p.get("state").and_then(Value::as_str) == Some("deleting")
            }) || !pools.iter().any(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str()));
            // Nodes from other machines are the operator's: they count toward
            // the target, and leave only when the pool is deleted.
            let remote: Vec<String> = self
                .core()
                .nodes
                .values()
                .filter(|n| {
                    n.pool_id == pool
                        && !owned.contains(n.id.as_str())
                        && !matches!(n.state, ComputeNodeState::LeavingPool | ComputeNodeState::Unusable)
                })
                .map(|n| n.id.clone())
                .collect();
            // A provider's nodes that died (`node_unusable`): they count
            // toward the target (of their kind) until they go, and go first.
            let dead: Vec<Held> = self
                .core()
                .nodes
                .values()
                .filter(|n| n.pool_id == pool && !owned.contains(n.id.as_str()) && n.state == ComputeNodeState::Unusable)
                .map(|n| Held { id: n.id.clone(), dedicated: n.is_dedicated, dead: true, preempted: false, idle: true, used: 0 })
                .collect();
            if deleting {
                for id in remote.iter().chain(dead.iter().map(|h| &h.id)) {
                    self.remove_node(id, true).await;
                }
            }
            let dead = if deleting { Vec::new() } else { dead };
            // Remote nodes are dedicated: they make up the dedicated target
            // first, and what they exceed it by, the low-priority one.
            let (want_dedicated, want_low) = if deleting {
                (0, 0)
            } else {
                let r = remote.len();
                (want_dedicated.saturating_sub(r), want_low.saturating_sub(r.saturating_sub(want_dedicated)))
            };
            let target = want_dedicated + want_low;
            let mut have: Vec<Held> = self
                .core()
                .nodes
                .values()
                .filter(|n| {
                    n.pool_id == pool
                        && owned.contains(n.id.as_str())
                        && n.state != ComputeNodeState::LeavingPool
                        && n.drain != Some(Drain::Leave)
                        && !n.pending()
                })
                .map(|n| Held {
                    id: n.id.clone(),
                    dedicated: n.is_dedicated,
                    dead: false,
                    preempted: n.state == ComputeNodeState::Preempted,
                    idle: n.running.is_empty(),
                    used: n.used(),
                })
                .collect();
            // Nodes started but not yet joined count as nodes (of the kind
            // their pool lacks when they join, see `Cluster::join`); those
            // listed already (`sync_pending`) can be removed.
            let (pending, listed_pending) = {
                let core = self.core();
                let not_joined: Vec<&str> = provided
                    .iter()
                    .filter(|n| n.pool == pool && core.nodes.get(&n.id).is_none_or(|x| x.pending()))
                    .map(|n| n.id.as_str())
                    .collect();
                let listed: Vec<String> = not_joined.iter().filter(|id| core.nodes.contains_key(**id)).map(|id| id.to_string()).collect();
                (not_joined.len(), listed)
            };
            let count = have.len() + pending + dead.len();
            // The pool has its nodes: a past provider failure is over.
            if have.len() >= target && lock(&self.resize_backoff).remove(&pool).is_some() {
                self.set_resize_error(&pool, None).await;
            }
            // Nodes listed before they joined go first: their container
            // or Slurm job goes, they run nothing.
            let mut removed = 0;
            for id in listed_pending.iter().take(count.saturating_sub(target)) {
                self.remove_node(id, true).await;
                removed += 1;
            }
            // Each kind beyond its own target loses nodes: dead ones first,
            // then preempted and idle ones; the rest leave as the pool's
            // latest resize or autoscale evaluation said.
            let option = if deleting { "requeue" } else { options.get(&pool).map_or("requeue", String::as_str) };
            for (dedicated, want) in [(true, want_dedicated), (false, want_low)] {
                let mut kind: Vec<Held> = dead.iter().chain(have.iter()).filter(|h| h.dedicated == dedicated).cloned().collect();
                let excess = kind.len().saturating_sub(want);
                removal_order(&mut kind);
                for h in kind.into_iter().take(excess) {
                    removed += 1;
                    if h.dead || h.preempted {
                        self.remove_node(&h.id, true).await;
                        continue;
                    }
                    match option {
                        "terminate" => {
                            self.terminate_running_on(&h.id).await;
                            self.remove_node(&h.id, false).await;
                        }
                        "taskcompletion" | "retaineddata" => self.drain_leaving(&h.id, option == "retaineddata").await,
                        _ => self.remove_node(&h.id, true).await,
                    }
                }
            }
            have.clear();
            let left = count - removed;
            if left < target {
                if let Some(summary) = pools.iter().find(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str())) {
                    self.grow(summary, target - left, now).await;
                }
            }
        }
        Ok(())
    }

    /// The server is stopping: the provider's nodes stop too (their running
    /// attempts end and are requeued at the next start).
    pub async fn stop_local_nodes(&self) {
        for n in self.providers.nodes() {
            self.send(&n.id, proto::ToAgent::Shutdown);
        }
        self.providers.stop_all().await;
    }
}

/// The state a node not joined yet shows.
fn phase_state(phase: NodePhase) -> ComputeNodeState {
    match phase {
        NodePhase::Creating => ComputeNodeState::Creating,
        NodePhase::Starting => ComputeNodeState::Starting,
    }
}
