//! The local node provider: `openbatch agent` processes on this machine, one
//! per node, with their roots under `<data-dir>/nodes` (the node's id and pool
//! in `volatile/node-id` and `volatile/pool-id`). An agent runs in a session
//! of its own, so it outlives a server that is killed; the restarted server
//! adopts it (it holds its root's lock while it lives).

use super::{NodePhase, NodeProvider, PoolTarget, ProvidedNode, ProviderEvent};
use crate::config::ClusterConfig;
use crate::sync::lock;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wire::Error;

/// How long a local agent keeps its tasks running without its server.
pub(crate) const LOCAL_AGENT_GIVE_UP: Duration = Duration::from_secs(600);

/// A local node's agent process: started by this server, or by an earlier
/// one and adopted (see `recover`).
pub(crate) enum LocalAgent {
    Child(tokio::process::Child),
    Adopted,
}

/// Starts and stops `openbatch agent` processes on this machine.
pub struct LocalProvider {
    nodes_dir: PathBuf,
    agent_program: Option<PathBuf>,
    server_url: Arc<Mutex<Option<String>>>,
    agent_env: Arc<Mutex<Vec<(String, String)>>>,
    agent_token: String,
    file_roots: Option<String>,
    /// The pool and agent process of each node, by node id.
    children: Mutex<HashMap<String, (String, LocalAgent)>>,
}

impl LocalProvider {
    pub fn new(config: &ClusterConfig) -> LocalProvider {
        LocalProvider {
            nodes_dir: config.nodes_dir.clone(),
            agent_program: config.agent_program.clone(),
            server_url: config.server_url.clone(),
            agent_env: config.agent_env.clone(),
            agent_token: config.agent_token.clone(),
            file_roots: config.file_roots.clone(),
            children: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of a node whose root is under the nodes directory.
    fn pool_of(&self, node_id: &str) -> Option<String> {
        std::fs::read_to_string(self.nodes_dir.join(node_id).join("volatile").join("pool-id")).ok()
    }

    /// A new node's root, then its agent.
    fn spawn_new(&self, pool: &str) -> Result<(), Error> {
        if self.agent_program.is_none() {
            return Err(Error::internal("local nodes are not available: the agent program is unknown"));
        }
        if lock(&self.server_url).is_none() {
            return Ok(());
        }
        let id = new_node_id();
        let volatile = self.nodes_dir.join(&id).join("volatile");
        // Private until the agent opens the root to its node's tasks.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&volatile)
            .map_err(Error::internal)?;
        std::fs::write(volatile.join("node-id"), &id).map_err(Error::internal)?;
        std::fs::write(volatile.join("pool-id"), pool).map_err(Error::internal)?;
        self.spawn_agent(pool, &id)
    }

    /// Starts the agent process of a local node whose root already exists.
    fn spawn_agent(&self, pool: &str, id: &str) -> Result<(), Error> {
        let (Some(program), Some(server)) = (self.agent_program.clone(), lock(&self.server_url).clone()) else {
            return Ok(());
        };
        let root = self.nodes_dir.join(id);
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg("agent")
            .arg("--server")
            .arg(&server)
            .arg("--pool")
            .arg(pool)
            .arg("--root")
            .arg(&root)
            .arg("--give-up-after")
            .arg(LOCAL_AGENT_GIVE_UP.as_secs().to_string())
            // The token goes by environment, never argv: /proc/<pid>/environ
            // is readable by the agent's own user only, and tasks run as another.
            .env("OPENBATCH_AGENT_TOKEN", &self.agent_token)
            .env_remove("OPENBATCH_AGENT_TOKEN_FILE")
            .envs(self.file_roots.iter().map(|r| ("OPENBATCH_FILE_ROOTS", r)))
            .envs(lock(&self.agent_env).clone())
            .stdin(std::process::Stdio::null());
        // A session of its own: the agent outlives a server that is killed
        // (its tasks run on, and the restarted server adopts it), and a
        // terminal's Ctrl-C reaches the server only, which stops its nodes
        // in order (`stop_all`).
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::internal(format!("cannot start a local agent: {e}")))?;
        tracing::info!(pool = %pool, node = %id, "started a local node");
        lock(&self.children).insert(id.to_string(), (pool.to_string(), LocalAgent::Child(child)));
        Ok(())
    }
}

impl NodeProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn nodes(&self) -> Vec<ProvidedNode> {
        // An agent process runs from the start: `starting` until it joins.
        lock(&self.children)
            .iter()
            .map(|(id, (pool, _))| ProvidedNode { id: id.clone(), pool: pool.clone(), phase: NodePhase::Starting })
            .collect()
    }

    fn add(&self, pool: &str, count: usize) -> Result<(), Error> {
        for _ in 0..count {
            self.spawn_new(pool)?;
        }
        Ok(())
    }

