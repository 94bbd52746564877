//! Container tasks of Docker nodes. A node is itself a container with no
//! engine inside, and handing it the engine's socket would hand every task
//! elevated to admin on it the engine's host. So its agent asks the server
//! (the engine gateway, `proto::engine`) and the provider runs the task's
//! container here, beside the node's, under rules a task cannot widen:
//!
//! - its mounts come from the node's own volume only: the whole node root,
//!   or the task's chosen directories of it, at the same paths as on the
//!   node (`/node/...`), so the `AZ_BATCH_*` paths hold inside;
//! - never privileged, no added capabilities or devices, `no-new-privileges`;
//!   `containerRunOptions` may use only [`RunOptions`]' safe subset (anything
//!   else fails the task with a clear message), and CPU and memory at most
//!   the node's;
//! - it is removed when it ends, when its client (the attempt's process on
//!   the node) goes away, and with its node.
//!
//! Nothing is pulled (no registry is reachable): the image must be on the
//! engine already.

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{AttachContainerOptions, CreateContainerOptions, RemoveContainerOptions, StartContainerOptions};
use bollard::Docker;
use control::provider::TaskEngine;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use proto::engine::{EngineRun, Frame};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Container tasks carry their provider's name and their node's id.
pub(crate) const LABEL_TASK_OF: &str = "openbatch.task-of";
pub(crate) const LABEL_NODE: &str = "openbatch.node";
/// Where the node root is, in a node's container and in its tasks'.
pub(crate) const NODE_ROOT: &str = "/node";

/// The named volume holding a node's root.
pub(crate) fn volume_of(node: &str) -> String {
    format!("{node}-root")
}

/// What a node may use, so what its tasks' containers may use at most.
#[derive(Debug, Clone)]
pub struct Limits {
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    /// The provider's network mode (default `host`).
    pub network: Option<String>,
}

/// The Docker provider's engine for its nodes' container tasks.
pub struct DockerTasks {
    pub docker: Result<Docker, String>,
    /// The provider's name (labels its task containers).
    pub provider: String,
    pub limits: Limits,
}

struct Engine {
    docker: Docker,
    provider: String,
    limits: Limits,
}

/// The `containerRunOptions` a task on a Docker node may use.
#[derive(Debug, Default, PartialEq)]
pub struct RunOptions {
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    pub cpus: Option<f64>,
    pub memory: Option<i64>,
    /// `none` or `host`.
    pub network: Option<String>,
    pub init: bool,
    pub read_only: bool,
}

const ALLOWED: &str = "--rm, -e/--env, -w/--workdir, -u/--user, --entrypoint, -h/--hostname, --cpus, -m/--memory, \
--network/--net (none or host), --init, --read-only";

/// Parses `containerRunOptions` (the engine client's `run` flags) into the
/// subset allowed on Docker nodes.
pub fn parse_run_options(text: &str) -> Result<RunOptions, String> {
    let words = shell_words::split(text).map_err(|e| format!("containerRunOptions cannot be parsed: {e}"))?;
    let mut o = RunOptions::default();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("containerRunOptions: {name} needs a value")),
            }
        };
        match flag.as_str() {
            "--rm" => {}
            "--init" => o.init = true,
            "--read-only" => o.read_only = true,
            "-e" | "--env" => o.env.push(value(&flag)?),
            "-w" | "--workdir" => o.workdir = Some(value(&flag)?),
            "-u" | "--user" => o.user = Some(value(&flag)?),
            "--entrypoint" => o.entrypoint = Some(value(&flag)?),
            "-h" | "--hostname" => o.hostname = Some(value(&flag)?),
            "--cpus" => {
                let v = value(&flag)?;
                let c: f64 = v.parse().map_err(|_| format!("containerRunOptions: --cpus {v} is not a number"))?;
                if !(c > 0.0 && c <= 1024.0) {
                    return Err(format!("containerRunOptions: --cpus {v} is out of range"));
                }
                o.cpus = Some(c);
            }
            "-m" | "--memory" => {
                let v = value(&flag)?;
                o.memory = Some(parse_bytes(&v).ok_or_else(|| format!("containerRunOptions: --memory {v} is not a size"))?);
            }
            "--network" | "--net" => {
                let v = value(&flag)?;
                if v != "none" && v != "host" {
                    return Err(format!("containerRunOptions: --network {v}: tasks on Docker nodes may use none or host"));
                }
                o.network = Some(v);
            }
            other => return Err(format!("containerRunOptions: {other} is not allowed for a task on a Docker node (allowed: {ALLOWED})")),
        }
    }
    Ok(o)
}

