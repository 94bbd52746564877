//! A control plane with fake agents and no sockets or processes: the real
//! `Cluster` over a real SQLite store in a temporary directory; each agent
//! is the receiving end of the channel `Cluster::join` is given, and its
//! reports are the calls the WebSocket transport makes (`on_report`,
//! `finished`, `disconnected`). Entry points that depend on time take the
//! current time as a parameter (`check_liveness(now)`), so a test passes a
//! later instant instead of waiting.

#![allow(dead_code)] // each test file uses a part of the harness

use control::lifecycle::Lifecycle;
use control::provider::registry::Providers;
use control::provider::{NodePhase, NodeProvider, PoolTarget, ProvidedNode, ProviderEvent, ResetFuture};
use control::supervisor::Supervisor;
use control::{Cluster, ClusterConfig};
use futures_util::future::BoxFuture;
use proto::{Hello, TaskLaunch, TaskOutcome, ToAgent, ToServer};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use store::tasks::NewTask;
use store::Store;
use tokio::sync::mpsc;
use wire::enums::{JobState, OnAllTasksComplete, OnTaskFailure, TaskState};
use wire::models::*;
use wire::time::Timestamp;

/// The account URL the control plane is given (links in node info).
pub const URL: &str = "https://acct.example";

pub struct World {
    pub cluster: Arc<Cluster>,
    pub store: Store,
    pub lifecycle: Arc<Lifecycle>,
    /// Runs the writer of `Started` reports (the only background loop a
    /// test gets; rounds, liveness and the rest are called by the test).
    pub supervisor: Arc<Supervisor>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        World::build(None, None).await
    }

    /// A world whose pools get their nodes from `provider` (see `FakeProvider`).
    pub async fn with_provider(provider: Arc<dyn NodeProvider>) -> World {
        World::build(Some(Providers::single(provider)), None).await
    }

    /// A world whose pools get their nodes from `providers`.
    pub async fn with_providers(providers: Providers) -> World {
        World::build(Some(providers), None).await
    }

    /// A world whose store calls `hook` after each of its calls (see
    /// `store::hooked`), e.g. to hold a read back.
    pub async fn with_hook(hook: store::hooked::Hook) -> World {
        World::build(None, Some(hook)).await
    }

    async fn build(providers: Option<Providers>, hook: Option<store::hooked::Hook>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = match hook {
            None => Store::open(dir.path()).unwrap(),
            Some(hook) => {
                let sqlite = Arc::new(store::sqlite::Sqlite::open(dir.path()).unwrap());
                Store::new(Arc::new(store::hooked::Hooked::new(sqlite, hook)))
            }
        };
        let lifecycle = Arc::new(Lifecycle::new(&store));
        let config = cluster_config(dir.path());
        let cluster = Arc::new(match providers {
            Some(p) => Cluster::with_providers(store.clone(), config, lifecycle.clone(), p),
            None => Cluster::new(store.clone(), config, lifecycle.clone(), &[]),
        });
        cluster.init_attempts().await.unwrap();
        let supervisor = Supervisor::new();
        let c = cluster.clone();
        supervisor.spawn("started-reports", move |stop| c.write_started_reports(stop));
        World { cluster, store, lifecycle, supervisor, dir }
    }

    /// A pool with `slots` task slots per node and the given `nodeFillType`
    /// (`spread` or `pack`), with more properties from `extra`.
    pub async fn pool_with(&self, id: &str, slots: u32, fill: &str, extra: Value) {
        let mut doc: Map<String, Value> = match json!({
            "id": id,
            "state": "active",
            "eTag": "0x1",
            "lastModified": Timestamp::now(),
            "vmSize": "standard_d2s_v3",
            "taskSlotsPerNode": slots,
            "taskSchedulingPolicy": {"nodeFillType": fill},
            "targetDedicatedNodes": 0,
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        if let Value::Object(more) = extra {
            doc.extend(more);
        }
        self.store.create_pool(id, doc).await.unwrap();
    }

    pub async fn pool(&self, id: &str, slots: u32, fill: &str) {
        self.pool_with(id, slots, fill, json!({})).await
    }

    /// Stores a job (see `job`), after `edit` changes it.
    pub async fn add_job(&self, id: &str, pool: &str, edit: impl FnOnce(&mut CloudJob)) {
        let mut j = job(id, pool);
        edit(&mut j);
        self.store.create_job(j).await.unwrap();
        self.cluster.wake.notify_one();
    }

    /// Adds tasks (see `task`) to a job, each after `edit` changes it.
    pub async fn add_tasks(&self, job: &str, ids: &[&str], edit: impl Fn(&mut CloudTask)) {
        let tasks = ids
            .iter()
            .map(|id| {
                let mut t = task(id);
                edit(&mut t);
                NewTask::new(t).unwrap()
            })
            .collect();
        for r in self.store.add_tasks(job, tasks, |_| Ok(())).await.unwrap() {
            r.unwrap();
        }
    }

    /// An agent joins `pool` as node `node` with `slots_hint` ignored (the
    /// pool decides); it has run nothing yet.
    pub async fn join(&self, pool: &str, node: &str) -> Agent {
        self.join_with(hello(pool, node)).await
    }

    /// An agent joins with this `Hello` (e.g. one reporting running attempts).
    pub async fn join_with(&self, hello: Hello) -> Agent {
        let doc = self.cluster.pool_to_join(&hello.pool_id).await.expect("the pool exists");
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.cluster.join(&hello, &doc, tx.clone(), URL).await.unwrap();
        let _ = tx.send(self.cluster.welcome(&id, &doc));
        Agent { id, pool: hello.pool_id.clone(), rx, tx }
    }

    /// One scheduling round; how many attempts it placed.
    pub async fn round(&self) -> usize {
        self.round_at(std::time::Instant::now()).await
    }

    /// One scheduling round at the time `now` (the scheduler's clock is a
    /// parameter), then settles.
    pub async fn round_at(&self, now: std::time::Instant) -> usize {
        let n = self.cluster.schedule(URL, now).await.unwrap();
        self.settle().await;
        n
    }

    /// Lets spawned work (assignment commits, debounced reports) finish.
    pub async fn settle(&self) {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// A task as the store has it.
    pub async fn task(&self, job: &str, task: &str) -> CloudTask {
        let s = self.store.get_task(job, task).await.unwrap();
        serde_json::from_str(&s.doc).unwrap()
    }

    pub async fn task_state(&self, job: &str, task: &str) -> TaskState {
        self.task(job, task).await.state
    }

    /// A job as the store has it.
    pub async fn job(&self, id: &str) -> CloudJob {
        let s = self.store.get_job(id).await.unwrap();
        serde_json::from_str(&s.doc).unwrap()
    }
}

/// A node's agent, faked: what the server sends it arrives on `rx`.
pub struct Agent {
    pub id: String,
    pub pool: String,
    pub rx: mpsc::UnboundedReceiver<ToAgent>,
    pub tx: mpsc::UnboundedSender<ToAgent>,
}

impl Agent {
    /// Every message the server has sent since the last look.
    pub fn messages(&mut self) -> Vec<ToAgent> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// The attempts the server has sent since the last look (tasks, start
    /// tasks, preparation and instances alike); other messages are dropped.
    pub fn launches(&mut self) -> Vec<TaskLaunch> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                ToAgent::Start(l) => Some(*l),
                _ => None,
            })
            .collect()
    }

    /// The agent takes a (queued or placed) attempt and starts its process.
    pub fn started(&self, w: &World, attempt: u64) {
        w.cluster.on_report(&self.id, ToServer::Started { attempt }, || URL.to_string());
    }

    /// The attempt ended with `exit` (0: success).
    pub async fn finish(&self, w: &World, attempt: u64, exit: i32) {
        w.cluster.finished(&self.id, outcome(attempt, Some(exit), None), URL.to_string()).await;
        w.settle().await;
    }

    /// The attempt ended with this outcome.
    pub async fn report(&self, w: &World, o: TaskOutcome) {
        w.cluster.finished(&self.id, o, URL.to_string()).await;
        w.settle().await;
    }

    /// Starts and finishes an attempt in one go.
    pub async fn run(&self, w: &World, attempt: u64, exit: i32) {
        self.started(w, attempt);
        self.finish(w, attempt, exit).await;
    }

    /// The connection ends (the agent is not told).
    pub fn disconnect(&self, w: &World) {
        w.cluster.disconnected(&self.id, &self.tx);
    }

    /// The attempt ids the server asked this agent to kill since the last look.
    pub fn kills(&mut self) -> Vec<u64> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                ToAgent::Kill { attempt, .. } => Some(attempt),
                _ => None,
            })
            .collect()
    }
}

