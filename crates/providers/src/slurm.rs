//! The Slurm node provider (`kind = "slurm"`): each node is a Slurm batch
//! job (`sbatch`, the commands on `PATH`) whose script runs `openbatch
//! agent`, with the partition, account, time limit, CPUs and memory of the
//! provider's settings. The node joins when the job starts; removing it
//! cancels the job (`scancel`: the agent gets SIGTERM, stops its tasks and
//! exits). A job that ends by itself (time limit, preemption, `scancel`
//! from outside, a failed node) makes the node `unusable` and its tasks are
//! requeued; the provider notices through `squeue`.
//!
//! Jobs are named `obnode-<provider>-<node id>`; a server that restarts
//! cancels the jobs of its last run. The agent's path and the server's URL
//! must be valid on the compute nodes (a shared file system, or the same
//! path on every node, and an address they reach); the join token travels
//! in the job's environment (`OPENBATCH_AGENT_TOKEN`), which Slurm keeps
//! readable by the job's user and the Slurm administrators.

use crate::{agent_command, Common};
use control::provider::{NodePhase, NodeProvider, PoolTarget, ProvidedNode, ProviderEvent};
use control::{lock, ClusterConfig};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use wire::Error;

/// `[providers.<name>]` settings of `kind = "slurm"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SlurmSpec {
    /// The partition jobs go to (`--partition`).
    pub partition: String,
    /// The account jobs are charged to (`--account`).
    pub account: Option<String>,
    /// Each job's time limit (`--time`, Slurm's forms: `MM`, `HH:MM:SS`, `D-HH`...).
    pub time_limit: Option<String>,
    /// CPUs per node (`--cpus-per-task`).
    pub cpus: Option<u32>,
    /// Memory per node in MiB (`--mem`).
    pub memory_mb: Option<u64>,
    /// More `sbatch` options, as given (e.g. `["--qos=batch"]`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Where node roots go on the compute nodes [default: /tmp/openbatch-slurm].
    pub root_dir: Option<String>,
    /// The agent program on the compute nodes [default: this binary's path].
    pub agent_program: Option<String>,
    /// The URL agents dial [default: the server's own address].
    pub server_url: Option<String>,
}

impl SlurmSpec {
    pub fn check(&self) -> Result<(), String> {
        let word = |what: &str, v: &str| {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                Err(format!("{what} = {v:?}: must be a non-empty word"))
            } else {
                Ok(())
            }
        };
        word("partition", &self.partition)?;
        if let Some(a) = &self.account {
            word("account", a)?;
        }
        if let Some(t) = &self.time_limit {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'-') {
                return Err(format!("time-limit = {t:?}: a Slurm time such as 60, 1:00:00 or 1-00:00"));
            }
        }
        if self.cpus == Some(0) {
            return Err("cpus must be at least 1".into());
        }
        if self.memory_mb == Some(0) {
            return Err("memory-mb must be at least 1".into());
        }
        for a in &self.sbatch_args {
            if !a.starts_with('-') {
                return Err(format!("sbatch-args: {a:?} is not an option (options start with '-')"));
            }
        }
        for (what, v) in [("root-dir", &self.root_dir), ("agent-program", &self.agent_program)] {
            if let Some(v) = v {
                if !v.starts_with('/') || v.contains('\'') || v.contains('\n') {
                    return Err(format!("{what} = {v:?}: must be an absolute path without quotes"));
                }
            }
        }
        if let Some(u) = &self.server_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("server-url = {u:?}: must start with http:// or https://"));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let mut s = format!("Slurm jobs in partition {}", self.partition);
        if let Some(c) = self.cpus {
            s.push_str(&format!(", {c} CPUs"));
        }
        if let Some(m) = self.memory_mb {
            s.push_str(&format!(", {m} MiB"));
        }
        if let Some(t) = &self.time_limit {
            s.push_str(&format!(", time limit {t}"));
        }
        s
    }

    /// `sbatch`'s options for one node.
    fn sbatch_options(&self, job_name: &str) -> Vec<String> {
        let mut o = vec![
            "--parsable".to_string(),
            format!("--job-name={job_name}"),
            format!("--partition={}", self.partition),
            "--nodes=1".into(),
            "--ntasks=1".into(),
            "--output=/dev/null".into(),
            "--export=ALL".into(),
        ];
        o.extend(self.account.iter().map(|a| format!("--account={a}")));
        o.extend(self.time_limit.iter().map(|t| format!("--time={t}")));
        o.extend(self.cpus.iter().map(|c| format!("--cpus-per-task={c}")));
        o.extend(self.memory_mb.iter().map(|m| format!("--mem={m}M")));
        o.extend(self.sbatch_args.iter().cloned());
        o
    }
}

