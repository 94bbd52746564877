//! Multi-instance tasks (`multiInstanceSettings`): one task on several nodes.
//!
//! The scheduler places such a task on `numberOfInstances` distinct nodes at
//! once, one slot on each. Instance 0 is the primary; instances 1..n-1 are
//! its subtasks. Every instance first runs the coordination command line
//! (each as an attempt of its own); when all of them have exited with 0, the
//! primary runs the task's command line as the task's own attempt, so the
//! task ends through the ordinary path (exit conditions, retries, output
//! files). Subtasks keep their node until the primary has ended. If any
//! instance fails, the others are killed and the task's attempt ends with
//! that instance's failure (retried as the task's constraints allow), as
//! the service documents for MPI tasks.
//!
//! Runs live in memory, keyed by the task's attempt; a server restart loses
//! them, and the task is requeued like any task whose attempt was lost.
//! What `subtasksinfo` shows is kept in the task document when the attempt
//! ends (`_subtasks`), and read live while it runs.

use crate::cluster::Cluster;
use crate::launch::{build_launch, node_info};
use crate::state::multi::{complete, failure_info, set_state, ts_ms, Instance, PlacedOn, Run, Runs, Started, MASTER_PORT};
use crate::state::node::Slot;
use proto::{TaskLaunch, TaskOutcome, ToAgent};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use wire::models::{CloudJob, CloudTask};
use wire::time::Timestamp;

