//! Node providers beyond the local one (which lives in `control`): each
//! node is an `openbatch agent` that joins the server like any other, run
//! as a Docker container (`docker`) or a Slurm job (`slurm`). They implement
//! `control::provider::NodeProvider`; the server's configuration declares
//! them (`[providers.<name>]`) and a pool's `vmSize` selects one.
//!
//! This crate is apart from `control` because the Docker Engine client
//! speaks HTTP, which the control plane must not depend on.

pub mod docker;
pub mod docker_tasks;
pub mod slurm;

use control::{lock, ClusterConfig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What every provider takes from the control plane's settings.
#[derive(Clone)]
pub(crate) struct Common {
    pub agent_program: Option<PathBuf>,
    pub agent_token: String,
    server_url: Arc<Mutex<Option<String>>>,
    agent_env: Arc<Mutex<Vec<(String, String)>>>,
}

impl Common {
    pub fn from(config: &ClusterConfig) -> Common {
        Common {
            agent_program: config.agent_program.clone(),
            agent_token: config.agent_token.clone(),
            server_url: config.server_url.clone(),
            agent_env: config.agent_env.clone(),
        }
    }

    /// The server's own URL, once its listener is bound.
    pub fn server_url(&self) -> Option<String> {
        lock(&self.server_url).clone()
    }

    /// The environment the server gives agents that travels to another
    /// machine or container: the log format (a CA file's path would not).
    pub fn agent_env(&self) -> Vec<(String, String)> {
        lock(&self.agent_env).iter().filter(|(k, _)| k == "OPENBATCH_LOG_FORMAT").cloned().collect()
    }
}

/// How long a provider's agent keeps its tasks without its server.
pub const GIVE_UP_AFTER_SECS: u64 = 600;

/// The command line of a provider node's agent (its token goes by environment).
pub(crate) fn agent_command(program: &str, server: &str, pool: &str, root: &str, node: &str) -> Vec<String> {
    [program, "agent", "--server", server, "--pool", pool, "--root", root, "--node-id", node, "--give-up-after"]
        .iter()
        .map(|s| s.to_string())
        .chain([GIVE_UP_AFTER_SECS.to_string()])
        .collect()
}