/// `512m`, `1g`, `1024k`, `1048576` (bytes).
fn parse_bytes(v: &str) -> Option<i64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1i64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<i64>().ok().filter(|n| *n > 0).and_then(|n| n.checked_mul(mult))
}

/// The lower of two limits, either of which may be absent.
fn at_most<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A directory of the node root as the task names it: relative, no `.`
/// or `..`, nothing empty.
fn check_rel(rel: &str) -> Result<(), String> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !rel.contains('\0')
        && !rel.contains(':');
    if ok {
        Ok(())
    } else {
        Err(format!("the mount {rel:?} is not a directory of the node root"))
    }
}

impl TaskEngine for DockerTasks {
    fn has_image(&self, _node: &str, image: &str) -> BoxFuture<'static, Result<(), String>> {
        let (docker, image) = (self.docker.clone(), image.to_string());
        Box::pin(async move {
            let docker = docker?;
            match docker.inspect_image(&image).await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!(
                    "The container image '{image}' is not on the Docker provider's engine ({e}); openbatch pulls \
                     nothing there: load it into the engine first (docker load or docker import)"
                )),
            }
        })
    }

    fn run(&self, run: EngineRun) -> BoxStream<'static, Frame> {
        let (tx, mut rx) = mpsc::channel::<Frame>(64);
        match &self.docker {
            Ok(docker) => {
                let engine = Arc::new(Engine { docker: docker.clone(), provider: self.provider.clone(), limits: self.limits.clone() });
                tokio::spawn(supervise(engine, run, tx));
            }
            Err(e) => {
                let _ = tx.try_send(Frame::Failed(e.clone()));
            }
        }
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }
}

/// The container's name: its node and attempt.
fn container_name(run: &EngineRun) -> String {
    format!("{}-t{}", run.node, run.attempt)
}

/// Runs one task's container until it ends or its client goes away, then
/// removes it.
async fn supervise(engine: Arc<Engine>, run: EngineRun, tx: mpsc::Sender<Frame>) {
    let name = container_name(&run);
    let ended = tokio::select! {
        r = drive(&engine, &run, &name, &tx) => Some(r),
        _ = tx.closed() => None,
    };
    let remove = || engine.docker.remove_container(&name, Some(RemoveContainerOptions { force: true, ..Default::default() }));
    let _ = remove().await;
    if ended.is_none() {
        // Its client left while the engine may still be creating it.
        tracing::debug!(container = %name, "a container task's client went away: container removed");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let _ = remove().await;
    }
    match ended {
        Some(Ok(code)) => {
            let _ = tx.send(Frame::Exit(code)).await;
        }
        Some(Err(why)) => {
            let _ = tx.send(Frame::Failed(why)).await;
        }
        None => {}
    }
}

