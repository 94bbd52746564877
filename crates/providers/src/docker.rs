//! The Docker node provider (`kind = "docker"`): each node is a container
//! running `openbatch agent`, created, started and removed through the
//! Docker Engine API (`bollard`), on the host's network so that the agent
//! dials the server as a local one does.
//!
//! The node image is the configured `image`, or one this provider builds
//! from the running binary: a root file system holding `openbatch`, the
//! shared libraries `ldd` lists for it, a static busybox (for `/bin/sh` and
//! the usual commands, when the host has one) and the task account, imported
//! (`POST /images/create?fromSrc=-`) as `openbatch-node:<hash of the
//! binary>` — once per engine and binary, since no registry is reachable.
//!
//! The node root is a named volume (`<node id>-root`) at `/node`; the
//! container's CPU and memory limits come from the provider's settings.
//! A container that exits or disappears makes its node `unusable` (its tasks
//! are requeued) and is removed with its volume; removing a node removes
//! both; a server that restarts removes the containers of the last run.

use crate::docker_tasks::{volume_of, DockerTasks, Limits, LABEL_NODE, LABEL_TASK_OF, NODE_ROOT};
use crate::{agent_command, Common};
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions, RemoveVolumeOptions,
    RestartContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use control::provider::{NodePhase, NodeProvider, PoolTarget, ProvidedNode, ProviderEvent, ResetFuture};
use control::{lock, ClusterConfig};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wire::Error;

/// The label every container of a provider carries (its name).
const LABEL_PROVIDER: &str = "openbatch.provider";
const LABEL_POOL: &str = "openbatch.pool";

const AGENT_PATH: &str = "/usr/local/bin/openbatch";

/// `[providers.<name>]` settings of `kind = "docker"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DockerSpec {
    /// A prepared image holding `openbatch` at /usr/local/bin/openbatch
    /// (and whatever tasks need); default: built from the running binary.
    pub image: Option<String>,
    /// CPUs each node's container may use (fractions allowed).
    pub cpus: Option<f64>,
    /// Memory each node's container may use, in MiB.
    pub memory_mb: Option<u64>,
    /// The engine: `unix:///path/to/docker.sock` or `tcp://host:port`;
    /// default: `DOCKER_HOST`, else `/var/run/docker.sock`.
    pub host: Option<String>,
    /// The URL agents dial; default: the server's own address.
    pub server_url: Option<String>,
    /// The containers' network mode [default: host].
    pub network: Option<String>,
}

impl DockerSpec {
    /// Checks the settings (at start, before anything is created).
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = self.cpus {
            if !(c > 0.0 && c <= 1024.0) {
                return Err(format!("cpus = {c}: must be more than 0 (and at most 1024)"));
            }
        }
        if let Some(m) = self.memory_mb {
            if m < 16 {
                return Err(format!("memory-mb = {m}: a node needs at least 16 MiB"));
            }
        }
        if let Some(h) = &self.host {
            if !(h.starts_with("unix://") || h.starts_with("tcp://") || h.starts_with("http://")) {
                return Err(format!("host = {h:?}: must be unix:///PATH or tcp://HOST:PORT"));
            }
        }
        if let Some(u) = &self.server_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("server-url = {u:?}: must start with http:// or https://"));
            }
        }
        if self.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
            return Err("image must not be empty (leave it out to build the node image from this binary)".into());
        }
        Ok(())
    }

    /// What it serves, in words.
    pub fn describe(&self) -> String {
        let mut s = format!("Docker containers ({})", self.image.as_deref().unwrap_or("image built from this binary"));
        if let Some(c) = self.cpus {
            s.push_str(&format!(", {c} CPUs"));
        }
        if let Some(m) = self.memory_mb {
            s.push_str(&format!(", {m} MiB"));
        }
        s
    }
}

/// How long a rebooted node's agent has to stop its tasks and exit before
/// the engine kills it (`docker restart -t`).
const RESTART_GRACE_SECS: i32 = 10;

/// One node of the provider.
#[derive(Debug, Clone)]
struct Rec {
    pool: String,
    /// Its container runs and is watched (false: being created, or being
    /// restarted or recreated by a reboot or reimage).
    created: bool,
    /// Bumped by each reboot or reimage: a look at the containers taken
    /// before one says nothing about the node after it (see `poll`).
    generation: u64,
}

