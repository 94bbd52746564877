//! The control plane's settings and timing constants.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often agents send heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a `Started` report waits before it is written (see `started`).
pub(crate) const STARTED_DEBOUNCE: Duration = Duration::from_millis(10);
/// How deep a busy node's queue is, in attempts' slots per task slot (see
/// `Node::queued`). A few per slot keep a node running trivial tasks back to
/// back while the server is busy recording the last ones; `bench/tasks.sh`
/// measured 1 → 1,900, 2 → 2,170, 3 and more → 2,300–2,400 tasks/s (2 slots).
pub(crate) const QUEUE_PER_SLOT: u32 = 4;
/// Queued attempts of a pool are taken back to make way for a higher-priority
/// job, or for a free node, at most this often (a safety net against
/// rearranging queues for tasks that cannot be placed after all).
pub const RETRACT_EVERY: Duration = Duration::from_millis(50);
/// A node silent this long is `unknown`, and its tasks are requeued.
pub const NODE_LOST_AFTER: Duration = Duration::from_secs(10);

/// Settings of the node runtime.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The token agents present to join (`Authorization: Bearer`).
    pub agent_token: String,
    /// Where local nodes keep their roots (`<data-dir>/nodes`).
    pub nodes_dir: PathBuf,
    /// The server URL local agents dial; set once the listener is bound.
    pub server_url: Arc<Mutex<Option<String>>>,
    /// More environment for local agents (under TLS: the CA file and the
    /// certificate's name; see `server::ServeOptions::agent_env`).
    pub agent_env: Arc<Mutex<Vec<(String, String)>>>,
    /// The program started for local nodes (this binary).
    pub agent_program: Option<PathBuf>,
    pub account: String,
    /// Signs task authentication tokens (the account's primary key).
    pub token_key: Vec<u8>,
    /// Passed to local agents (`OPENBATCH_FILE_ROOTS`).
    pub file_roots: Option<String>,
    /// Registered application packages.
    pub applications_dir: PathBuf,
    /// The account's linked storage account (`autoStorageContainerName`).
    pub auto_storage: Option<crate::data::AutoStorage>,
    /// Enforce the service's own limits where openbatch is more generous
    /// by default (e.g. 64,000 characters of dependency task ids).
    pub strict_limits: bool,
    /// How often the pools' autoscale samples are taken (the service: 30 s).
    pub autoscale_sample_interval: Duration,
    /// How long a job shows a transitional state before the change completes.
    pub transition_delay: Duration,
}