impl Cluster {
    /// Places a multi-instance task whose attempt is `attempt` on `n`
    /// distinct nodes and registers the run. Returns the primary node (id,
    /// root, dedicated) and the coordination launches to send, or None
    /// while too few nodes have a free slot.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn place_multi(
        &self,
        account_url: &str,
        job: &CloudJob,
        task: &CloudTask,
        pool: &str,
        fill: crate::scheduler::placement::Fill,
        prepared: Option<&HashSet<String>>,
        affinity: Option<&str>,
        attempt: u64,
    ) -> Option<(PlacedOn, Vec<(String, TaskLaunch)>)> {
        let m = task.multi_instance_settings.as_ref()?;
        let n = m.number_of_instances.unwrap_or(1).max(1) as usize;
        let placed: Vec<(String, String, String, bool, u64, Vec<wire::models::ApplicationPackageReference>)> = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let candidates: Vec<crate::scheduler::placement::Candidate> = nodes
                .values()
                .filter(|x| x.pool_id == pool && x.schedulable())
                .filter(|x| prepared.is_none_or(|p| p.contains(&x.id)))
                .map(|x| crate::scheduler::placement::Candidate { id: x.id.clone(), free: x.free(), used: x.used() })
                .collect();
            let chosen = crate::scheduler::placement::place_instances(&candidates, n, fill, affinity)?;
            let mut placed = Vec::new();
            for id in chosen {
                let Some(x) = nodes.get_mut(&id) else { continue };
                let a = self.next_attempt.fetch_add(1, Ordering::Relaxed);
                x.running.insert(a, Slot { job_id: job.id.clone(), task_id: task.id.clone(), slots: 1 });
                x.refresh_busy_state();
                placed.push((x.id.clone(), x.ip.clone(), x.root_dir.clone(), x.is_dedicated, a, x.pool_packages.clone()));
            }
            placed
        };
        let ips: Vec<&str> = placed.iter().map(|p| p.1.as_str()).collect();
        let multi_env = |root: &str, master: bool| {
            let task_dir = format!("{root}/{}/{}", wire::workflow::job_dir(&job.id), task.id);
            [
                ("AZ_BATCH_HOST_LIST", ips.join(",")),
                ("AZ_BATCH_NODE_LIST", ips.join(";")),
                ("AZ_BATCH_MASTER_NODE", format!("{}:{MASTER_PORT}", ips[0])),
                ("AZ_BATCH_IS_CURRENT_NODE_MASTER", master.to_string()),
                ("AZ_BATCH_TASK_SHARED_DIR", task_dir),
            ]
            .map(|(k, v)| (k.to_string(), v))
        };
        let now = json!(Timestamp::now());
        let mut instances = Vec::new();
        let mut launches = Vec::new();
        for (i, (node, _, root, dedicated, a, pool_packages)) in placed.iter().enumerate() {
            let mut l = build_launch(&self.config, account_url, job, task, pool_packages, pool, node, root, *dedicated, *a);
            l.command_line = m.coordination_command_line.clone();
            l.background = true;
            l.env.extend(multi_env(root, i == 0));
            // Common resource files go to every instance, into the task
            // directory; the task's own resource and output files belong to
            // the primary's application command.
            l.resource_files = Vec::new();
            l.output_files = Vec::new();
            l.common_resource_files =
                crate::data::resource_specs(m.common_resource_files.as_deref().unwrap_or_default(), self.config.auto_storage.as_ref());
            launches.push((node.clone(), l));
            let mut info = Map::new();
            info.insert("id".into(), json!(i));
            info.insert("nodeInfo".into(), json!(node_info(account_url, pool, node, &job.id, &task.id)));
            info.insert("state".into(), json!("preparing"));
            info.insert("stateTransitionTime".into(), now.clone());
            instances.push(Instance { node_id: node.clone(), attempt: *a, coordinated: false, info });
        }
        let (primary, _, root, dedicated, _, pool_packages) = placed[0].clone();
        let mut app = build_launch(&self.config, account_url, job, task, &pool_packages, pool, &primary, &root, dedicated, attempt);
        app.env.extend(multi_env(&root, true));
        let mut core = self.core();
        let runs = &mut core.multi;
        for i in &instances {
            runs.instance_of.insert(i.attempt, attempt);
        }
        runs.runs.insert(attempt, Run { job_id: job.id.clone(), task_id: task.id.clone(), instances, app: Some(app) });
        Some(((primary, root, dedicated), launches))
    }

    /// The task attempt an attempt belongs to (itself, unless it is an
    /// instance of a multi-instance run).
    pub fn task_attempt(&self, attempt: u64) -> u64 {
        self.core().multi.instance_of.get(&attempt).copied().unwrap_or(attempt)
    }

    /// An instance's process started.
    pub(crate) fn multi_started(&self, attempt: u64) -> Started {
        let mut core = self.core();
        let runs = &mut core.multi;
        let Some(task_attempt) = runs.instance_of.get(&attempt).copied() else { return Started::Other };
        let Some(run) = runs.runs.get_mut(&task_attempt) else { return Started::Other };
        let Some(pos) = run.instances.iter().position(|i| i.attempt == attempt) else { return Started::Other };
        let now = json!(Timestamp::now());
        let info = &mut run.instances[pos].info;
        info.entry("startTime").or_insert_with(|| now.clone());
        set_state(info, "running", now);
        if pos == 0 {
            Started::Primary(task_attempt)
        } else {
            Started::Subtask
        }
    }

    /// An instance's coordination command ended. Returns false when the
    /// attempt is not an instance of a run.
    pub(crate) async fn multi_finished(self: &Arc<Self>, o: &TaskOutcome, base_url: &str) -> bool {
        enum Next {
            Wait,
            App(String, TaskLaunch, u64),
            Fail(Run, u64),
        }
        let next = {
            let mut core = self.core();
            let runs = &mut core.multi;
            let Some(task_attempt) = runs.instance_of.get(&o.attempt).copied() else { return false };
            let Some(run) = runs.runs.get_mut(&task_attempt) else { return false };
            let Some(pos) = run.instances.iter().position(|i| i.attempt == o.attempt) else { return false };
            let inst = &mut run.instances[pos];
            inst.info.entry("startTime").or_insert_with(|| ts_ms(o.start_time_ms));
            if let Some(code) = o.exit_code {
                inst.info.insert("exitCode".into(), json!(code));
            }
            inst.info.insert("endTime".into(), ts_ms(o.end_time_ms));
            let failure = failure_info(o);
            if let Some(f) = failure {
                complete(&mut inst.info, Some(f));
                let run = runs.take(task_attempt).expect("the run is present");
                Next::Fail(run, task_attempt)
            } else {
                inst.coordinated = true;
                if run.instances.iter().all(|i| i.coordinated) {
                    let primary = run.instances[0].node_id.clone();
                    match run.app.take() {
                        Some(app) => Next::App(primary, app, run.instances[0].attempt),
                        None => Next::Wait,
                    }
                } else {
                    Next::Wait
                }
            }
        };
        match next {
            Next::Wait => {}
            Next::App(primary, app, coordination) => {
                // The primary's slot passes from its coordination attempt to the task's.
                let attempt = app.attempt;
                let acting = self.store.acting();
                let mut core = self.core();
                let nodes = &mut core.nodes;
                if let Some(n) = nodes.get_mut(&primary) {
                    if let Some(slot) = n.running.remove(&coordination) {
                        n.running.insert(attempt, slot);
                    }
                    if let Some(tx) = n.tx.as_ref().filter(|_| acting) {
                        let _ = tx.send(ToAgent::Start(Box::new(app)));
                    }
                }
            }
            Next::Fail(mut run, task_attempt) => {
                // Every other instance is stopped; the task's attempt ends
                // with the failing instance's outcome.
                self.stop_instances(&mut run, Some(o.attempt));
                let primary = run.instances[0].node_id.clone();
                let subtasks = Runs::subtasks(&run);
                let mut outcome = o.clone();
                outcome.attempt = task_attempt;
                let slot = Slot { job_id: run.job_id.clone(), task_id: run.task_id.clone(), slots: 1 };
                self.complete_attempt(&primary, slot, outcome, base_url.to_string(), Some(subtasks)).await;
            }
        }
        true
    }

    /// Kills a run's instances (but `except`), frees their slots and marks
    /// the subtasks that had not ended as completed with a failure
    /// (`TaskEnded`: they were stopped, not successful).
    fn stop_instances(&self, run: &mut Run, except: Option<u64>) {
        let mut core = self.core();
        let nodes = &mut core.nodes;
        for i in run.instances.iter_mut() {
            if let Some(n) = nodes.get_mut(&i.node_id) {
                n.running.remove(&i.attempt);
                if let Some(app) = run.app.as_ref() {
                    n.running.remove(&app.attempt);
                }
                n.refresh_busy_state();
                if Some(i.attempt) != except {
                    if let Some(tx) = n.tx.as_ref() {
                        let _ = tx.send(ToAgent::Kill { attempt: i.attempt, grace_ms: 3_000 });
                    }
                }
            }
            let stopped = (Some(i.attempt) != except).then(|| {
                json!({
                    "category": "usererror",
                    "code": "TaskEnded",
                    "message": "The subtask was stopped because another instance of its task failed or was stopped",
                })
            });
            complete(&mut i.info, stopped);
        }
        drop(core);
        self.wake.notify_one();
    }

    /// The primary's application attempt ended: the subtasks end too (their
    /// slots free). Returns the subtasks as they ended, to keep with the task.
    pub(crate) fn multi_end(&self, task_attempt: u64) -> Option<Vec<Value>> {
        let mut run = self.core().multi.take(task_attempt)?;
        {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            for i in run.instances.iter_mut().skip(1) {
                if let Some(n) = nodes.get_mut(&i.node_id) {
                    n.running.remove(&i.attempt);
                    n.refresh_busy_state();
                }
                complete(&mut i.info, None);
            }
        }
        self.wake.notify_one();
        Some(Runs::subtasks(&run))
    }

    /// Stops a whole run when any of its attempts (the task's or an
    /// instance's) is killed or lost. Returns the task's attempt.
    pub(crate) fn multi_abort(&self, attempt: u64) -> Option<u64> {
        let mut core = self.core();
        let runs = &mut core.multi;
        let task_attempt = runs.instance_of.get(&attempt).copied().unwrap_or(attempt);
        let mut run = runs.take(task_attempt)?;
        drop(core);
        let primary = run.instances[0].node_id.clone();
        self.stop_instances(&mut run, None);
        self.send(&primary, ToAgent::Kill { attempt: task_attempt, grace_ms: 3_000 });
        Some(task_attempt)
    }

    /// The subtasks of a task whose run is under way, if it is.
    pub fn live_subtasks(&self, job_id: &str, task_id: &str) -> Option<Vec<Value>> {
        let mut core = self.core();
        let runs = &mut core.multi;
        runs.runs.values().find(|r| r.job_id.eq_ignore_ascii_case(job_id) && r.task_id.eq_ignore_ascii_case(task_id)).map(Runs::subtasks)
    }
}