    fn remove(&self, node: &str) -> BoxFuture<'static, ()> {
        let child = lock(&self.children).remove(node).map(|(_, agent)| agent);
        let root = self.nodes_dir.join(node);
        let owned = child.is_some() || root.join("volatile").join("pool-id").exists();
        Box::pin(async move {
            if let Some(agent) = child {
                stop(agent, &root).await;
            }
            if owned {
                let _ = std::fs::remove_dir_all(root);
            }
        })
    }

    fn check(&self, leaving: &(dyn Fn(&str) -> bool + Sync)) -> Vec<ProviderEvent> {
        let crashed: Vec<String> = lock(&self.children)
            .iter_mut()
            .filter_map(|(id, (_, child))| {
                let gone = match child {
                    LocalAgent::Child(c) => matches!(c.try_wait(), Ok(Some(_))),
                    LocalAgent::Adopted => !agent_alive(&self.nodes_dir.join(id.as_str())),
                };
                gone.then(|| id.clone())
            })
            .collect();
        let mut events = Vec::new();
        for id in crashed {
            let Some((pool, _)) = lock(&self.children).remove(&id) else { continue };
            if leaving(&id) {
                continue;
            }
            // A node that crashed comes back on the same root, as after a
            // reboot; its lost attempts are requeued when it rejoins.
            match self.spawn_agent(&pool, &id) {
                Ok(()) => events.push(ProviderEvent::Restarted { node: id }),
                Err(e) => events.push(ProviderEvent::Lost { node: id, reason: e.to_string() }),
            }
        }
        events
    }

    fn recover<'a>(&'a self, targets: &'a [PoolTarget]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let Ok(dirs) = std::fs::read_dir(&self.nodes_dir) else { return Ok(()) };
            let mut kept: HashMap<String, usize> = HashMap::new();
            for d in dirs.flatten() {
                let id = d.file_name().to_string_lossy().to_string();
                let Some(pool) = self.pool_of(&id) else { continue };
                let target = targets.iter().find(|t| t.pool == pool).map_or(0, |t| t.nodes);
                let n = kept.entry(pool.clone()).or_insert(0);
                let alive = agent_alive(&d.path());
                if *n < target {
                    *n += 1;
                    if alive {
                        tracing::info!(node = %id, "adopted a local node whose agent is still running");
                        lock(&self.children).insert(id.clone(), (pool.clone(), LocalAgent::Adopted));
                    } else if let Err(e) = self.spawn_agent(&pool, &id) {
                        tracing::warn!(node = %id, error = %e, "cannot restart a local node");
                    }
                } else {
                    if alive {
                        stop_agent_at(&d.path()).await;
                    }
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
            Ok(())
        })
    }

    fn expected(&self) -> Vec<String> {
        let Ok(dirs) = std::fs::read_dir(&self.nodes_dir) else { return Vec::new() };
        dirs.flatten().map(|d| d.file_name().to_string_lossy().to_string()).filter(|id| self.pool_of(id).is_some()).collect()
    }

    fn stop_all(&self) -> BoxFuture<'_, ()> {
        let children: Vec<(String, LocalAgent)> = lock(&self.children).drain().map(|(id, (_, agent))| (id, agent)).collect();
        let nodes_dir = self.nodes_dir.clone();
        Box::pin(async move {
            let waits = children.into_iter().map(|(id, child)| {
                let root = nodes_dir.join(&id);
                async move { stop(child, &root).await }
            });
            futures_util::future::join_all(waits).await;
        })
    }
}

/// Waits for a node's agent to exit after it was told to shut down: 5 s for
/// one this server started, then SIGKILL; one it adopted is signalled (see
/// `stop_agent_at`).
async fn stop(agent: LocalAgent, root: &std::path::Path) {
    match agent {
        LocalAgent::Child(mut c) => {
            if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
        LocalAgent::Adopted => stop_agent_at(root).await,
    }
}

pub fn new_node_id() -> String {
    format!("tvmps_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// Whether an agent runs on the node root `root`: it holds the root's lock
/// for as long as it lives (see `agent::run`).
pub(crate) fn agent_alive(root: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(root.join("volatile").join("agent.lock")) else { return false };
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Stops the agent running on `root` that this server did not start:
/// SIGTERM (it stops its attempts and exits), SIGKILL after 5 s.
pub(crate) async fn stop_agent_at(root: &std::path::Path) {
    let pid: Option<i32> = std::fs::read_to_string(root.join("volatile").join("agent.pid")).ok().and_then(|s| s.trim().parse().ok());
    let Some(pid) = pid.filter(|p| *p > 1) else { return };
    // SAFETY: plain kill(2); the pid is the lock holder's (checked below).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..250 {
        if !agent_alive(root) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if agent_alive(root) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
