//! A job's preparation and release on one node (see `crate::jobprep`).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepState {
    Running,
    Succeeded,
    Failed,
}

/// One job's preparation (and later release) on one node.
#[derive(Debug, Clone)]
pub struct PrepRun {
    pub job_id: String,
    pub state: PrepState,
    pub attempt: Option<u64>,
    pub retries: i32,
    /// `jobPreparationTaskExecutionInfo`.
    pub info: Map<String, Value>,
    pub release_attempt: Option<u64>,
    /// `jobReleaseTaskExecutionInfo`.
    pub release_info: Option<Map<String, Value>>,
}