async fn drive(engine: &Engine, run: &EngineRun, name: &str, tx: &mpsc::Sender<Frame>) -> Result<i64, String> {
    let docker = &engine.docker;
    let opts = match &run.run_options {
        Some(text) => parse_run_options(text)?,
        None => RunOptions::default(),
    };
    let volume = volume_of(&run.node);
    let binds = match &run.mounts {
        None => vec![format!("{volume}:{NODE_ROOT}")],
        Some(list) => {
            // The volume's directory on the engine's host: the chosen
            // directories are bound from it (the node's agent made sure
            // no task can swap one for a link; see `agent::exec`).
            let v = docker.inspect_volume(&volume).await.map_err(|e| format!("the node's volume {volume}: {e}"))?;
            let mut binds = Vec::new();
            for (rel, read_only) in list {
                check_rel(rel)?;
                let ro = if *read_only { ":ro" } else { "" };
                binds.push(format!("{}/{rel}:{NODE_ROOT}/{rel}{ro}", v.mountpoint.trim_end_matches('/')));
            }
            binds
        }
    };
    // At most the node's own CPU and memory.
    let cpus = at_most(opts.cpus, engine.limits.cpus);
    let memory = at_most(opts.memory, engine.limits.memory_mb.map(|m| (m * 1024 * 1024) as i64));
    let mut env: Vec<String> = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(opts.env.iter().cloned());
    let labels = HashMap::from([(LABEL_TASK_OF.to_string(), engine.provider.clone()), (LABEL_NODE.to_string(), run.node.clone())]);
    let body = ContainerCreateBody {
        image: Some(run.image.clone()),
        cmd: Some(run.command.clone()),
        entrypoint: opts.entrypoint.clone().map(|e| vec![e]),
        env: Some(env),
        working_dir: opts.workdir.clone().or_else(|| run.workdir.clone()),
        user: opts.user.clone(),
        hostname: opts.hostname.clone(),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some(opts.network.clone().or_else(|| engine.limits.network.clone()).unwrap_or_else(|| "host".into())),
            nano_cpus: cpus.map(|c| (c * 1e9) as i64),
            memory,
            init: Some(opts.init),
            readonly_rootfs: Some(opts.read_only),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(CreateContainerOptions { name: Some(name.to_string()), ..Default::default() }), body)
        .await
        .map_err(|e| format!("the container engine could not create the task's container: {e}"))?;
    let _ = tx.send(Frame::Created(created.id)).await;
    let attached = docker
        .attach_container(name, Some(AttachContainerOptions { stdout: true, stderr: true, stream: true, logs: true, ..Default::default() }))
        .await
        .map_err(|e| format!("cannot attach to the task's container: {e}"))?;
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await
        .map_err(|e| format!("the container engine could not start the task's container: {e}"))?;
    let mut output = attached.output;
    while let Some(item) = output.next().await {
        let frame = match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => Frame::Stdout(message.to_vec()),
            Ok(LogOutput::StdErr { message }) => Frame::Stderr(message.to_vec()),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(_) => break,
        };
        if tx.send(frame).await.is_err() {
            return Err("its client went away".into());
        }
    }
    let mut wait = docker.wait_container(name, None::<bollard::query_parameters::WaitContainerOptions>);
    match wait.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(format!("cannot wait for the task's container: {e}")),
        None => Err("the engine did not say how the task's container ended".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_subset_of_run_options_is_parsed() {
        let o =
            parse_run_options("--rm -e A=1 --env=B='two words' -w /x --user 1000:1000 --cpus 0.5 -m 64m --network none --init").unwrap();
        assert_eq!(o.env, vec!["A=1".to_string(), "B=two words".to_string()]);
        assert_eq!(o.workdir.as_deref(), Some("/x"));
        assert_eq!(o.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.cpus, Some(0.5));
        assert_eq!(o.memory, Some(64 << 20));
        assert_eq!(o.network.as_deref(), Some("none"));
        assert!(o.init && !o.read_only);
        assert_eq!(parse_run_options("").unwrap(), RunOptions::default());
    }

    #[test]
    fn anything_that_widens_the_container_is_refused() {
        for bad in [
            "--privileged",
            "--cap-add SYS_ADMIN",
            "-v /:/host",
            "--volume=/etc:/etc",
            "--mount type=bind,src=/,dst=/h",
            "--device /dev/sda",
            "--pid host",
            "--network bridge",
            "--security-opt seccomp=unconfined",
            "--userns host",
            "--cpus 0",
            "-m lots",
            "-e",
            "'unclosed",
        ] {
            assert!(parse_run_options(bad).is_err(), "{bad}");
        }
        assert!(parse_run_options("--privileged").unwrap_err().contains("not allowed"));
    }

    #[test]
    fn mounts_stay_inside_the_node_root() {
        assert!(check_rel("shared").is_ok());
        assert!(check_rel("workitems/j/job-1/t").is_ok());
        for bad in ["", "/etc", "../x", "a/../../b", "a//b", "./a", "a:b"] {
            assert!(check_rel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("2048"), Some(2048));
        assert_eq!(parse_bytes("1kb"), Some(1024));
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(at_most(Some(2.0), Some(1.0)), Some(1.0));
        assert_eq!(at_most(None, Some(3)), Some(3));
        assert_eq!(at_most(Some(4), None), Some(4));
    }
}