/// An agent's first `Hello`: nothing running, nothing held.
pub fn hello(pool: &str, node: &str) -> Hello {
    Hello {
        version: proto::VERSION,
        pool_id: pool.to_string(),
        node_id: Some(node.to_string()),
        hostname: node.to_string(),
        ip_address: "10.0.0.1".into(),
        agent_version: "test".into(),
        running: Vec::new(),
        root_dir: format!("/nodes/{node}"),
        is_root: false,
        boot_id: format!("boot-{node}"),
        finished: Vec::new(),
        held: Vec::new(),
        leftovers: 0,
        ssh_port: None,
        cores: Some(2),
    }
}

/// An attempt's outcome: the exit code, or a failure code when it did not run.
pub fn outcome(attempt: u64, exit_code: Option<i32>, failure_code: Option<&str>) -> TaskOutcome {
    let now = chrono::Utc::now().timestamp_millis();
    TaskOutcome {
        attempt,
        exit_code,
        failure_code: failure_code.map(str::to_string),
        failure_message: failure_code.map(|c| format!("{c} (test)")),
        failure_category: None,
        pre_processing_error: false,
        file_upload_error: false,
        container_id: None,
        start_time_ms: now,
        end_time_ms: now,
        wall_us: Some(1),
        user_cpu_us: 0,
        kernel_cpu_us: 0,
        read_bytes: 0,
        write_bytes: 0,
        read_ops: 0,
        write_ops: 0,
    }
}

