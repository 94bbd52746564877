//! Job preparation and release tasks on nodes.
//!
//! A job's preparation task runs on a node before the node runs any task of
//! the job; with `waitForSuccess` (the default) the job's tasks go only to
//! nodes where it succeeded (a node where it failed after its retries takes
//! none of them). When the job ends, its release task runs on every node
//! that ran the preparation task. What ran where is kept per node in memory
//! and shown by `jobpreparationandreleasetaskstatus`; these runs use no task
//! slots.

use crate::cluster::Cluster;
use crate::launch::{launch_for, prep_dir as dir, PREP_ID, RELEASE_ID};
use crate::state::node::Node;
use crate::state::prep::{PrepRun, PrepState};
use proto::{TaskLaunch, TaskOutcome, ToAgent};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use wire::encode_segment;
use wire::models::CloudJob;
use wire::time::Timestamp;

fn ts(ms: i64) -> Value {
    json!(Timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now)))
}

impl Cluster {
    /// Before a job's tasks are placed on a pool: starts the preparation task
    /// on the pool's nodes that have not run it, and returns the nodes the
    /// job's tasks may use (`None`: any node; the job has no preparation).
    pub(crate) fn prepare_nodes(&self, job: &CloudJob, pool: &str, account_url: &str) -> Option<HashSet<String>> {
        let prep = job.job_preparation_task.as_ref()?;
        let wait = prep.wait_for_success != Some(false);
        let key = store::key_of(&job.id);
        let mut launches: Vec<(String, TaskLaunch)> = Vec::new();
        let mut allowed = HashSet::new();
        {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            for n in nodes.values_mut().filter(|n| n.pool_id == pool && n.schedulable()) {
                match n.preps.get(&key).map(|p| p.state) {
                    Some(PrepState::Succeeded) => {
                        allowed.insert(n.id.clone());
                    }
                    Some(_) if !wait => {
                        allowed.insert(n.id.clone());
                    }
                    Some(_) => {}
                    None => {
                        let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
                        n.preps.insert(
                            key.clone(),
                            PrepRun {
                                job_id: job.id.clone(),
                                state: PrepState::Running,
                                attempt: Some(attempt),
                                retries: 0,
                                info: Map::new(),
                                release_attempt: None,
                                release_info: None,
                            },
                        );
                        launches.push((n.id.clone(), self.prep_launch(account_url, job, n, false, attempt)));
                        if !wait {
                            allowed.insert(n.id.clone());
                        }
                    }
                }
                if let Some(p) = n.preps.get_mut(&key) {
                    if p.attempt.is_some() && !p.info.contains_key("startTime") {
                        p.info.insert("state".into(), json!("running"));
                        p.info.insert("startTime".into(), json!(Timestamp::now()));
                        p.info.insert("retryCount".into(), json!(p.retries));
                        p.info.insert("taskRootDirectory".into(), json!(dir(job, false)));
                    }
                }
            }
        }
        for (node, launch) in launches {
            self.send(&node, ToAgent::Start(Box::new(launch)));
        }
        Some(allowed)
    }

    fn prep_launch(&self, account_url: &str, job: &CloudJob, n: &Node, release: bool, attempt: u64) -> TaskLaunch {
        let files = match (release, &job.job_preparation_task, &job.job_release_task) {
            (false, Some(p), _) => p.resource_files.clone(),
            (true, _, Some(r)) => r.resource_files.clone(),
            _ => None,
        };
        let (id, command, env, identity, max_wall) = match (release, &job.job_preparation_task, &job.job_release_task) {
            (false, Some(p), _) => (
                p.id.clone().unwrap_or_else(|| PREP_ID.into()),
                p.command_line.clone().unwrap_or_default(),
                p.environment_settings.clone(),
                p.user_identity.clone(),
                p.constraints.as_ref().and_then(|c| c.max_wall_clock_time),
            ),
            (true, _, Some(r)) => (
                r.id.clone().unwrap_or_else(|| RELEASE_ID.into()),
                r.command_line.clone().unwrap_or_default(),
                r.environment_settings.clone(),
                r.user_identity.clone(),
                r.max_wall_clock_time,
            ),
            _ => (String::new(), String::new(), None, None, None),
        };
        let mut l = launch_for(
            &self.config.account,
            account_url,
            job,
            &id,
            &command,
            env.as_deref().unwrap_or_default(),
            identity.as_ref(),
            max_wall,
            dir(job, release),
            &n.pool_id,
            &n.id,
            &n.root_dir,
            n.is_dedicated,
            attempt,
        );
        l.resource_files = crate::data::resource_specs(files.as_deref().unwrap_or_default(), self.config.auto_storage.as_ref());
        l
    }

