//! Where a pool's nodes come from. A [`NodeProvider`] is the mechanism —
//! start nodes for a pool, stop one, notice one that died, find the nodes of
//! the last run after a restart — and the control plane is the policy: how
//! many nodes each pool wants (`reconcile::reconcile_pools`, from the pools'
//! targets),
//! which nodes go first (idle ones), and what happens to their tasks.
//!
//! A provider's node is an `openbatch agent` that joins like any other;
//! nodes that join from elsewhere (an agent an operator started) belong to no
//! provider: they count toward their pool's target and leave only when the
//! pool is deleted. `local` starts agent processes on this machine; further
//! providers (containers, batch schedulers: the `providers` crate) implement
//! the same trait, and `registry` holds them by name: a pool's `vmSize`
//! selects one.

pub mod local;
pub mod reconcile;
pub mod registry;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use wire::Error;

/// A node a provider runs, joined or not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidedNode {
    pub id: String,
    pub pool: String,
    /// Where it is on its way to joining (what the API shows until its
    /// agent joins under the same id; see `reconcile::sync_pending`).
    pub phase: NodePhase,
}

/// A provider's node before its agent joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePhase {
    /// Being made: a container being created, a Slurm job waiting in the
    /// queue (the node shows `creating`).
    Creating,
    /// Made and running, its agent not joined yet (`starting`).
    Starting,
}

/// What a provider's `reset` does instead of the agent.
pub type ResetFuture = BoxFuture<'static, Result<(), String>>;

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
    /// Nodes asked for a pool could not be started (the engine refused, the
    /// batch system rejected the job): the pool's `resizeErrors` say why,
    /// and the pool asks again after a back-off.
    AddFailed { pool: String, reason: String },
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
    /// Reboot (`wipe = false`) or reimage (`wipe = true`) a node by the
    /// provider's own means (a container restarted or recreated); the
    /// node's agent comes back with a new boot id and rejoins. None: the
    /// provider leaves it to the agent (`ToAgent::Reset`), which stops its
    /// tasks in place (and wipes task data for a reimage). The control plane
    /// has already dealt with the node's tasks.
    fn reset(&self, _node: &str, _wipe: bool) -> Option<ResetFuture> {
        None
    }
    /// The engine that runs its nodes' container tasks when they have none
    /// of their own (a Docker provider's node is a container): their agents
    /// reach it through the server's gateway (`proto::engine`). None: nodes
    /// run container tasks with their own engine.
    fn task_engine(&self) -> Option<std::sync::Arc<dyn TaskEngine>> {
        None
    }
}

/// A container engine run on behalf of a provider's nodes.
pub trait TaskEngine: Send + Sync {
    /// Whether the engine has the image (nothing is pulled): `Err` says why
    /// the task cannot have it.
    fn has_image(&self, node: &str, image: &str) -> BoxFuture<'static, Result<(), String>>;
    /// Runs a container task: its id, its output, then its exit code or a
    /// failure. Dropping the stream before its end removes the container.
    fn run(&self, run: proto::engine::EngineRun) -> BoxStream<'static, proto::engine::Frame>;
}