/// An active job on `pool`: priority 0, no cap on parallel tasks, no retries.
pub fn job(id: &str, pool: &str) -> CloudJob {
    let now = Timestamp::now();
    CloudJob {
        id: id.to_string(),
        display_name: None,
        uses_task_dependencies: false,
        e_tag: "0x1".into(),
        last_modified: now,
        creation_time: now,
        state: JobState::Active,
        state_transition_time: now,
        previous_state: None,
        previous_state_transition_time: None,
        priority: 0,
        allow_task_preemption: false,
        max_parallel_tasks: -1,
        constraints: JobConstraints { max_wall_clock_time: None, max_task_retry_count: Some(0) },
        job_manager_task: None,
        job_preparation_task: None,
        job_release_task: None,
        common_environment_settings: None,
        pool_info: PoolInformation { pool_id: Some(pool.to_string()), auto_pool_specification: None },
        on_all_tasks_complete: OnAllTasksComplete::NoAction,
        on_task_failure: OnTaskFailure::NoAction,
        network_configuration: None,
        metadata: None,
        execution_info: JobExecutionInformation {
            start_time: now,
            end_time: None,
            pool_id: Some(pool.to_string()),
            scheduling_error: None,
            terminate_reason: None,
        },
        pending_disable: None,
    }
}

/// An active task running `/bin/true`: one slot, no retries.
pub fn task(id: &str) -> CloudTask {
    let now = Timestamp::now();
    CloudTask {
        id: id.to_string(),
        display_name: None,
        e_tag: "0x1".into(),
        last_modified: now,
        creation_time: now,
        exit_conditions: None,
        state: TaskState::Active,
        state_transition_time: now,
        previous_state: None,
        previous_state_transition_time: None,
        command_line: "/bin/true".into(),
        container_settings: None,
        resource_files: None,
        output_files: None,
        environment_settings: None,
        affinity_info: None,
        constraints: TaskConstraints { max_wall_clock_time: None, retention_time: None, max_task_retry_count: Some(0) },
        required_slots: 1,
        user_identity: UserIdentity { username: None, auto_user: None },
        execution_info: TaskExecutionInformation::default(),
        node_info: None,
        multi_instance_settings: None,
        stats: None,
        depends_on: None,
        application_package_references: None,
        authentication_token_settings: None,
        attempt: None,
        node: None,
        cleanup_at: None,
        files_cleaned: false,
        subtasks: None,
    }
}