#[derive(Debug, Clone)]
struct Rec {
    pool: String,
    /// The Slurm job id, once sbatch answered.
    job: Option<String>,
    /// `squeue` said the job has left the queue (it runs: the node is
    /// `starting` until its agent joins; before, `creating`).
    started: bool,
}

struct Inner {
    name: String,
    spec: SlurmSpec,
    common: Common,
    nodes: Mutex<HashMap<String, Rec>>,
    events: Mutex<Vec<ProviderEvent>>,
    dead: Mutex<Vec<(String, String)>>,
    polling: Mutex<bool>,
    /// The `squeue` program (the one on `PATH`; tests give another).
    squeue: String,
}

/// Nodes as Slurm jobs.
pub struct SlurmProvider(Arc<Inner>);

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SlurmProvider {
    pub fn new(name: &str, spec: SlurmSpec, config: &ClusterConfig) -> SlurmProvider {
        SlurmProvider(Arc::new(Inner {
            name: name.to_string(),
            spec,
            common: Common::from(config),
            nodes: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            dead: Mutex::new(Vec::new()),
            polling: Mutex::new(false),
            squeue: "squeue".into(),
        }))
    }
}

impl Inner {
    fn prefix(&self) -> String {
        format!("obnode-{}-", self.name)
    }

    /// Submits one node's job; its Slurm job id.
    async fn submit(&self, id: &str, pool: &str, server: &str) -> Result<String, String> {
        let program = match &self.spec.agent_program {
            Some(p) => p.clone(),
            None => self.common.agent_program.as_ref().ok_or("the agent program is unknown")?.display().to_string(),
        };
        let root = format!("{}/{id}", self.spec.root_dir.as_deref().unwrap_or("/tmp/openbatch-slurm"));
        let argv: Vec<String> = agent_command(&program, server, pool, &root, id).iter().map(|a| shell_quote(a)).collect();
        let script = format!("#!/bin/sh\nexec {}\n", argv.join(" "));
        let mut cmd = Command::new("sbatch");
        cmd.args(self.spec.sbatch_options(&format!("{}{id}", self.prefix())))
            .env("OPENBATCH_AGENT_TOKEN", &self.common.agent_token)
            .envs(self.common.agent_env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run sbatch: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).await.map_err(|e| format!("cannot give sbatch the job script: {e}"))?;
        }
        let out = child.wait_with_output().await.map_err(|e| format!("sbatch: {e}"))?;
        if !out.status.success() {
            return Err(format!("sbatch refused the job: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let job = text.trim().split(';').next().unwrap_or_default().to_string();
        if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("sbatch answered {:?}, not a job id", text.trim()));
        }
        Ok(job)
    }

    /// The provider's jobs still known to Slurm: node id → (job id, state).
    async fn jobs(&self) -> Result<HashMap<String, (String, String)>, String> {
        let out = Command::new(&self.squeue)
            .args(["--noheader", "--format=%i|%j|%T"])
            .output()
            .await
            .map_err(|e| format!("cannot run squeue: {e}"))?;
        if !out.status.success() {
            return Err(format!("squeue failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let prefix = self.prefix();
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().splitn(3, '|');
                let (job, name, state) = (f.next()?, f.next()?, f.next()?);
                let node = name.strip_prefix(&prefix)?;
                Some((node.to_string(), (job.to_string(), state.to_string())))
            })
            .collect())
    }

    /// node id → Slurm job id of the nodes whose `sbatch` answered.
    fn submitted(&self) -> Vec<(String, String)> {
        lock(&self.nodes).iter().filter_map(|(id, r)| Some((id.clone(), r.job.clone()?))).collect()
    }

