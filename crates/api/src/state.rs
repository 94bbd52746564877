//! The shared state every handler gets: the store, the control plane and
//! the server's settings.

use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// Settings of the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub account: String,
    /// Decoded account keys: primary first, then secondary.
    pub keys: Vec<Vec<u8>>,
    /// The base URL clients should see in links (`url`, `odata.nextLink`);
    /// when unset, `http://` + the request's Host header.
    pub public_url: Option<String>,
    /// How long a job shows a transitional state before the change completes.
    pub transition_delay: Duration,
    /// The token node agents present to join (`Authorization: Bearer`).
    pub agent_token: String,
    /// Where local nodes keep their root directories.
    pub nodes_dir: std::path::PathBuf,
    /// Registered application packages (see `applications`).
    pub applications_dir: std::path::PathBuf,
    /// The account's linked storage account, if any (`autoStorageContainerName`).
    pub auto_storage: Option<control::data::AutoStorage>,
    /// The program started for local nodes (this binary); None disables local nodes.
    pub agent_program: Option<std::path::PathBuf>,
    /// Enforce the service's own limits where openbatch is more generous by
    /// default (e.g. 64,000 characters of dependency task ids).
    pub strict_limits: bool,
    /// How often autoscale samples are taken (`--autoscale-sample-interval`).
    pub autoscale_sample_interval: Duration,
    /// `file://` roots for local nodes' transfers (`:`-separated); None: any path.
    pub file_roots: Option<String>,
    /// Where and how `/metrics` is served.
    pub metrics: crate::metrics::MetricsConfig,
    /// The node providers the configuration declares (see `control::provider::registry`).
    pub providers: Vec<control::provider::registry::ProviderDecl>,
}

/// Shared state of the running server.
pub struct App {
    pub store: Store,
    pub config: ApiConfig,
    pub lifecycle: Arc<control::lifecycle::Lifecycle>,
    pub cluster: Arc<control::Cluster>,
    /// The base URL of the account as first seen (used where no request is at hand).
    pub account_url: Arc<std::sync::Mutex<Option<String>>>,
    pub(crate) auth: sharedkey::SharedKeyConfig,
    /// The API's request counters and durations (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Set on a replica of a replicated server (see `replica`): it leads
    /// or forwards.
    pub replica: std::sync::OnceLock<Arc<crate::replica::Replica>>,
}

impl App {
    pub fn new(store: Store, config: ApiConfig) -> Arc<App> {
        let auth = sharedkey::SharedKeyConfig { account: config.account.clone(), keys: config.keys.clone() };
        let lifecycle = Arc::new(control::lifecycle::Lifecycle::new(&store));
        let cluster = Arc::new(control::Cluster::new(
            store.clone(),
            control::ClusterConfig {
                agent_token: config.agent_token.clone(),
                nodes_dir: config.nodes_dir.clone(),
                applications_dir: config.applications_dir.clone(),
                server_url: Default::default(),
                agent_env: Default::default(),
                agent_program: config.agent_program.clone(),
                account: config.account.clone(),
                token_key: config.keys.first().cloned().unwrap_or_default(),
                file_roots: config.file_roots.clone(),
                auto_storage: config.auto_storage.clone(),
                strict_limits: config.strict_limits,
                autoscale_sample_interval: config.autoscale_sample_interval,
                transition_delay: config.transition_delay,
            },
            lifecycle.clone(),
            &config.providers,
        ));
        let account_url = Arc::new(std::sync::Mutex::new(config.public_url.clone()));
        Arc::new(App { store, config, lifecycle, cluster, account_url, auth, metrics: Default::default(), replica: Default::default() })
    }
}