/// A node provider that only records what it is asked: `add` makes nodes
/// named `<pool>-<n>` that have not joined (a test joins them), `remove`
/// forgets one.
/// `fail` makes `add` fail with that message; `events` are what the next
/// `check` reports; `recovered` records what `recover` was given.
#[derive(Default)]
pub struct FakeProvider {
    pub nodes: Mutex<Vec<ProvidedNode>>,
    pub added: Mutex<Vec<String>>,
    pub removed: Mutex<Vec<String>>,
    pub fail: Mutex<Option<String>>,
    pub events: Mutex<Vec<ProviderEvent>>,
    pub recovered: Mutex<Vec<PoolTarget>>,
    /// Node ids start with this (empty: none).
    pub prefix: String,
    /// Some: it reboots and reimages nodes itself (as containers), with
    /// this outcome (Err: it could not); `resets` records what it was asked.
    pub resets_itself: Mutex<Option<Result<(), String>>>,
    pub resets: Mutex<Vec<(String, bool)>>,
}

impl FakeProvider {
    /// A fake provider whose node ids start with `prefix`.
    pub fn named(prefix: &str) -> FakeProvider {
        FakeProvider { prefix: prefix.to_string(), ..Default::default() }
    }
}

impl NodeProvider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn nodes(&self) -> Vec<ProvidedNode> {
        self.nodes.lock().unwrap().clone()
    }
    fn add(&self, pool: &str, count: usize) -> Result<(), wire::Error> {
        if let Some(msg) = self.fail.lock().unwrap().clone() {
            return Err(wire::Error::internal(msg));
        }
        let mut nodes = self.nodes.lock().unwrap();
        for _ in 0..count {
            let id = format!("{}{pool}-{}", self.prefix, self.added.lock().unwrap().len() + 1);
            self.added.lock().unwrap().push(id.clone());
            nodes.push(ProvidedNode { id, pool: pool.to_string(), phase: NodePhase::Creating });
        }
        Ok(())
    }
    fn remove(&self, node: &str) -> BoxFuture<'static, ()> {
        self.nodes.lock().unwrap().retain(|n| n.id != node);
        self.removed.lock().unwrap().push(node.to_string());
        Box::pin(async {})
    }
    fn check(&self, _leaving: &(dyn Fn(&str) -> bool + Sync)) -> Vec<ProviderEvent> {
        let events: Vec<ProviderEvent> = self.events.lock().unwrap().drain(..).collect();
        for e in &events {
            if let ProviderEvent::Lost { node, .. } = e {
                self.nodes.lock().unwrap().retain(|n| &n.id != node);
            }
        }
        events
    }
    fn recover<'a>(&'a self, targets: &'a [PoolTarget]) -> BoxFuture<'a, Result<(), wire::Error>> {
        self.recovered.lock().unwrap().extend(targets.iter().cloned());
        Box::pin(async { Ok(()) })
    }
    fn expected(&self) -> Vec<String> {
        Vec::new()
    }
    fn stop_all(&self) -> BoxFuture<'_, ()> {
        self.nodes.lock().unwrap().clear();
        Box::pin(async {})
    }
    fn reset(&self, node: &str, wipe: bool) -> Option<ResetFuture> {
        let outcome = self.resets_itself.lock().unwrap().clone()?;
        self.resets.lock().unwrap().push((node.to_string(), wipe));
        Some(Box::pin(async move { outcome }))
    }
}

impl FakeProvider {
    /// Says its node `id` is now in `phase` (a container started, a job out of the queue).
    pub fn set_phase(&self, id: &str, phase: NodePhase) {
        for n in self.nodes.lock().unwrap().iter_mut().filter(|n| n.id == id) {
            n.phase = phase;
        }
    }
}

