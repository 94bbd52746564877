//! The policy over a [`NodeProvider`](super::NodeProvider): how many nodes
//! each pool wants, which go first, what happens to their tasks.

use super::{PoolTarget, ProviderEvent};
use crate::cluster::Cluster;
use crate::state::node::Drain;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use wire::enums::ComputeNodeState;
use wire::Error;

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
    /// the pool has the nodes it asks for. Nodes beyond the target leave as
    /// the pool's latest resize or autoscale evaluation said
    /// (`nodeDeallocationOption`): `requeue` (the default) stops and
    /// requeues their tasks, `terminate` ends them, `taskcompletion` and
    /// `retaineddata` let them finish first (the node takes no new ones).
    /// A deleted pool loses all its nodes, and goes once they are gone.
    pub async fn reconcile_pools(self: &Arc<Self>) -> Result<(), Error> {
        for e in self.provider.check(&|id| self.core().nodes.get(id).is_some_and(|n| n.state == ComputeNodeState::LeavingPool)) {
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
        let mut options: HashMap<String, String> = HashMap::new();
        for p in &pools {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(o) = p.get(crate::autoscale::DEALLOCATION_MEMBER).and_then(Value::as_str) {
                options.insert(id.clone(), o.to_ascii_lowercase());
            }
            wanted.insert(id, target_of(p));
        }
        // Nodes of pools that no longer exist go too.
        let pools_of_nodes: Vec<String> = self.core().nodes.values().map(|n| n.pool_id.clone()).collect();
        for p in pools_of_nodes {
            wanted.entry(p).or_insert(0);
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
        for (pool, target) in wanted {
            let provided = self.provider.nodes();
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
                .filter(|n| n.pool_id == pool && !owned.contains(n.id.as_str()) && n.state != ComputeNodeState::LeavingPool)
                .map(|n| n.id.clone())
                .collect();
            if deleting {
                for id in &remote {
                    self.remove_node(id, true).await;
                }
            }
            let target = target.saturating_sub(if deleting { 0 } else { remote.len() });
            let mut have: Vec<(String, bool, u32)> = self
                .core()
                .nodes
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
                let mut core = self.core();
                let nodes = &mut core.nodes;
                provided.iter().filter(|n| n.pool == pool && !nodes.contains_key(&n.id)).count()
            };
            let count = have.len() + pending;
            if count < target {
                self.provider.add(&pool, target - count)?;
            } else if count > target {
                // Remove idle nodes first.
                have.sort_by_key(|(id, idle, used)| (!*idle, *used, id.clone()));
                let option = if deleting { "requeue" } else { options.get(&pool).map_or("requeue", String::as_str) };
                for (id, _, _) in have.into_iter().take(count - target) {
                    match option {
                        "terminate" => {
                            self.terminate_running_on(&id).await;
                            self.remove_node(&id, false).await;
                        }
                        "taskcompletion" | "retaineddata" => self.drain(&id, Drain::Leave).await,
                        _ => self.remove_node(&id, true).await,
                    }
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
