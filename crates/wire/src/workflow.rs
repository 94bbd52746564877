//! The rules Batch applies when a task completes: which of its exit
//! conditions matches, with the service's defaults, and whether it satisfies
//! the tasks that depend on it. Pure functions over the task document.

use crate::enums::{DependencyAction, JobAction, TaskState};
use crate::models::{CloudTask, ExitOptions, TaskDependencies};

/// A failure code from uploading output files (a completed process whose
/// files could not be saved): the service's `FileUpload…` codes
/// (`FileUploadContainerNotFound`, `FileUploadMiscError`, ...).
pub fn is_upload_failure(code: &str) -> bool {
    code.starts_with("FileUpload")
}

#[cfg(test)]
const FILE_UPLOAD_FAILURE: &str = "FileUploadMiscError";

/// What a completed task asks of its job and of its dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub job_action: JobAction,
    pub dependency_action: DependencyAction,
    /// The options came from the task's own exit conditions (not only the
    /// service's defaults).
    pub explicit: bool,
}

/// How the task ended, as the exit conditions distinguish it.
enum Ending {
    Code(i32),
    CodeThenUploadFailed(i32),
    PreProcessingError,
}

fn ending(t: &CloudTask) -> Ending {
    let e = &t.execution_info;
    let upload_failed = e.failure_info.as_ref().and_then(|f| f.code.as_deref()).is_some_and(is_upload_failure);
    match e.exit_code {
        Some(c) if upload_failed => Ending::CodeThenUploadFailed(c),
        Some(c) => Ending::Code(c),
        None => Ending::PreProcessingError,
    }
}

/// The exit options that apply to a completed task; `None` while it is not
/// completed. The service's rules: an exit code listed in `exitCodes`, else
/// in `exitCodeRanges`, takes precedence (also over a later file upload
/// error); a task that could not start uses `preProcessingError`; a file
/// upload error uses `fileUploadError`; anything else that failed uses
/// `default`. Exit code 0 has non-default behaviour only when listed. A
/// missing `jobAction` means none for exit code 0 and terminate otherwise; a
/// missing `dependencyAction` means satisfy for exit code 0 and block
/// otherwise.
pub fn outcome(t: &CloudTask) -> Option<Outcome> {
    if t.state != TaskState::Completed {
        return None;
    }
    let conditions = t.exit_conditions.as_ref();
    let by_code = |c: i32| -> Option<&ExitOptions> {
        let c_ = conditions?;
        c_.exit_codes
            .iter()
            .flatten()
            .find(|m| m.code == c)
            .map(|m| &m.exit_options)
            .or_else(|| c_.exit_code_ranges.iter().flatten().find(|r| r.start <= c && c <= r.end).map(|r| &r.exit_options))
    };
    let default = conditions.and_then(|c| c.default.as_ref());
    let (options, success) = match ending(t) {
        Ending::Code(c) => match by_code(c) {
            Some(o) => (Some(o), c == 0),
            None if c == 0 => (None, true),
            None => (default, false),
        },
        Ending::CodeThenUploadFailed(c) => match by_code(c) {
            Some(o) => (Some(o), false),
            None => (conditions.and_then(|c| c.file_upload_error.as_ref()).or(default), false),
        },
        Ending::PreProcessingError => (conditions.and_then(|c| c.pre_processing_error.as_ref()).or(default), false),
    };
    let (job_default, dep_default) =
        if success { (JobAction::None, DependencyAction::Satisfy) } else { (JobAction::Terminate, DependencyAction::Block) };
    Some(Outcome {
        job_action: options.and_then(|o| o.job_action).unwrap_or(job_default),
        dependency_action: options.and_then(|o| o.dependency_action).unwrap_or(dep_default),
        explicit: options.is_some(),
    })
}

/// A completed task whose dependents may run.
pub fn satisfies_dependents(t: &CloudTask) -> bool {
    outcome(t).is_some_and(|o| o.dependency_action == DependencyAction::Satisfy)
}

/// The integer a task id stands for in `taskIdRanges`: only the canonical
/// decimal form ("7", not "07" or "+7").
pub fn range_id(id: &str) -> Option<i64> {
    let canonical = id == "0" || (!id.is_empty() && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| id.parse().ok()).flatten()
}

/// A job's directory on a node, relative to the node root: `workitems/{job}/job-1`,
/// and for the jobs of a job schedule (ids `{schedule}:job-{n}`)
/// `workitems/{schedule}/job-{n}`, as the service lays them out.
pub fn job_dir(job_id: &str) -> String {
    match job_id.split_once(':') {
        Some((schedule, run)) => format!("workitems/{schedule}/{run}"),
        None => format!("workitems/{job_id}/job-1"),
    }
}