/// The settings `World::new` gives its control plane, with its directories under `dir`.
pub fn cluster_config(dir: &std::path::Path) -> ClusterConfig {
    ClusterConfig {
        agent_token: "token".into(),
        nodes_dir: dir.join("nodes"),
        server_url: Default::default(),
        agent_env: Default::default(),
        agent_program: None,
        account: "acct".into(),
        token_key: b"key".to_vec(),
        file_roots: None,
        applications_dir: dir.join("applications"),
        auto_storage: None,
        strict_limits: false,
        autoscale_sample_interval: Duration::from_secs(30),
        transition_delay: Duration::ZERO,
    }
}

impl World {
    /// A second control plane over this world's database, as after a server
    /// restart: the database opened again (`Store::open`), attempt ids
    /// initialised (`init_attempts`), no node joined yet. Its `dir` is a new
    /// one for node roots; `self` owns the database's directory and must
    /// outlive it.
    pub async fn restarted(&self) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(self.dir.path()).unwrap();
        let lifecycle = Arc::new(Lifecycle::new(&store));
        let cluster = Arc::new(Cluster::new(store.clone(), cluster_config(dir.path()), lifecycle.clone(), &[]));
        cluster.init_attempts().await.unwrap();
        let supervisor = Supervisor::new();
        let c = cluster.clone();
        supervisor.spawn("started-reports", move |stop| c.write_started_reports(stop));
        World { cluster, store, lifecycle, supervisor, dir }
    }

    /// A node's state as the control plane has it; None when it is not in the pool.
    pub fn node_state(&self, pool: &str, node: &str) -> Option<wire::enums::ComputeNodeState> {
        self.cluster.node(pool, node, |n| n.state)
    }

    /// Ends a task as a client's terminate does (the store's part only:
    /// `completed`, no attempt, no node); the caller takes back its queued
    /// attempt (`retract_task`) or not.
    pub async fn end_task(&self, job: &str, task: &str) {
        self.store
            .update_task(job, task, Default::default(), |_, t, now| {
                t.attempt = None;
                t.node = None;
                control::execution::transition(t, TaskState::Completed, now);
                Ok(())
            })
            .await
            .unwrap();
    }
}

/// Everything a fake agent received in one look, sorted by kind.
#[derive(Debug, Default)]
pub struct Received {
    pub launches: Vec<TaskLaunch>,
    /// Attempts to kill, with their grace period (ms).
    pub kills: Vec<(u64, u64)>,
    pub acks: Vec<u64>,
    pub shutdown: bool,
}

impl Received {
    pub fn killed(&self) -> Vec<u64> {
        let mut k: Vec<u64> = self.kills.iter().map(|(a, _)| *a).collect();
        k.sort_unstable();
        k
    }
    /// The attempt launched for a task, if one was.
    pub fn attempt_of(&self, task: &str) -> Option<u64> {
        self.launches.iter().find(|l| l.task_id == task).map(|l| l.attempt)
    }
}

impl Agent {
    /// Every message since the last look, sorted by kind (unlike `launches`
    /// and `kills`, nothing is dropped).
    pub fn received(&mut self) -> Received {
        let mut r = Received::default();
        for m in self.messages() {
            match m {
                ToAgent::Start(l) => r.launches.push(*l),
                ToAgent::Kill { attempt, grace_ms } => r.kills.push((attempt, grace_ms)),
                ToAgent::Ack { attempts } => r.acks.extend(attempts),
                ToAgent::Shutdown => r.shutdown = true,
                _ => {}
            }
        }
        r
    }

    /// The agent took a queued attempt and fetches its files (`Preparing`).
    pub fn preparing(&self, w: &World, attempt: u64) {
        w.cluster.on_report(&self.id, ToServer::Preparing { attempt }, || URL.to_string());
    }
}

/// A rejoining agent's `Hello`: these attempts still run, and `held` says
/// which task each adoptable one belongs to.
pub fn hello_running(pool: &str, node: &str, running: &[u64], held: &[(u64, &str, &str)]) -> Hello {
    let mut h = hello(pool, node);
    h.running = running.to_vec();
    h.held = held
        .iter()
        .map(|(attempt, job, task)| proto::Held {
            attempt: *attempt,
            task: proto::AttemptOf { job_id: job.to_string(), task_id: task.to_string(), slots: 1 },
        })
        .collect();
    h
}
