//! Which properties each resource can be filtered on, and where they live:
//! an indexed column, or a path into the stored wire document.

use super::filter_sql::{Field, FieldResolver, FieldType};

fn col(sql: &'static str, ty: FieldType) -> Option<Field> {
    Some(Field::Column { sql, ty, lower_literal: ty == FieldType::Enum })
}

fn json(ty: FieldType) -> Option<Field> {
    Some(Field::Json { ty })
}

/// Properties every resource row has as columns.
fn common(p: &[&str]) -> Option<Field> {
    use FieldType::*;
    match p {
        ["id"] => col("id", Text),
        ["state"] => col("state", Enum),
        ["creationTime"] => col("creation_time", DateTime),
        ["lastModified"] => col("last_modified", DateTime),
        ["eTag"] => col("etag", Text),
        _ => None,
    }
}

/// Filterable job properties.
pub struct JobFields;

impl FieldResolver for JobFields {
    fn resolve(&self, path: &[String]) -> Option<Field> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(f) = common(&p) {
            return Some(f);
        }
        use FieldType::*;
        match p.as_slice() {
            ["displayName"] | ["poolInfo", "poolId"] | ["executionInfo", "poolId"] | ["executionInfo", "terminateReason"] => json(Text),
            ["previousState"] | ["onAllTasksComplete"] | ["onTaskFailure"] => json(Enum),
            ["stateTransitionTime"] | ["previousStateTransitionTime"] | ["executionInfo", "startTime"] | ["executionInfo", "endTime"] => {
                json(DateTime)
            }
            ["priority"] | ["maxParallelTasks"] | ["constraints", "maxTaskRetryCount"] => json(Int),
            ["usesTaskDependencies"] | ["allowTaskPreemption"] => json(Bool),
            ["executionInfo", "schedulingError", "code"] => json(Text),
            ["executionInfo", "schedulingError", "category"] => json(Enum),
            _ => None,
        }
    }
}

/// Filterable task properties.
pub struct TaskFields;

impl FieldResolver for TaskFields {
    fn resolve(&self, path: &[String]) -> Option<Field> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(f) = common(&p) {
            return Some(f);
        }
        use FieldType::*;
        match p.as_slice() {
            ["requiredSlots"] => col("slots", Int),
            ["executionInfo", "result"] => col("result", Enum),
            ["executionInfo", "retryCount"] => col("retries", Int),
            ["executionInfo", "exitCode"] => col("exit_code", Int),
            ["displayName"] | ["commandLine"] | ["affinityInfo", "affinityId"] => json(Text),
            ["nodeInfo", "nodeId"] | ["nodeInfo", "poolId"] | ["nodeInfo", "affinityId"] => json(Text),
            ["executionInfo", "failureInfo", "code"] => json(Text),
            ["executionInfo", "failureInfo", "category"] | ["previousState"] => json(Enum),
            ["stateTransitionTime"] | ["previousStateTransitionTime"] => json(DateTime),
            ["executionInfo", "startTime"] | ["executionInfo", "endTime"] => json(DateTime),
            ["executionInfo", "lastRetryTime"] | ["executionInfo", "lastRequeueTime"] => json(DateTime),
            ["executionInfo", "requeueCount"] => json(Int),
            ["constraints", "maxTaskRetryCount"] | ["multiInstanceSettings", "numberOfInstances"] => json(Int),
            _ => None,
        }
    }
}

/// Filterable pool properties.
pub struct PoolFields;

impl FieldResolver for PoolFields {
    fn resolve(&self, path: &[String]) -> Option<Field> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(f) = common(&p) {
            return Some(f);
        }
        use FieldType::*;
        match p.as_slice() {
            ["displayName"] | ["vmSize"] => json(Text),
            ["allocationState"] => json(Enum),
            ["stateTransitionTime"] | ["allocationStateTransitionTime"] => json(DateTime),
            ["currentDedicatedNodes"]
            | ["currentLowPriorityNodes"]
            | ["targetDedicatedNodes"]
            | ["targetLowPriorityNodes"]
            | ["taskSlotsPerNode"] => json(Int),
            ["enableAutoScale"] | ["enableInterNodeCommunication"] => json(Bool),
            _ => None,
        }
    }
}

/// Job schedule properties.
pub struct ScheduleFields;

impl FieldResolver for ScheduleFields {
    fn resolve(&self, path: &[String]) -> Option<Field> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(f) = common(&p) {
            return Some(f);
        }
        use FieldType::*;
        match p.as_slice() {
            ["displayName"] | ["jobSpecification", "poolInfo", "poolId"] | ["executionInfo", "recentJob", "id"] => json(Text),
            ["stateTransitionTime"] | ["executionInfo", "nextRunTime"] | ["executionInfo", "endTime"] => json(DateTime),
            ["jobSpecification", "priority"] => json(Int),
            _ => None,
        }
    }
}

/// Filterable certificate properties: the thumbprint is the row's id.
pub struct CertificateFields;

impl FieldResolver for CertificateFields {
    fn resolve(&self, path: &[String]) -> Option<Field> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        use FieldType::*;
        match p.as_slice() {
            ["thumbprint"] => col("id", Text),
            ["state"] => col("state", Enum),
            ["thumbprintAlgorithm"] => json(Text),
            ["previousState"] => json(Enum),
            ["stateTransitionTime"] | ["previousStateTransitionTime"] => json(DateTime),
            _ => None,
        }
    }
}
