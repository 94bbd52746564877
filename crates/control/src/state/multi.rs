//! The multi-instance runs under way: which instance of which task runs on
//! which node, and what `subtasksinfo` shows of each (see `crate::multi`).

use proto::{TaskLaunch, TaskOutcome};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use wire::time::Timestamp;

/// The primary instance's node: its id, root directory and whether it is dedicated.
pub(crate) type PlacedOn = (String, String, bool);

/// The port `AZ_BATCH_MASTER_NODE` names (the service's).
pub(crate) const MASTER_PORT: u16 = 6000;

/// The multi-instance runs under way.
#[derive(Default)]
pub(crate) struct Runs {
    /// By the task's attempt id.
    pub(crate) runs: HashMap<u64, Run>,
    /// Instance attempt → the task's attempt.
    pub(crate) instance_of: HashMap<u64, u64>,
}

pub(crate) struct Run {
    pub(crate) job_id: String,
    pub(crate) task_id: String,
    pub(crate) instances: Vec<Instance>,
    /// The primary's application launch (the task's attempt), sent once every
    /// coordination command has succeeded.
    pub(crate) app: Option<TaskLaunch>,
}

pub(crate) struct Instance {
    pub(crate) node_id: String,
    pub(crate) attempt: u64,
    pub(crate) coordinated: bool,
    /// `SubtaskInformation` as the API shows it.
    pub(crate) info: Map<String, Value>,
}

/// How an attempt's start concerns a multi-instance run.
pub(crate) enum Started {
    /// Not an instance of a run.
    Other,
    /// The primary's coordination started: the task is running (its attempt).
    Primary(u64),
    /// A subtask started; the task itself does not change.
    Subtask,
}

pub(crate) fn ts_ms(ms: i64) -> Value {
    json!(Timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now)))
}

pub(crate) fn set_state(info: &mut Map<String, Value>, state: &str, at: Value) {
    if let Some(prev) = info.get("state").cloned() {
        if prev.as_str() == Some(state) {
            return;
        }
        info.insert("previousState".into(), prev);
        if let Some(t) = info.get("stateTransitionTime").cloned() {
            info.insert("previousStateTransitionTime".into(), t);
        }
    }
    info.insert("state".into(), json!(state));
    info.insert("stateTransitionTime".into(), at);
}

/// Marks a subtask completed (if it is not already).
pub(crate) fn complete(info: &mut Map<String, Value>, failure: Option<Value>) {
    if info.get("state").and_then(Value::as_str) == Some("completed") {
        return;
    }
    let now = json!(Timestamp::now());
    info.entry("endTime").or_insert_with(|| now.clone());
    let failed = failure.is_some() || info.get("exitCode").and_then(Value::as_i64).is_some_and(|c| c != 0);
    if let Some(f) = failure {
        info.insert("failureInfo".into(), f);
    }
    info.insert("result".into(), json!(if failed { "failure" } else { "success" }));
    set_state(info, "completed", now);
}

pub(crate) fn failure_info(o: &TaskOutcome) -> Option<Value> {
    let code = match (&o.failure_code, o.exit_code) {
        (Some(c), _) => c.clone(),
        (None, Some(0)) => return None,
        (None, _) => "FailureExitCode".to_string(),
    };
    let message = o.failure_message.clone().unwrap_or_else(|| "The task process exited with an exit code representing a failure".into());
    Some(json!({
        "category": o.failure_category.clone().unwrap_or_else(|| "usererror".into()),
        "code": code,
        "message": message,
    }))
}

impl Runs {
    pub(crate) fn subtasks(run: &Run) -> Vec<Value> {
        run.instances.iter().skip(1).map(|i| Value::Object(i.info.clone())).collect()
    }

    /// Removes a run and its instance index.
    pub(crate) fn take(&mut self, task_attempt: u64) -> Option<Run> {
        let run = self.runs.remove(&task_attempt)?;
        for i in &run.instances {
            self.instance_of.remove(&i.attempt);
        }
        Some(run)
    }
}