struct Inner {
    name: String,
    spec: DockerSpec,
    docker: Result<Docker, String>,
    common: Common,
    /// The image nodes run, once known (built or checked).
    image: tokio::sync::Mutex<Option<String>>,
    nodes: Mutex<HashMap<String, Rec>>,
    /// What happened since the last `check`: failures to start nodes,
    /// and containers found dead (`poll`).
    events: Mutex<Vec<ProviderEvent>>,
    dead: Mutex<Vec<(String, String)>>,
    polling: Mutex<bool>,
}

/// Nodes as Docker containers.
pub struct DockerProvider(Arc<Inner>);

impl DockerProvider {
    pub fn new(name: &str, spec: DockerSpec, config: &ClusterConfig) -> DockerProvider {
        let docker = match spec.host.as_deref() {
            Some(h) if h.starts_with("unix://") => Docker::connect_with_unix(h, 120, bollard::API_DEFAULT_VERSION),
            Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| format!("cannot reach the Docker engine: {e}"));
        DockerProvider(Arc::new(Inner {
            name: name.to_string(),
            spec,
            docker,
            common: Common::from(config),
            image: tokio::sync::Mutex::new(None),
            nodes: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            dead: Mutex::new(Vec::new()),
            polling: Mutex::new(false),
        }))
    }
}

impl Inner {
    fn docker(&self) -> Result<&Docker, String> {
        self.docker.as_ref().map_err(Clone::clone)
    }

    /// The node image: the configured one (it must exist), or the one built
    /// from this binary (built if the engine does not have it).
    async fn image(&self) -> Result<String, String> {
        let mut ready = self.image.lock().await;
        if let Some(i) = ready.as_ref() {
            return Ok(i.clone());
        }
        let docker = self.docker()?;
        let image = match &self.spec.image {
            Some(i) => {
                docker.inspect_image(i).await.map_err(|e| format!("the image {i} is not on the engine: {e}"))?;
                i.clone()
            }
            None => {
                let program = self.common.agent_program.clone().ok_or("the agent program is unknown")?;
                build_image(docker, &program).await?
            }
        };
        *ready = Some(image.clone());
        Ok(image)
    }

    /// Creates and starts one node's container.
    async fn create(self: &Arc<Self>, id: &str, pool: &str, server: &str) -> Result<(), String> {
        let image = self.image().await?;
        let docker = self.docker()?;
        let mut env = vec![format!("OPENBATCH_AGENT_TOKEN={}", self.common.agent_token)];
        env.extend(self.common.agent_env().into_iter().map(|(k, v)| format!("{k}={v}")));
        let labels = HashMap::from([(LABEL_PROVIDER.to_string(), self.name.clone()), (LABEL_POOL.to_string(), pool.to_string())]);
        let body = ContainerCreateBody {
            image: Some(image),
            hostname: Some(id.to_string()),
            // Its container tasks go through the server (`docker_tasks`).
            cmd: Some(
                agent_command(AGENT_PATH, server, pool, NODE_ROOT, id)
                    .into_iter()
                    .chain(["--container-engine".into(), "server".into()])
                    .collect(),
            ),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(self.spec.network.clone().unwrap_or_else(|| "host".into())),
                nano_cpus: self.spec.cpus.map(|c| (c * 1e9) as i64),
                memory: self.spec.memory_mb.map(|m| (m * 1024 * 1024) as i64),
                binds: Some(vec![format!("{}:{NODE_ROOT}", volume_of(id))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(Some(CreateContainerOptions { name: Some(id.to_string()), ..Default::default() }), body)
            .await
            .map_err(|e| format!("cannot create the container: {e}"))?;
        docker.start_container(id, None::<StartContainerOptions>).await.map_err(|e| format!("cannot start the container: {e}"))?;
        Ok(())
    }

    /// Removes a node's container (killed if it runs), its container
    /// tasks' and its volume.
    async fn destroy(&self, id: &str) {
        let Ok(docker) = self.docker() else { return };
        let _ = docker.remove_container(id, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() })).await;
        self.remove_task_containers(&format!("{LABEL_NODE}={id}")).await;
        let _ = docker.remove_volume(&volume_of(id), Some(RemoveVolumeOptions { force: true })).await;
    }

    /// Removes the container tasks with a label (`key=value`).
    async fn remove_task_containers(&self, label: &str) {
        let Ok(docker) = self.docker() else { return };
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let Ok(list) =
            docker.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })).await
        else {
            return;
        };
        for id in list.into_iter().filter_map(|c| c.id) {
            let _ = docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
        }
    }

    /// The provider's containers: id (name) → (pool, running, status).
    async fn containers(&self) -> Result<HashMap<String, (String, bool, String)>, String> {
        let docker = self.docker()?;
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_PROVIDER}={}", self.name)])]);
        let list = docker
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                let pool = c.labels.and_then(|mut l| l.remove(LABEL_POOL)).unwrap_or_default();
                let running = matches!(
                    c.state,
                    Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::RESTARTING)
                );
                Some((name, (pool, running, c.status.unwrap_or_default())))
            })
            .collect())
    }

    /// Looks for containers of created nodes that exited or went away.
    async fn poll(self: Arc<Self>) {
        let watched: Vec<(String, u64)> =
            lock(&self.nodes).iter().filter(|(_, r)| r.created).map(|(id, r)| (id.clone(), r.generation)).collect();
        if let Ok(found) = self.containers().await {
            // Only nodes no reboot or reimage touched since the snapshot.
            let nodes = lock(&self.nodes);
            let created = watched.into_iter().filter(|(id, g)| nodes.get(id).is_some_and(|r| r.created && r.generation == *g));
            let created: Vec<String> = created.map(|(id, _)| id).collect();
            drop(nodes);
            let mut dead = Vec::new();
            for id in created {
                match found.get(&id) {
                    Some((_, true, _)) => {}
                    Some((_, false, status)) => dead.push((id, format!("its container stopped ({status})"))),
                    None => dead.push((id, "its container is gone".to_string())),
                }
            }
            lock(&self.dead).extend(dead);
        }
        *lock(&self.polling) = false;
    }

    /// Reboots (restarts the container: the node root volume stays) or
    /// reimages (removes the container and its volume, then creates both
    /// again under the same name) a node.
    async fn reset(self: Arc<Self>, id: String, pool: String, wipe: bool) -> Result<(), String> {
        let docker = self.docker()?;
        let r = if wipe {
            let server = self.spec.server_url.clone().or_else(|| self.common.server_url()).ok_or("the server's address is unknown")?;
            self.destroy(&id).await;
            self.create(&id, &pool, &server).await
        } else {
            docker
                .restart_container(&id, Some(RestartContainerOptions { t: Some(RESTART_GRACE_SECS), ..Default::default() }))
                .await
                .map_err(|e| format!("cannot restart the container: {e}"))
        };
        let wanted = match lock(&self.nodes).get_mut(&id) {
            Some(rec) => {
                rec.created = true;
                rec.generation += 1;
                true
            }
            None => false,
        };
        if !wanted {
            // Removed meanwhile: its creator (here) removes the container.
            self.destroy(&id).await;
        }
        r
    }
}

