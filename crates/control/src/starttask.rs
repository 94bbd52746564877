//! The pool's start task on each node.

use crate::cluster::Cluster;
use crate::config::ClusterConfig;
use crate::launch::node_env;
use crate::pool::{PoolSpec, StartTaskSpec};
use crate::state::node::Node;
use crate::sync::lock;
use proto::{TaskLaunch, TaskOutcome, ToAgent};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use wire::enums::ComputeNodeState;
use wire::time::Timestamp;

fn start_task_launch(cfg: &ClusterConfig, account_url: &str, pool: &str, n: &Node, spec: &StartTaskSpec, attempt: u64) -> TaskLaunch {
    let (account, auto) = (&cfg.account, &cfg.auto_storage);
    let mut env = node_env(account, account_url, pool, &n.id, n.is_dedicated, &n.root_dir, "startup");
    for e in &spec.environment_settings {
        env.insert(e.name.clone(), e.value.clone().unwrap_or_default());
    }
    let identity = spec.user_identity.as_ref();
    TaskLaunch {
        attempt,
        task_dir: "startup".into(),
        command_line: spec.command_line.clone(),
        env,
        elevated: identity.is_some_and(|i| i.elevated()),
        user_name: identity.and_then(|i| i.username.clone()),
        is_start_task: true,
        resource_files: crate::data::resource_specs(&spec.resource_files, auto.as_ref()),
        ..Default::default()
    }
}

/// The state a node's start task holds it in under `waitForSuccess` (the
/// default): `waitingforstarttask` while it runs, `starttaskfailed` once it
/// failed with no retry left; None when the node is free to take tasks.
pub(crate) fn start_task_hold(n: &Node, pool: &PoolSpec) -> Option<ComputeNodeState> {
    if !pool.start_task.as_ref()?.wait_for_success {
        return None;
    }
    if n.start_attempt.is_some() {
        return Some(ComputeNodeState::WaitingForStartTask);
    }
    let info = n.start_task_info.as_ref()?;
    let failed =
        info.get("state").and_then(Value::as_str) == Some("completed") && info.get("result").and_then(Value::as_str) == Some("failure");
    failed.then_some(ComputeNodeState::StartTaskFailed)
}

impl Cluster {
    /// Starts (or retries) the pool's start task on a node. While a start
    /// task with `waitForSuccess` (the default) runs, the node is
    /// `waitingforstarttask` and takes no tasks.
    pub fn run_start_task(&self, node_id: &str, pool_id: &str, spec: &StartTaskSpec) {
        let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        let wait = spec.wait_for_success;
        let launch = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let Some(n) = nodes.get_mut(node_id) else { return };
            n.start_attempt = Some(attempt);
            let mut info = Map::new();
            info.insert("state".into(), json!("running"));
            info.insert("startTime".into(), json!(Timestamp::now()));
            info.insert("retryCount".into(), json!(n.start_retries));
            if let Some(prev) = &n.start_task_info {
                if let Some(t) = prev.get("lastRetryTime") {
                    info.insert("lastRetryTime".into(), t.clone());
                }
            }
            n.start_task_info = Some(info);
            n.set_state(if wait { ComputeNodeState::WaitingForStartTask } else { ComputeNodeState::Idle });
            start_task_launch(&self.config, &lock(&self.config.server_url).clone().unwrap_or_default(), pool_id, n, spec, attempt)
        };
        self.send(node_id, ToAgent::Start(Box::new(launch)));
    }

    /// The start task's attempt ended: retry it, or settle the node's state.
    pub(crate) async fn start_task_finished(&self, node_id: &str, o: &TaskOutcome) {
        let pool_id = match self.core().nodes.get(node_id) {
            Some(n) => n.pool_id.clone(),
            None => return,
        };
        let spec = self.pool_spec(&pool_id).await.and_then(|p| p.start_task);
        let wait = spec.as_ref().is_none_or(|s| s.wait_for_success);
        let max_retries = spec.as_ref().map_or(0, |s| s.max_task_retry_count);
        let ok = o.failure_code.is_none() && o.exit_code == Some(0);
        let retry = {
            let mut core = self.core();
            let nodes = &mut core.nodes;
            let Some(n) = nodes.get_mut(node_id) else { return };
            n.start_attempt = None;
            let mut info = n.start_task_info.clone().unwrap_or_default();
            let ts = |ms: i64| json!(Timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now)));
            info.insert("startTime".into(), ts(o.start_time_ms));
            info.insert("endTime".into(), ts(o.end_time_ms));
            if let Some(c) = o.exit_code {
                info.insert("exitCode".into(), json!(c));
            }
            let retry = !ok && (max_retries == -1 || n.start_retries < max_retries);
            if ok {
                info.insert("state".into(), json!("completed"));
                info.insert("result".into(), json!("success"));
                info.remove("failureInfo");
                n.set_state(ComputeNodeState::Idle);
                n.refresh_busy_state();
            } else {
                let code = o.failure_code.clone().unwrap_or_else(|| "FailureExitCode".into());
                let message = o.failure_message.clone().unwrap_or_else(|| "The start task exited with an unexpected exit code".into());
                info.insert("failureInfo".into(), json!({"category": "usererror", "code": code, "message": message}));
                info.insert("result".into(), json!("failure"));
                if retry {
                    n.start_retries += 1;
                    info.insert("lastRetryTime".into(), json!(Timestamp::now()));
                } else {
                    info.insert("state".into(), json!("completed"));
                    if wait {
                        n.set_state(ComputeNodeState::StartTaskFailed);
                    } else {
                        n.set_state(ComputeNodeState::Idle);
                        n.refresh_busy_state();
                    }
                }
            }
            n.start_task_info = Some(info);
            retry
        };
        if let Some(spec) = spec.filter(|_| retry) {
            self.run_start_task(node_id, &pool_id, &spec);
        }
        self.wake.notify_one();
    }
}
