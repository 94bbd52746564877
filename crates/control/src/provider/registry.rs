//! The node providers a server may use, by name. A pool whose `vmSize` names
//! a declared provider (case-insensitively) gets its nodes from it; any
//! other size goes to the default provider (local processes unless the
//! configuration names another). Exactly one provider is local: the
//! built-in `local`, or the one `kind = "local"` table that renames it.

use super::local::LocalProvider;
use super::{NodeProvider, PoolTarget, ProvidedNode, ProviderEvent};
use crate::config::ClusterConfig;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use wire::Error;

/// Builds a provider once the control plane's settings are known.
/// (A provider that cannot reach its engine still builds: its `add` fails,
/// which the pool's `resizeErrors` show.)
pub type BuildProvider = Arc<dyn Fn(&ClusterConfig) -> Arc<dyn NodeProvider> + Send + Sync>;

/// A provider the server's configuration declares (`[providers.<name>]`).
#[derive(Clone)]
pub struct ProviderDecl {
    /// The name a pool's `vmSize` selects it by.
    pub name: String,
    /// `local`, `docker`, `slurm`, ...
    pub kind: String,
    /// Sizes that name no provider go to this one.
    pub default: bool,
    /// At most this many nodes at once, over all its pools.
    pub max_nodes: Option<usize>,
    /// What it serves, in words (`/supportedimages`, logs).
    pub description: String,
    /// None: the local provider.
    pub build: Option<BuildProvider>,
}

impl std::fmt::Debug for ProviderDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderDecl")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("default", &self.default)
            .field("max_nodes", &self.max_nodes)
            .finish()
    }
}

/// When a pool may ask its provider for nodes again after a failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub next: std::time::Instant,
    pub delay: std::time::Duration,
}

/// One named provider.
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub max_nodes: Option<usize>,
    pub provider: Arc<dyn NodeProvider>,
}

/// The providers, by name, with the default.
pub struct Providers {
    entries: Vec<Entry>,
    default: usize,
}

impl Providers {
    /// These providers; sizes that name none go to `entries[default]`.
    pub fn new(entries: Vec<Entry>, default: usize) -> Providers {
        assert!(default < entries.len(), "the default provider is one of them");
        Providers { entries, default }
    }

    /// One provider, the default for every size.
    pub fn single(provider: Arc<dyn NodeProvider>) -> Providers {
        let name = provider.name().to_string();
        Providers {
            entries: vec![Entry { kind: name.clone(), name, description: "nodes for every size".into(), max_nodes: None, provider }],
            default: 0,
        }
    }

    /// The local provider plus those the configuration declares (checked
    /// with `check` when the configuration was read).
    pub fn from_config(config: &ClusterConfig, declared: &[ProviderDecl]) -> Providers {
        let local = declared.iter().find(|d| d.build.is_none());
        let mut entries = vec![Entry {
            name: local.map_or("local".into(), |d| d.name.clone()),
            kind: "local".into(),
            description: local.map_or("agent processes on the server's machine".into(), |d| d.description.clone()),
            max_nodes: local.and_then(|d| d.max_nodes),
            provider: Arc::new(LocalProvider::new(config)),
        }];
        let mut default = 0;
        for d in declared {
            let Some(build) = &d.build else { continue };
            let provider = build(config);
            if d.default {
                default = entries.len();
            }
            entries.push(Entry {
                name: d.name.clone(),
                kind: d.kind.clone(),
                description: d.description.clone(),
                max_nodes: d.max_nodes,
                provider,
            });
        }
        Providers { entries, default }
    }

    /// Every provider, the local one first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The default provider's name.
    pub fn default_name(&self) -> &str {
        &self.entries[self.default].name
    }

    /// Which provider serves a pool of this `vmSize` (index into `entries`).
    pub fn index_for(&self, vm_size: &str) -> usize {
        self.entries.iter().position(|e| e.name.eq_ignore_ascii_case(vm_size)).unwrap_or(self.default)
    }

    /// The provider that serves a pool of this `vmSize`.
    pub fn for_size(&self, vm_size: &str) -> &Entry {
        &self.entries[self.index_for(vm_size)]
    }