impl NodeProvider for DockerProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn nodes(&self) -> Vec<ProvidedNode> {
        lock(&self.0.nodes)
            .iter()
            .map(|(id, r)| {
                // Created and started: the agent is on its way.
                let phase = if r.created { NodePhase::Starting } else { NodePhase::Creating };
                ProvidedNode { id: id.clone(), pool: r.pool.clone(), phase }
            })
            .collect()
    }

    fn add(&self, pool: &str, count: usize) -> Result<(), Error> {
        self.0.docker().map_err(Error::internal)?;
        let Some(server) = self.0.spec.server_url.clone().or_else(|| self.0.common.server_url()) else { return Ok(()) };
        for _ in 0..count {
            let id = control::provider::local::new_node_id();
            lock(&self.0.nodes).insert(id.clone(), Rec { pool: pool.to_string(), created: false, generation: 0 });
            let inner = self.0.clone();
            let (pool, server) = (pool.to_string(), server.clone());
            tokio::spawn(async move {
                let r = inner.create(&id, &pool, &server).await;
                // Whether the node is still wanted, decided under the lock.
                let wanted = {
                    let mut nodes = lock(&inner.nodes);
                    match nodes.get_mut(&id) {
                        Some(rec) if r.is_ok() => {
                            rec.created = true;
                            true
                        }
                        Some(_) => {
                            nodes.remove(&id);
                            false
                        }
                        None => false, // removed while it was being created
                    }
                };
                match r {
                    Ok(()) if wanted => tracing::info!(pool = %pool, node = %id, provider = %inner.name, "started a docker node"),
                    Ok(()) => inner.destroy(&id).await,
                    Err(reason) => {
                        tracing::warn!(pool = %pool, provider = %inner.name, %reason, "cannot start a docker node");
                        lock(&inner.events).push(ProviderEvent::AddFailed { pool, reason });
                        inner.destroy(&id).await;
                    }
                }
            });
        }
        Ok(())
    }

    fn remove(&self, node: &str) -> BoxFuture<'static, ()> {
        let rec = lock(&self.0.nodes).remove(node);
        let inner = self.0.clone();
        let id = node.to_string();
        Box::pin(async move {
            // One still being created is destroyed by its creator.
            if rec.is_some_and(|r| r.created) {
                inner.destroy(&id).await;
            }
        })
    }

    fn check(&self, leaving: &(dyn Fn(&str) -> bool + Sync)) -> Vec<ProviderEvent> {
        let mut events: Vec<ProviderEvent> = lock(&self.0.events).drain(..).collect();
        let dead: Vec<(String, String)> = lock(&self.0.dead).drain(..).collect();
        for (id, reason) in dead {
            let Some(rec) = lock(&self.0.nodes).remove(&id) else { continue };
            let inner = self.0.clone();
            let gone = id.clone();
            tokio::spawn(async move { inner.destroy(&gone).await });
            if !leaving(&id) {
                tracing::warn!(node = %id, pool = %rec.pool, provider = %self.0.name, %reason, "a docker node died");
                events.push(ProviderEvent::Lost { node: id, reason });
            }
        }
        let mut polling = lock(&self.0.polling);
        if !*polling && self.0.docker.is_ok() && lock(&self.0.nodes).values().any(|r| r.created) {
            *polling = true;
            tokio::spawn(self.0.clone().poll());
        }
        events
    }

    fn recover<'a>(&'a self, _targets: &'a [PoolTarget]) -> BoxFuture<'a, Result<(), Error>> {
        // Containers of the last run go: their tasks were requeued, and
        // the pools get new nodes.
        Box::pin(async move {
            if self.0.docker.is_err() {
                return Ok(());
            }
            let found = self.0.containers().await.map_err(Error::internal)?;
            for id in found.keys() {
                tracing::info!(node = %id, provider = %self.0.name, "removing a docker node of the last run");
                self.0.destroy(id).await;
            }
            self.0.remove_task_containers(&format!("{LABEL_TASK_OF}={}", self.0.name)).await;
            Ok(())
        })
    }

    fn expected(&self) -> Vec<String> {
        Vec::new()
    }

    fn stop_all(&self) -> BoxFuture<'_, ()> {
        let ids: Vec<String> = lock(&self.0.nodes).drain().map(|(id, _)| id).collect();
        Box::pin(async move {
            futures_util::future::join_all(ids.iter().map(|id| self.0.destroy(id))).await;
            self.0.remove_task_containers(&format!("{LABEL_TASK_OF}={}", self.0.name)).await;
        })
    }

    fn task_engine(&self) -> Option<Arc<dyn control::provider::TaskEngine>> {
        let limits = Limits { cpus: self.0.spec.cpus, memory_mb: self.0.spec.memory_mb, network: self.0.spec.network.clone() };
        Some(Arc::new(DockerTasks { docker: self.0.docker.clone(), provider: self.0.name.clone(), limits }))
    }

    fn reset(&self, node: &str, wipe: bool) -> Option<ResetFuture> {
        let pool = {
            let mut nodes = lock(&self.0.nodes);
            let rec = nodes.get_mut(node).filter(|r| r.created)?;
            rec.created = false;
            rec.generation += 1;
            rec.pool.clone()
        };
        Some(Box::pin(self.0.clone().reset(node.to_string(), pool, wipe)))
    }
}