    async fn cancel(&self, job: &str) {
        match Command::new("scancel").arg(job).output().await {
            Ok(o) if o.status.success() => {}
            Ok(o) => tracing::warn!(%job, error = %String::from_utf8_lossy(&o.stderr).trim(), "scancel failed"),
            Err(e) => tracing::warn!(%job, error = %e, "cannot run scancel"),
        }
    }

    /// Looks for jobs of submitted nodes that ended.
    async fn poll(self: Arc<Self>) {
        // The jobs are taken before `squeue` runs: a job submitted while it
        // runs may be missing from its answer, and is not ended for that.
        let submitted = self.submitted();
        if let Ok(found) = self.jobs().await {
            let mut dead = Vec::new();
            for (id, job) in submitted {
                match found.get(&id) {
                    Some((_, state))
                        if matches!(state.as_str(), "PENDING" | "CONFIGURING" | "RUNNING" | "REQUEUED" | "RESIZING" | "SUSPENDED") =>
                    {
                        // Waiting in the queue (again, once requeued) or given its nodes.
                        let started = !matches!(state.as_str(), "PENDING" | "REQUEUED");
                        if let Some(r) = lock(&self.nodes).get_mut(&id) {
                            r.started = started;
                        }
                    }
                    Some((_, state)) => dead.push((id, format!("its Slurm job {job} is {state}"))),
                    None => dead.push((id, format!("its Slurm job {job} ended"))),
                }
            }
            lock(&self.dead).extend(dead);
        }
        *lock(&self.polling) = false;
    }
}

impl NodeProvider for SlurmProvider {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn nodes(&self) -> Vec<ProvidedNode> {
        lock(&self.0.nodes)
            .iter()
            .map(|(id, r)| {
                let phase = if r.started { NodePhase::Starting } else { NodePhase::Creating };
                ProvidedNode { id: id.clone(), pool: r.pool.clone(), phase }
            })
            .collect()
    }

    fn add(&self, pool: &str, count: usize) -> Result<(), Error> {
        let Some(server) = self.0.spec.server_url.clone().or_else(|| self.0.common.server_url()) else { return Ok(()) };
        for _ in 0..count {
            let id = control::provider::local::new_node_id();
            lock(&self.0.nodes).insert(id.clone(), Rec { pool: pool.to_string(), job: None, started: false });
            let inner = self.0.clone();
            let (pool, server) = (pool.to_string(), server.clone());
            tokio::spawn(async move {
                let r = inner.submit(&id, &pool, &server).await;
                // Whether the node is still wanted, decided under the lock.
                let wanted = {
                    let mut nodes = lock(&inner.nodes);
                    match (&r, nodes.get_mut(&id)) {
                        (Ok(job), Some(rec)) => {
                            rec.job = Some(job.clone());
                            true
                        }
                        (Err(_), Some(_)) => {
                            nodes.remove(&id);
                            false
                        }
                        (_, None) => false, // removed while it was being submitted
                    }
                };
                match r {
                    Ok(job) if wanted => tracing::info!(%pool, node = %id, %job, provider = %inner.name, "submitted a slurm node"),
                    Ok(job) => inner.cancel(&job).await,
                    Err(reason) => {
                        tracing::warn!(%pool, provider = %inner.name, %reason, "cannot submit a slurm node");
                        lock(&inner.events).push(ProviderEvent::AddFailed { pool, reason });
                    }
                }
            });
        }
        Ok(())
    }