    /// Routes an outcome that belongs to a preparation or release run;
    /// false when the attempt is not one.
    pub(crate) fn prep_finished(&self, node_id: &str, o: &TaskOutcome, account_url: &str) -> bool {
        let mut retry: Option<String> = None;
        {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let Some(n) = nodes.get_mut(node_id) else { return false };
            let Some(run) = n.preps.values_mut().find(|p| p.attempt == Some(o.attempt) || p.release_attempt == Some(o.attempt)) else {
                return false;
            };
            let ok = o.failure_code.is_none() && o.exit_code == Some(0);
            let mut info = Map::new();
            info.insert("state".into(), json!("completed"));
            info.insert("startTime".into(), ts(o.start_time_ms));
            info.insert("endTime".into(), ts(o.end_time_ms));
            if let Some(c) = o.exit_code {
                info.insert("exitCode".into(), json!(c));
            }
            info.insert("result".into(), json!(if ok { "success" } else { "failure" }));
            if !ok {
                let code = o.failure_code.clone().unwrap_or_else(|| "FailureExitCode".into());
                let message = o.failure_message.clone().unwrap_or_else(|| "The task exited with an unexpected exit code".into());
                info.insert("failureInfo".into(), json!({"category": "usererror", "code": code, "message": message}));
            }
            if run.release_attempt == Some(o.attempt) {
                run.release_attempt = None;
                if let Some(d) = run.release_info.as_ref().and_then(|r| r.get("taskRootDirectory")).cloned() {
                    info.insert("taskRootDirectory".into(), d);
                }
                run.release_info = Some(info);
            } else {
                run.attempt = None;
                let root = run.info.get("taskRootDirectory").cloned();
                info.insert("retryCount".into(), json!(run.retries));
                if let Some(r) = root {
                    info.insert("taskRootDirectory".into(), r);
                }
                run.info = info;
                run.state = if ok { PrepState::Succeeded } else { PrepState::Failed };
                if !ok {
                    retry = Some(run.job_id.clone());
                }
            }
        }
        if let Some(job) = retry {
            self.retry_prep(node_id, &job, account_url);
        }
        self.wake.notify_one();
        true
    }

    /// Runs a failed preparation again while its retries allow.
    fn retry_prep(&self, node_id: &str, job_id: &str, account_url: &str) {
        let Some(job) = self.cached_job(job_id) else { return };
        let max = job.job_preparation_task.as_ref().and_then(|p| p.constraints.as_ref()).and_then(|c| c.max_task_retry_count).unwrap_or(0);
        let key = store::key_of(job_id);
        let launch = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let Some(n) = nodes.get_mut(node_id) else { return };
            let Some(run) = n.preps.get_mut(&key) else { return };
            if !(max == -1 || run.retries < max) {
                return;
            }
            run.retries += 1;
            run.state = PrepState::Running;
            let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
            run.attempt = Some(attempt);
            run.info.insert("state".into(), json!("running"));
            run.info.insert("retryCount".into(), json!(run.retries));
            run.info.insert("lastRetryTime".into(), json!(Timestamp::now()));
            let n = &*n;
            self.prep_launch(account_url, &job, n, false, attempt)
        };
        self.send(node_id, ToAgent::Start(Box::new(launch)));
    }

    /// The job ended: its release task runs on every node that prepared it.
    pub async fn release_job(&self, job: &CloudJob) {
        if job.job_release_task.is_none() {
            return;
        }
        let account_url = self.config.server_url.lock().map(|u| u.clone().unwrap_or_default()).unwrap_or_default();
        let account_url = account_url.as_str();
        let key = store::key_of(&job.id);
        let mut launches = Vec::new();
        {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            for n in nodes.values_mut() {
                let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
                let Some(run) = n.preps.get_mut(&key) else { continue };
                if run.release_attempt.is_some() || run.release_info.is_some() {
                    continue;
                }
                run.release_attempt = Some(attempt);
                run.release_info = Some(
                    json!({"state": "running", "startTime": Timestamp::now(), "taskRootDirectory": dir(job, true)})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                );
                let n = &*n;
                launches.push((n.id.clone(), self.prep_launch(account_url, job, n, true, attempt)));
            }
        }
        for (node, launch) in launches {
            self.send(&node, ToAgent::Start(Box::new(launch)));
        }
    }

    /// The `jobpreparationandreleasetaskstatus` items of a job.
    pub fn prep_release_status(&self, job_id: &str, account_url: &str) -> Vec<Value> {
        let key = store::key_of(job_id);
        let mut core = self.core();
        let nodes = &mut core.nodes;
        nodes
            .values()
            .filter_map(|n| {
                let run = n.preps.get(&key)?;
                let url = |d: &Value| {
                    json!(format!(
                        "{account_url}/pools/{}/nodes/{}/files/{}",
                        encode_segment(&n.pool_id),
                        encode_segment(&n.id),
                        d.as_str().unwrap_or_default()
                    ))
                };
                let mut prep = run.info.clone();
                if let Some(d) = prep.get("taskRootDirectory").cloned() {
                    prep.insert("taskRootDirectoryUrl".into(), url(&d));
                }
                let mut item = json!({
                    "poolId": n.pool_id,
                    "nodeId": n.id,
                    "nodeUrl": format!("{account_url}/pools/{}/nodes/{}", encode_segment(&n.pool_id), encode_segment(&n.id)),
                    "jobPreparationTaskExecutionInfo": prep,
                });
                if let Some(mut r) = run.release_info.clone() {
                    if let Some(d) = r.get("taskRootDirectory").cloned() {
                        r.insert("taskRootDirectoryUrl".into(), url(&d));
                    }
                    item["jobReleaseTaskExecutionInfo"] = Value::Object(r);
                }
                Some(item)
            })
            .collect()
    }
}