/// Every listed dependency, as (task ids, inclusive ranges).
pub fn dependencies(d: &TaskDependencies) -> (Vec<&str>, Vec<(i64, i64)>) {
    let ids = d.task_ids.iter().flatten().map(String::as_str).collect();
    let ranges = d.task_id_ranges.iter().flatten().map(|r| (r.start as i64, r.end as i64)).collect();
    (ids, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enums::{ErrorCategory, ExecutionResult};
    use crate::models::{ExitCodeMapping, ExitCodeRangeMapping, ExitConditions, FailureInformation};

    fn completed(exit: Option<i32>, failure: Option<&str>, conditions: Option<ExitConditions>) -> CloudTask {
        let now = "2026-01-01T00:00:00Z";
        let mut t: CloudTask = serde_json::from_value(serde_json::json!({
            "id": "t", "commandLine": "x", "eTag": "0x1", "lastModified": now, "creationTime": now,
            "state": "active", "stateTransitionTime": now, "constraints": {}, "requiredSlots": 1,
            "userIdentity": {}, "executionInfo": {"retryCount": 0, "requeueCount": 0}
        }))
        .unwrap();
        t.state = TaskState::Completed;
        t.execution_info.exit_code = exit;
        t.execution_info.failure_info =
            failure.map(|c| FailureInformation { category: ErrorCategory::UserError, code: Some(c.into()), message: None, details: None });
        t.execution_info.result = Some(if failure.is_some() { ExecutionResult::Failure } else { ExecutionResult::Success });
        t.exit_conditions = conditions;
        t
    }

    fn opts(job: Option<JobAction>, dep: Option<DependencyAction>) -> ExitOptions {
        ExitOptions { job_action: job, dependency_action: dep }
    }

    fn conditions() -> ExitConditions {
        ExitConditions {
            exit_codes: Some(vec![
                ExitCodeMapping { code: 0, exit_options: opts(None, Some(DependencyAction::Block)) },
                ExitCodeMapping { code: 3, exit_options: opts(Some(JobAction::None), Some(DependencyAction::Satisfy)) },
            ]),
            exit_code_ranges: Some(vec![ExitCodeRangeMapping { start: 3, end: 10, exit_options: opts(Some(JobAction::Disable), None) }]),
            pre_processing_error: Some(opts(Some(JobAction::Disable), Some(DependencyAction::Satisfy))),
            file_upload_error: Some(opts(None, Some(DependencyAction::Satisfy))),
            default: Some(opts(Some(JobAction::None), None)),
        }
    }

    #[test]
    fn defaults_without_exit_conditions() {
        let o = outcome(&completed(Some(0), None, None)).unwrap();
        assert_eq!((o.job_action, o.dependency_action, o.explicit), (JobAction::None, DependencyAction::Satisfy, false));
        let o = outcome(&completed(Some(2), Some("FailureExitCode"), None)).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::Terminate, DependencyAction::Block));
        let o = outcome(&completed(None, Some("CommandProgramNotFound"), None)).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::Terminate, DependencyAction::Block));
    }

    #[test]
    fn codes_before_ranges_before_default() {
        let c = Some(conditions());
        // 3 is listed and wins over the range 3..10.
        let o = outcome(&completed(Some(3), Some("FailureExitCode"), c.clone())).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::None, DependencyAction::Satisfy));
        // 5 is in the range; its dependency action defaults to block (non-zero).
        let o = outcome(&completed(Some(5), Some("FailureExitCode"), c.clone())).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::Disable, DependencyAction::Block));
        // 11 falls to `default`, whose missing dependency action is block.
        let o = outcome(&completed(Some(11), Some("FailureExitCode"), c.clone())).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::None, DependencyAction::Block));
        // 0 listed explicitly: block; job action missing → none for 0.
        let o = outcome(&completed(Some(0), None, c.clone())).unwrap();
        assert_eq!((o.job_action, o.dependency_action, o.explicit), (JobAction::None, DependencyAction::Block, true));
    }

    #[test]
    fn success_ignores_default_and_start_failures_use_pre_processing() {
        let mut c = conditions();
        c.exit_codes = None;
        let o = outcome(&completed(Some(0), None, Some(c.clone()))).unwrap();
        assert_eq!((o.job_action, o.dependency_action, o.explicit), (JobAction::None, DependencyAction::Satisfy, false));
        let o = outcome(&completed(None, Some("CommandProgramNotFound"), Some(c.clone()))).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::Disable, DependencyAction::Satisfy));
        c.pre_processing_error = None;
        let o = outcome(&completed(None, Some("CommandProgramNotFound"), Some(c))).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::None, DependencyAction::Block), "falls to default");
    }

    #[test]
    fn upload_errors_yield_to_listed_codes() {
        let c = Some(conditions());
        let o = outcome(&completed(Some(0), Some(FILE_UPLOAD_FAILURE), c.clone())).unwrap();
        assert_eq!(o.dependency_action, DependencyAction::Block, "code 0 is listed: its options win");
        let o = outcome(&completed(Some(20), Some(FILE_UPLOAD_FAILURE), c)).unwrap();
        assert_eq!((o.job_action, o.dependency_action), (JobAction::Terminate, DependencyAction::Satisfy));
    }

    #[test]
    fn only_completed_tasks_have_an_outcome() {
        let mut t = completed(Some(0), None, None);
        t.state = TaskState::Running;
        assert!(outcome(&t).is_none());
        assert!(!satisfies_dependents(&t));
    }

    #[test]
    fn job_directories() {
        assert_eq!(job_dir("j1"), "workitems/j1/job-1");
        assert_eq!(job_dir("nightly:job-12"), "workitems/nightly/job-12");
    }

    #[test]
    fn range_ids_are_canonical_integers() {
        assert_eq!(range_id("0"), Some(0));
        assert_eq!(range_id("42"), Some(42));
        assert_eq!(range_id("042"), None);
        assert_eq!(range_id("+4"), None);
        assert_eq!(range_id("4a"), None);
        assert_eq!(range_id(""), None);
        assert_eq!(range_id("99999999999999999999"), None);
    }
}