    fn remove(&self, node: &str) -> BoxFuture<'static, ()> {
        let rec = lock(&self.0.nodes).remove(node);
        let inner = self.0.clone();
        Box::pin(async move {
            if let Some(job) = rec.and_then(|r| r.job) {
                inner.cancel(&job).await;
            }
        })
    }

    fn check(&self, leaving: &(dyn Fn(&str) -> bool + Sync)) -> Vec<ProviderEvent> {
        let mut events: Vec<ProviderEvent> = lock(&self.0.events).drain(..).collect();
        let dead: Vec<(String, String)> = lock(&self.0.dead).drain(..).collect();
        for (id, reason) in dead {
            let Some(rec) = lock(&self.0.nodes).remove(&id) else { continue };
            if let Some(job) = rec.job {
                // Gone already, or on its way out (COMPLETING): make sure.
                let inner = self.0.clone();
                tokio::spawn(async move { inner.cancel(&job).await });
            }
            if !leaving(&id) {
                tracing::warn!(node = %id, pool = %rec.pool, provider = %self.0.name, %reason, "a slurm node ended");
                events.push(ProviderEvent::Lost { node: id, reason });
            }
        }
        let mut polling = lock(&self.0.polling);
        if !*polling && lock(&self.0.nodes).values().any(|r| r.job.is_some()) {
            *polling = true;
            tokio::spawn(self.0.clone().poll());
        }
        events
    }

    fn recover<'a>(&'a self, _targets: &'a [PoolTarget]) -> BoxFuture<'a, Result<(), Error>> {
        // Jobs of the last run are cancelled: their tasks were requeued,
        // and the pools get new nodes.
        Box::pin(async move {
            let Ok(found) = self.0.jobs().await else { return Ok(()) };
            for (node, (job, _)) in found {
                tracing::info!(%node, %job, provider = %self.0.name, "cancelling a slurm node of the last run");
                self.0.cancel(&job).await;
            }
            Ok(())
        })
    }

    fn expected(&self) -> Vec<String> {
        Vec::new()
    }

    fn stop_all(&self) -> BoxFuture<'_, ()> {
        let jobs: Vec<String> = lock(&self.0.nodes).drain().filter_map(|(_, r)| r.job).collect();
        Box::pin(async move {
            futures_util::future::join_all(jobs.iter().map(|j| self.0.cancel(j))).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SlurmSpec {
        SlurmSpec { partition: "debug".into(), ..Default::default() }
    }

    #[test]
    fn settings_are_checked() {
        assert!(spec().check().is_ok());
        assert!(SlurmSpec::default().check().unwrap_err().contains("partition"));
        assert!(SlurmSpec { time_limit: Some("an hour".into()), ..spec() }.check().unwrap_err().contains("time-limit"));
        assert!(SlurmSpec { sbatch_args: vec!["qos".into()], ..spec() }.check().is_err());
        assert!(SlurmSpec { root_dir: Some("relative".into()), ..spec() }.check().is_err());
        assert!(SlurmSpec { cpus: Some(0), ..spec() }.check().is_err());
    }

    #[test]
    fn sbatch_options_carry_the_settings() {
        let s = SlurmSpec {
            account: Some("proj".into()),
            time_limit: Some("1:00:00".into()),
            cpus: Some(4),
            memory_mb: Some(2048),
            sbatch_args: vec!["--qos=low".into()],
            ..spec()
        };
        let o = s.sbatch_options("obnode-hpc-x");
        for want in [
            "--partition=debug",
            "--account=proj",
            "--time=1:00:00",
            "--cpus-per-task=4",
            "--mem=2048M",
            "--qos=low",
            "--job-name=obnode-hpc-x",
        ] {
            assert!(o.iter().any(|a| a == want), "{want} missing from {o:?}");
        }
    }

    /// `squeue` answers what Slurm knew when it asked: a job whose `sbatch`
    /// returns meanwhile is not in it, and has not ended.
    #[tokio::test(flavor = "current_thread")]
    async fn a_job_submitted_while_squeue_runs_has_not_ended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let squeue = dir.path().join("squeue");
        std::fs::write(&squeue, "#!/bin/sh\nsleep 1\n").unwrap();
        std::fs::set_permissions(&squeue, std::fs::Permissions::from_mode(0o755)).unwrap();
        let common =
            Common { agent_program: None, agent_token: String::new(), server_url: Default::default(), agent_env: Default::default() };
        let inner = Arc::new(Inner {
            name: "hpc".into(),
            spec: spec(),
            common,
            nodes: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            dead: Mutex::new(Vec::new()),
            polling: Mutex::new(true),
            squeue: squeue.display().to_string(),
        });
        lock(&inner.nodes).insert("n1".into(), Rec { pool: "p".into(), job: None, started: false });
        let poll = tokio::spawn(inner.clone().poll());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        lock(&inner.nodes).get_mut("n1").unwrap().job = Some("7".into());
        poll.await.unwrap();
        assert!(lock(&inner.dead).is_empty(), "{:?}", lock(&inner.dead));
        // Asked again, once the job was known: it is gone from the queue.
        inner.clone().poll().await;
        assert_eq!(*lock(&inner.dead), vec![("n1".to_string(), "its Slurm job 7 ended".to_string())]);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
