//! The local node provider: `openbatch agent` processes on this machine, one
//! per node, with their roots under `<data-dir>/nodes`.

use crate::node::Drain;
use crate::{lock, Cluster};
use proto::ToAgent;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use wire::enums::ComputeNodeState;
use wire::Error;

/// How long a local agent keeps its tasks running without its server.
pub(crate) const LOCAL_AGENT_GIVE_UP: Duration = Duration::from_secs(600);

/// A local node's agent process: started by this server, or by an earlier
/// one and adopted (see `adopt_local_nodes`).
pub(crate) enum LocalAgent {
    Child(tokio::process::Child),
    Adopted,
}

pub(crate) fn new_node_id() -> String {
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

impl Cluster {
    /// Local nodes that existed before a restart come back: an agent still
    /// running on its root (the server was killed, its agents were not) is
    /// adopted and reconnects by itself, with its attempts still running;
    /// otherwise a new agent starts on the root (as a node comes back after
    /// a reboot). Roots of pools that are gone are removed.
    pub async fn adopt_local_nodes(&self) -> Result<(), Error> {
        let Ok(dirs) = std::fs::read_dir(&self.config.nodes_dir) else { return Ok(()) };
        let pools = self.store.pool_summaries().await?;
        let mut kept: HashMap<String, usize> = HashMap::new();
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().to_string();
            let Some(pool) = self.child_pool(&id) else { continue };
            let doc = pools.iter().find(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str()));
            let target = doc
                .filter(|p| p.get("state").and_then(Value::as_str) != Some("deleting"))
                .map(|p| {
                    (p.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
                        + p.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0)) as usize
                })
                .unwrap_or(0);
            let n = kept.entry(pool.clone()).or_insert(0);
            let alive = agent_alive(&d.path());
            if *n < target {
                *n += 1;
                if alive {
                    tracing::info!(node = %id, "adopted a local node whose agent is still running");
                    lock(&self.children).insert(id.clone(), LocalAgent::Adopted);
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
    }

    /// Starts or stops local agent processes so each pool has its target
    /// number of nodes. Pools being deleted lose all their nodes.
    pub async fn reconcile_local(&self) -> Result<(), Error> {
        self.restart_crashed_agents();
        let pools = self.store.pool_summaries().await?;
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for p in &pools {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let deleting = p.get("state").and_then(Value::as_str) == Some("deleting");
            let target = if deleting {
                0
            } else {
                (p.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
                    + p.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0)) as usize
            };
            wanted.insert(id, target);
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
            let children: std::collections::HashSet<String> = lock(&self.children).keys().cloned().collect();
            let deleting = pools.iter().any(|p| {
                p.get("id").and_then(Value::as_str) == Some(pool.as_str()) && p.get("state").and_then(Value::as_str) == Some("deleting")
            }) || !pools.iter().any(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str()));
            // Nodes from other machines are the operator's: they count toward
            // the target, and leave only when the pool is deleted.
            let remote: Vec<String> = lock(&self.nodes)
                .values()
                .filter(|n| n.pool_id == pool && !children.contains(&n.id) && n.state != ComputeNodeState::LeavingPool)
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
                        && children.contains(&n.id)
                        && n.state != ComputeNodeState::LeavingPool
                        && n.drain != Some(Drain::Leave)
                })
                .map(|n| (n.id.clone(), n.running.is_empty(), n.used()))
                .collect();
            // Children started but not yet joined count as nodes.
            let pending = {
                let nodes = lock(&self.nodes);
                children.iter().filter(|id| !nodes.contains_key(*id) && self.child_pool(id).as_deref() == Some(pool.as_str())).count()
            };
            let count = have.len() + pending;
            if count < target {
                for _ in count..target {
                    self.spawn_local(&pool)?;
                }
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

    /// A local agent process that died is a node that crashed: start it
    /// again on the same root, as a node comes back after a reboot. Its lost
    /// attempts are requeued when it rejoins (or when it is declared lost).
    pub(crate) fn restart_crashed_agents(&self) {
        let crashed: Vec<String> = lock(&self.children)
            .iter_mut()
            .filter_map(|(id, child)| {
                let gone = match child {
                    LocalAgent::Child(c) => matches!(c.try_wait(), Ok(Some(_))),
                    LocalAgent::Adopted => !agent_alive(&self.config.nodes_dir.join(id.as_str())),
                };
                gone.then(|| id.clone())
            })
            .collect();
        for id in crashed {
            lock(&self.children).remove(&id);
            let leaving = lock(&self.nodes).get(&id).is_none_or(|n| n.state == ComputeNodeState::LeavingPool);
            let Some(pool) = self.child_pool(&id) else { continue };
            if leaving && lock(&self.nodes).contains_key(&id) {
                continue;
            }
            tracing::warn!(node = %id, "a local node agent exited; restarting it");
            if let Err(e) = self.spawn_agent(&pool, &id) {
                tracing::error!(node = %id, error = %e, "cannot restart a local node agent");
            }
        }
    }

    pub(crate) fn child_pool(&self, node_id: &str) -> Option<String> {
        std::fs::read_to_string(self.config.nodes_dir.join(node_id).join("volatile").join("pool-id")).ok()
    }

    pub(crate) fn spawn_local(&self, pool: &str) -> Result<(), Error> {
        if self.config.agent_program.is_none() {
            return Err(Error::internal("local nodes are not available: the agent program is unknown"));
        }
        if lock(&self.config.server_url).is_none() {
            return Ok(());
        }
        let id = new_node_id();
        let volatile = self.config.nodes_dir.join(&id).join("volatile");
        // Private until the agent opens the root to its node's tasks.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&volatile)
            .map_err(Error::internal)?;
        std::fs::write(volatile.join("node-id"), &id).map_err(Error::internal)?;
        std::fs::write(volatile.join("pool-id"), pool).map_err(Error::internal)?;
        self.spawn_agent(pool, &id)
    }

    /// Starts the agent process of a local node whose root already exists.
    pub(crate) fn spawn_agent(&self, pool: &str, id: &str) -> Result<(), Error> {
        let (Some(program), Some(server)) = (self.config.agent_program.clone(), lock(&self.config.server_url).clone()) else {
            return Ok(());
        };
        let root = self.config.nodes_dir.join(id);
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
            .env("OPENBATCH_AGENT_TOKEN", &self.config.agent_token)
            .env_remove("OPENBATCH_AGENT_TOKEN_FILE")
            .envs(self.config.file_roots.iter().map(|r| ("OPENBATCH_FILE_ROOTS", r)))
            .envs(lock(&self.config.agent_env).clone())
            .stdin(std::process::Stdio::null());
        // A session of its own: the agent outlives a server that is killed
        // (its tasks run on, and the restarted server adopts it), and a
        // terminal's Ctrl-C reaches the server only, which stops its nodes
        // in order (`stop_local_nodes`).
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::internal(format!("cannot start a local agent: {e}")))?;
        tracing::info!(pool = %pool, node = %id, "started a local node");
        lock(&self.children).insert(id.to_string(), LocalAgent::Child(child));
        Ok(())
    }

    /// The server is stopping: its local nodes stop too (their running
    /// attempts end and are requeued at the next start).
    pub async fn stop_local_nodes(&self) {
        let children: Vec<(String, LocalAgent)> = lock(&self.children).drain().collect();
        let mut waits = Vec::new();
        for (id, child) in children {
            self.send(&id, ToAgent::Shutdown);
            let root = self.config.nodes_dir.join(&id);
            waits.push(async move {
                match child {
                    LocalAgent::Child(mut c) => {
                        if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
                            let _ = c.kill().await;
                        }
                    }
                    LocalAgent::Adopted => stop_agent_at(&root).await,
                }
            });
        }
        futures_util::future::join_all(waits).await;
    }
}