/// Files of the node image: the agent, its libraries, busybox.
fn image_files(program: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let mut files = vec![(program.to_path_buf(), PathBuf::from(AGENT_PATH))];
    let busybox = Path::new("/bin/busybox");
    let mut binaries = vec![program.to_path_buf()];
    if busybox.exists() {
        files.push((busybox.to_path_buf(), PathBuf::from("/bin/busybox")));
        binaries.push(busybox.to_path_buf());
    }
    let mut seen = HashSet::new();
    for b in binaries {
        for lib in shared_libraries(&b)? {
            if seen.insert(lib.clone()) {
                files.push((lib.clone(), lib));
            }
        }
    }
    Ok(files)
}

/// The shared libraries (and loader) `ldd` lists for a binary; none for a
/// static one.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = std::process::Command::new("ldd").arg(binary).output().map_err(|e| format!("cannot run ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from)).collect())
}

/// Builds (unless the engine has it) the node image from `program`; its tag
/// names the binary's hash, so a new binary gets a new image.
async fn build_image(docker: &Docker, program: &Path) -> Result<String, String> {
    let program = program.to_path_buf();
    let (tag, tar) = tokio::task::spawn_blocking(move || -> Result<(String, Option<PathBuf>), String> {
        use sha2::Digest;
        let mut f = std::fs::File::open(&program).map_err(|e| format!("{}: {e}", program.display()))?;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
        let hex: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok((hex, Some(program)))
    })
    .await
    .map_err(|e| e.to_string())??;
    let image = format!("openbatch-node:{tag}");
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(image);
    }
    let program = tar.unwrap_or_default();
    let bytes = tokio::task::spawn_blocking(move || rootfs_tar(&program)).await.map_err(|e| e.to_string())??;
    tracing::info!(%image, bytes = bytes.len(), "building the docker node image from this binary");
    let mut stream = docker.create_image(
        Some(CreateImageOptions { from_src: Some("-".into()), repo: Some("openbatch-node".into()), tag: Some(tag), ..Default::default() }),
        Some(bollard::body_full(bytes.into())),
        None,
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("cannot import the node image: {e}"))?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            return Err(format!("cannot import the node image: {e}"));
        }
    }
    docker.inspect_image(&image).await.map_err(|e| format!("the node image {image} is missing after its import: {e}"))?;
    Ok(image)
}

