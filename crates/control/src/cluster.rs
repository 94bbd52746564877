//! The control plane's handle: settings, the store, where nodes come from,
//! and the in-memory state (`state::Core`) behind its one lock.

use crate::config::ClusterConfig;
use crate::lifecycle::Lifecycle;
use crate::pool::PoolSpec;
use crate::provider::registry::{Backoff, ProviderDecl, Providers};
use crate::provider::NodeProvider;
use crate::state::{Core, CoreGuard};
use proto::ToAgent;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use store::Store;
use tokio::sync::{mpsc, Notify};

pub struct Cluster {
    pub config: ClusterConfig,
    pub(crate) store: Store,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// The in-memory control state (see `state`): locked through `core`.
    core: Mutex<Core>,
    /// Where the pools' nodes come from (see `provider`), by name.
    pub(crate) providers: Providers,
    /// Pools whose provider failed to start nodes: when to ask again.
    pub(crate) resize_backoff: Mutex<std::collections::HashMap<String, Backoff>>,
    pub(crate) next_attempt: AtomicU64,
    /// `Started` reports waiting out `STARTED_DEBOUNCE` (see `started`).
    pub(crate) started_tx: mpsc::UnboundedSender<(tokio::time::Instant, String, u64)>,
    pub(crate) started_rx: Mutex<Option<mpsc::UnboundedReceiver<(tokio::time::Instant, String, u64)>>>,
    pub(crate) next_file: AtomicU64,
    pub wake: Notify,
    pub reconcile: Notify,
    /// Wakes the autoscale loop (a pool's autoscale was enabled or changed).
    pub autoscale: Notify,
    /// The first attempt id this server issued: lower ones are an earlier
    /// server's (see `adopt`).
    pub(crate) first_attempt: AtomicU64,
    /// Set once attempt ids are initialised (`init_attempts`): no agent
    /// joins before, so `first_attempt` tells this server's attempts apart.
    pub(crate) initialized: tokio::sync::watch::Sender<bool>,
    /// How auto pools are created (the API's pool add; see `autopool`).
    pub(crate) pool_maker: std::sync::OnceLock<crate::pool::PoolMaker>,
}

impl Cluster {
    /// The control plane with the local node provider and those the
    /// configuration declares (`declared`, checked when it was read).
    pub fn new(store: Store, config: ClusterConfig, lifecycle: Arc<Lifecycle>, declared: &[ProviderDecl]) -> Cluster {
        let providers = Providers::from_config(&config, declared);
        Cluster::with_providers(store, config, lifecycle, providers)
    }

    /// The control plane with nodes from `provider` alone, for every size.
    pub fn with_provider(store: Store, config: ClusterConfig, lifecycle: Arc<Lifecycle>, provider: Arc<dyn NodeProvider>) -> Cluster {
        Cluster::with_providers(store, config, lifecycle, Providers::single(provider))
    }

    /// The control plane with nodes from `providers`.
    pub fn with_providers(store: Store, config: ClusterConfig, lifecycle: Arc<Lifecycle>, providers: Providers) -> Cluster {
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        Cluster {
            started_tx,
            started_rx: Mutex::new(Some(started_rx)),
            config,
            store,
            lifecycle,
            core: Mutex::new(Core::default()),
            providers,
            resize_backoff: Default::default(),
            next_attempt: AtomicU64::new(1),
            next_file: AtomicU64::new(1),
            wake: Notify::new(),
            reconcile: Notify::new(),
            autoscale: Notify::new(),
            first_attempt: AtomicU64::new(1),
            initialized: tokio::sync::watch::channel(false).0,
            pool_maker: std::sync::OnceLock::new(),
        }
    }

    /// The in-memory control state, locked (briefly: never across an
    /// `await`, never twice on one thread).
    /// The node providers (names, kinds, what they serve).
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub(crate) fn core(&self) -> CoreGuard<'_> {
        Core::lock(&self.core)
    }

    /// A pool as the control plane reads it (None: no such pool).
    pub async fn pool_spec(&self, pool_id: &str) -> Option<PoolSpec> {
        let stored = self.store.get_pool(pool_id).await.ok()?;
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&stored.doc).ok().map(|doc| PoolSpec::from_doc(&doc))
    }

    /// Sends `msg` to a node's agent; false when it is not connected, or
    /// when this server may not act (a replica whose lease ran out, see
    /// `store::Fence`): a stale leader tells no agent anything.
    pub(crate) fn send(&self, node_id: &str, msg: ToAgent) -> bool {
        if !self.store.acting() {
            return false;
        }
        self.core().nodes.get(node_id).and_then(|n| n.tx.as_ref()).map(|tx| tx.send(msg).is_ok()).unwrap_or(false)
    }
}