    /// Every provider's nodes.
    pub fn nodes(&self) -> Vec<ProvidedNode> {
        self.entries.iter().flat_map(|e| e.provider.nodes()).collect()
    }

    /// The provider running a node (None: it joined from elsewhere).
    pub fn owner(&self, node: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.provider.nodes().iter().any(|n| n.id == node))
    }

    /// Stops a node: its provider's `remove`, or, for a node no provider
    /// runs now, every provider's (each ignores a node that is not its own;
    /// the local one releases a root of the last run).
    pub fn remove(&self, node: &str) -> BoxFuture<'static, ()> {
        let removals: Vec<BoxFuture<'static, ()>> = match self.owner(node) {
            Some(e) => vec![e.provider.remove(node)],
            None => self.entries.iter().map(|e| e.provider.remove(node)).collect(),
        };
        Box::pin(async move {
            futures_util::future::join_all(removals).await;
        })
    }

    /// Every provider looks after its nodes (see `NodeProvider::check`).
    pub fn check(&self, leaving: &(dyn Fn(&str) -> bool + Sync)) -> Vec<(String, ProviderEvent)> {
        self.entries.iter().flat_map(|e| e.provider.check(leaving).into_iter().map(|ev| (e.name.clone(), ev))).collect()
    }

    /// After a restart: each provider keeps the nodes of the pools it serves
    /// (`targets` by pool, with the pool's `vmSize`), and releases the rest.
    pub async fn recover(&self, targets: &[(PoolTarget, String)]) -> Result<(), Error> {
        for (i, e) in self.entries.iter().enumerate() {
            let mine: Vec<PoolTarget> = targets
                .iter()
                .map(|(t, size)| PoolTarget { pool: t.pool.clone(), nodes: if self.index_for(size) == i { t.nodes } else { 0 } })
                .collect();
            if let Err(err) = e.provider.recover(&mine).await {
                tracing::warn!(provider = %e.name, error = %err, "cannot recover the nodes of the last run");
            }
        }
        Ok(())
    }

    /// Nodes of the last run that may come back by themselves.
    pub fn expected(&self) -> Vec<String> {
        self.entries.iter().flat_map(|e| e.provider.expected()).collect()
    }

    /// The server stops: every provider's nodes stop.
    pub async fn stop_all(&self) {
        futures_util::future::join_all(self.entries.iter().map(|e| e.provider.stop_all())).await;
    }
}

/// A provider name: what a pool's `vmSize` can be (letters, digits, `-`, `_`, `.`).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The declarations make sense together: names valid and distinct (ignoring
/// case), at most one local provider, at most one default.
pub fn check(decls: &[ProviderDecl]) -> Result<(), String> {
    for (i, d) in decls.iter().enumerate() {
        if !valid_name(&d.name) {
            return Err(format!("[providers.{}]: a name is 1 to 64 letters, digits, '-', '_' or '.'", d.name));
        }
        if decls[..i].iter().any(|o| o.name.eq_ignore_ascii_case(&d.name)) {
            return Err(format!("[providers.{}] is declared twice (names ignore case)", d.name));
        }
        if d.max_nodes == Some(0) {
            return Err(format!("[providers.{}]: max-nodes must be at least 1", d.name));
        }
    }
    if decls.iter().filter(|d| d.build.is_none()).count() > 1 {
        let names: Vec<String> = decls.iter().filter(|d| d.build.is_none()).map(|d| format!("[providers.{}]", d.name)).collect();
        return Err(format!(
            "only one provider may be kind = \"local\" (there is one local provider; its table names it): {}",
            names.join(", ")
        ));
    }
    let defaults: Vec<String> = decls.iter().filter(|d| d.default).map(|d| format!("[providers.{}]", d.name)).collect();
    if defaults.len() > 1 {
        return Err(format!("only one provider may be the default; {} are: {}", defaults.len(), defaults.join(", ")));
    }
    if let Some(d) = decls.iter().find(|d| d.build.is_some() && d.name.eq_ignore_ascii_case("local")) {
        return Err(format!(
            "[providers.{}]: the name \"local\" is the local provider's; give this {} provider another name",
            d.name, d.kind
        ));
    }
    Ok(())
}