/// The node image's root file system, as a tar.
fn rootfs_tar(program: &Path) -> Result<Vec<u8>, String> {
    let err = |e: std::io::Error| format!("cannot build the node image: {e}");
    let mut t = tar::Builder::new(Vec::new());
    let dir = |t: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| -> Result<(), String> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        t.append_data(&mut h, path, std::io::empty()).map_err(err)
    };
    let mut made: HashSet<String> = HashSet::new();
    for d in ["bin", "etc", "usr", "usr/local", "usr/local/bin", "usr/sbin", "root", "run", "node", "var", "lib", "lib64"] {
        dir(&mut t, d, 0o755)?;
        made.insert(d.to_string());
    }
    dir(&mut t, "tmp", 0o1777)?;
    dir(&mut t, "var/tmp", 0o1777)?;
    let text = |t: &mut tar::Builder<Vec<u8>>, path: &str, body: &str| -> Result<(), String> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        t.append_data(&mut h, path, body.as_bytes()).map_err(err)
    };
    // The task account and a node group exist already: the image has no
    // useradd/groupadd.
    text(&mut t, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n_azbatch:x:999:999:openbatch tasks:/nonexistent:/usr/sbin/nologin\n")?;
    text(&mut t, "etc/group", "root:x:0:\n_azbatch:x:999:\n_azbatch1:x:998:\n_azbatch2:x:997:\n")?;
    for (from, to) in image_files(program)? {
        let rel = to.to_string_lossy().trim_start_matches('/').to_string();
        // Parents (a library's directory).
        let mut parent = PathBuf::new();
        for c in Path::new(&rel).parent().into_iter().flat_map(|p| p.components()) {
            parent.push(c);
            let p = parent.to_string_lossy().to_string();
            if made.insert(p.clone()) {
                dir(&mut t, &p, 0o755)?;
            }
        }
        let mut f = std::fs::File::open(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        let len = f.metadata().map_err(err)?.len();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(len);
        t.append_data(&mut h, &rel, &mut f).map_err(err)?;
    }
    if Path::new("/bin/busybox").exists() {
        let out = std::process::Command::new("/bin/busybox").arg("--list").output().map_err(err)?;
        for applet in String::from_utf8_lossy(&out.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            t.append_link(&mut h, format!("bin/{applet}"), "busybox").map_err(err)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        t.append_link(&mut h, "usr/sbin/nologin", "/bin/false").map_err(err)?;
    }
    t.into_inner().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(DockerSpec::default().check().is_ok());
        assert!(DockerSpec { cpus: Some(0.0), ..Default::default() }.check().unwrap_err().contains("cpus"));
        assert!(DockerSpec { memory_mb: Some(1), ..Default::default() }.check().unwrap_err().contains("memory-mb"));
        assert!(DockerSpec { host: Some("/var/run/docker.sock".into()), ..Default::default() }.check().unwrap_err().contains("unix://"));
        assert!(DockerSpec { image: Some(" ".into()), ..Default::default() }.check().is_err());
    }

    /// The image holds the agent, every library `ldd` names, and the accounts.
    #[test]
    fn the_rootfs_holds_the_binary_and_its_libraries() {
        let me = std::env::current_exe().unwrap();
        let tar = rootfs_tar(&me).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string()).collect();
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "no path twice (the engine refuses duplicates)");
        assert!(names.contains(&"usr/local/bin/openbatch".to_string()), "{names:?}");
        assert!(names.contains(&"etc/passwd".to_string()));
        for lib in shared_libraries(&me).unwrap() {
            let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
            assert!(names.contains(&rel), "{rel} missing from {names:?}");
        }
    }
}
