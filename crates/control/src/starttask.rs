//! The pool's start task on each node.

use crate::cluster::Cluster;
use crate::config::ClusterConfig;
use crate::launch::node_env;
use crate::state::node::Node;
use crate::sync::lock;
use proto::{TaskLaunch, TaskOutcome, ToAgent};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use wire::enums::ComputeNodeState;
use wire::time::Timestamp;

fn start_task_launch(cfg: &ClusterConfig, account_url: &str, pool: &str, n: &Node, spec: &Value, attempt: u64) -> TaskLaunch {
    let (account, auto) = (&cfg.account, &cfg.auto_storage);
    let mut env = node_env(account, account_url, pool, &n.id, n.is_dedicated, &n.root_dir, "startup");
    for e in spec.get("environmentSettings").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = e.get("name").and_then(Value::as_str) {
            env.insert(name.to_string(), e.get("value").and_then(Value::as_str).unwrap_or_default().to_string());
        }
    }
    let identity = spec.get("userIdentity");
    let elevated = identity
        .and_then(|u| u.get("autoUser"))
        .and_then(|a| a.get("elevationLevel"))
        .and_then(Value::as_str)
        .is_some_and(|l| l.eq_ignore_ascii_case("admin"));
    let resource_files: Vec<wire::models::ResourceFile> =
        spec.get("resourceFiles").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    TaskLaunch {
        attempt,
        task_dir: "startup".into(),
        command_line: spec.get("commandLine").and_then(Value::as_str).unwrap_or_default().to_string(),
        env,
        elevated,
        user_name: identity.and_then(|u| u.get("username")).and_then(Value::as_str).map(str::to_string),
        is_start_task: true,
        resource_files: crate::data::resource_specs(&resource_files, auto.as_ref()),
        ..Default::default()
    }
}

/// The state a node's start task holds it in under `waitForSuccess` (the
/// default): `waitingforstarttask` while it runs, `starttaskfailed` once it
/// failed with no retry left; None when the node is free to take tasks.
pub(crate) fn start_task_hold(n: &Node, pool_doc: &Map<String, Value>) -> Option<ComputeNodeState> {
    let spec = pool_doc.get("startTask").filter(|v| v.is_object())?;
    if !spec.get("waitForSuccess").and_then(Value::as_bool).unwrap_or(true) {
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
    pub fn run_start_task(&self, node_id: &str, pool_id: &str, spec: &Value) {
        let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        let wait = spec.get("waitForSuccess").and_then(Value::as_bool).unwrap_or(true);
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
        let spec = match self.store.get_pool(&pool_id).await {
            Ok(s) => serde_json::from_str::<Map<String, Value>>(&s.doc).ok().and_then(|m| m.get("startTask").cloned()),
            Err(_) => None,
        };
        let spec = spec.unwrap_or(Value::Null);
        let wait = spec.get("waitForSuccess").and_then(Value::as_bool).unwrap_or(true);
        let max_retries = spec.get("maxTaskRetryCount").and_then(Value::as_i64).unwrap_or(0) as i32;
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
        if retry {
            self.run_start_task(node_id, &pool_id, &spec);
        }
        self.wake.notify_one();
    }
}
