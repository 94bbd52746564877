//! Where a pool's nodes come from. A [`NodeProvider`] is the mechanism —
//! start nodes for a pool, stop one, notice one that died, find the nodes of
//! the last run after a restart — and the control plane is the policy: how
//! many nodes each pool wants (`reconcile_pools`, from the pools' targets),
//! which nodes go first (idle ones), and what happens to their tasks.
//!
//! A provider's node is an `openbatch agent` that joins like any other;
//! nodes that join from elsewhere (an agent an operator started) belong to no
//! provider: they count toward their pool's target and leave only when the
//! pool is deleted. `local` starts agent processes on this machine; further
//! providers (containers, batch schedulers) implement the same trait.

pub mod local;

use crate::node::Drain;
use crate::{lock, Cluster};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use wire::enums::ComputeNodeState;
use wire::Error;

/// A node a provider runs, joined or not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidedNode {
    pub id: String,
    pub pool: String,
}

/// How many nodes a pool wants (0 while it is being deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTarget {
    pub pool: String,
    pub nodes: usize,
}

/// Something that happened to a provider's node that the control plane did
/// not ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// The node died and the provider brought it back (same id and root);
    /// its lost attempts are requeued when it rejoins or is declared lost.
    Restarted { node: String },
    /// The node died and could not be brought back.
    Lost { node: String, reason: String },
}

/// A source of compute nodes.
pub trait NodeProvider: Send + Sync {
    /// Its name in logs (and, later, in the server's configuration).
    fn name(&self) -> &'static str;
    /// Every node it runs, with its pool (started but not yet joined included).
    fn nodes(&self) -> Vec<ProvidedNode>;
    /// Starts `count` new nodes for `pool`.
    fn add(&self, pool: &str, count: usize) -> Result<(), Error>;
    /// Stops a node and releases what it held. The control plane has already
    /// dealt with its tasks and told its agent to shut down. Not one of its
    /// nodes: nothing to do.
    fn remove(&self, node: &str) -> BoxFuture<'static, ()>;
    /// Looks after its nodes: one that died is brought back unless
    /// `leaving(node)` (it was on its way out anyway).
    fn check(&self, leaving: &(dyn Fn(&str) -> bool + Sync)) -> Vec<ProviderEvent>;
    /// After a server restart: its nodes of the last run, kept (up to each
    /// pool's target; a node still running is adopted as it is) or released.
    fn recover<'a>(&'a self, targets: &'a [PoolTarget]) -> BoxFuture<'a, Result<(), Error>>;
    /// Nodes of the last run that may come back by themselves after a restart
    /// (scheduling waits for them, see `Cluster::expect_nodes`).
    fn expected(&self) -> Vec<String>;
    /// The server stops: every node stops (its agent was told to shut down).
    fn stop_all(&self) -> BoxFuture<'_, ()>;
}

/// A pool summary's wanted node count (0 while deleting).
pub(crate) fn target_of(p: &Map<String, Value>) -> usize {
    if p.get("state").and_then(Value::as_str) == Some("deleting") {
        return 0;
    }
    (p.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
        + p.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0)) as usize
}

impl Cluster {
    /// After a restart, the provider finds the nodes of the last run.
    pub async fn recover_nodes(&self) -> Result<(), Error> {
        let targets: Vec<PoolTarget> = self
            .store
            .pool_summaries()
            .await?
            .iter()
            .map(|p| PoolTarget { pool: p.get("id").and_then(Value::as_str).unwrap_or_default().to_string(), nodes: target_of(p) })
            .collect();
        self.provider.recover(&targets).await
    }

    /// Brings each pool to its target: provider nodes are added or removed
    /// (idle ones first) so that, with the nodes that joined from elsewhere,
    /// the pool has the nodes it asks for. A deleted pool loses all its
    /// nodes, and goes once they are gone.
    pub async fn reconcile_pools(&self) -> Result<(), Error> {
        let nodes_now = &self.nodes;
        for e in self.provider.check(&|id| lock(nodes_now).get(id).is_some_and(|n| n.state == ComputeNodeState::LeavingPool)) {
            match e {
                ProviderEvent::Restarted { node } => {
                    tracing::warn!(node = %node, provider = self.provider.name(), "a node's agent exited; restarted it")
                }
                ProviderEvent::Lost { node, reason } => {
                    tracing::error!(node = %node, provider = self.provider.name(), %reason, "a node's agent exited and cannot be restarted")
                }
            }
        }
        let pools = self.store.pool_summaries().await?;
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for p in &pools {
            wanted.insert(p.get("id").and_then(Value::as_str).unwrap_or_default().to_string(), target_of(p));
        }
        // Nodes of pools that no longer exist go too.
        let pools_of_nodes: Vec<String> = lock(&self.nodes).values().map(|n| n.pool_id.clone()).collect();
        for p in pools_of_nodes {
            wanted.entry(p).or_insert(0);
        }
        for p in &pools {
            if p.get("state").and_then(Value::as_str) == Some("deleting") {
                let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
                let has_nodes = lock(&self.nodes).values().any(|n| n.pool_id == id);
                if !has_nodes {
                    self.store.remove_pool(id).await?;
                }
            }
        }
        for (pool, target) in wanted {
            let provided = self.provider.nodes();
            let owned: HashSet<&str> = provided.iter().map(|n| n.id.as_str()).collect();
            let deleting = pools.iter().any(|p| {
                p.get("id").and_then(Value::as_str) == Some(pool.as_str()) && p.get("state").and_then(Value::as_str) == Some("deleting")
            }) || !pools.iter().any(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str()));
            // Nodes from other machines are the operator's: they count toward
            // the target, and leave only when the pool is deleted.
            let remote: Vec<String> = lock(&self.nodes)
                .values()
                .filter(|n| n.pool_id == pool && !owned.contains(n.id.as_str()) && n.state != ComputeNodeState::LeavingPool)
                .map(|n| n.id.clone())
                .collect();
            if deleting {
                for id in &remote {
                    self.remove_node(id, true).await;
                }
            }
            let target = target.saturating_sub(if deleting { 0 } else { remote.len() });
            let mut have: Vec<(String, bool, u32)> = lock(&self.nodes)
                .values()
                .filter(|n| {
                    n.pool_id == pool
                        && owned.contains(n.id.as_str())
                        && n.state != ComputeNodeState::LeavingPool
                        && n.drain != Some(Drain::Leave)
                })
                .map(|n| (n.id.clone(), n.running.is_empty(), n.used()))
                .collect();
            // Nodes started but not yet joined count as nodes.
            let pending = {
                let nodes = lock(&self.nodes);
                provided.iter().filter(|n| n.pool == pool && !nodes.contains_key(&n.id)).count()
            };
            let count = have.len() + pending;
            if count < target {
                self.provider.add(&pool, target - count)?;
            } else if count > target {
                // Remove idle nodes first.
                have.sort_by_key(|(id, idle, used)| (!*idle, *used, id.clone()));
                for (id, _, _) in have.into_iter().take(count - target) {
                    self.remove_node(&id, true).await;
                }
            }
        }
        Ok(())
    }

    /// The server is stopping: the provider's nodes stop too (their running
    /// attempts end and are requeued at the next start).
    pub async fn stop_local_nodes(&self) {
        for n in self.provider.nodes() {
            self.send(&n.id, proto::ToAgent::Shutdown);
        }
        self.provider.stop_all().await;
    }
}
