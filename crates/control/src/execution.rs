//! What happens to a task when an attempt starts and ends: the state
//! machine of execution, as pure functions over the task document, with
//! `now` passed in. The scheduler and the agent hub call these inside the
//! store's transactions.

use proto::TaskOutcome;
use wire::enums::{ErrorCategory, ExecutionResult, TaskState};
use wire::models::{CloudTask, FailureInformation, TaskExecutionInformation, TaskStatistics};
use wire::time::{Duration, Timestamp};

/// The job manager task of a job, when `task` is it.
pub fn manager_of<'a>(job: &'a wire::models::CloudJob, task: &str) -> Option<&'a wire::models::JobManagerTask> {
    job.job_manager_task.as_ref().filter(|m| m.id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(task)))
}

/// Moves a task to `state`, recording where it came from.
pub fn transition(task: &mut CloudTask, state: TaskState, now: Timestamp) {
    if task.state != state {
        // Preparing → running: the time since the task entered `active`
        // (its previous state) is its dispatch latency.
        if state == TaskState::Running && task.state == TaskState::Preparing && task.previous_state == Some(TaskState::Active) {
            if let (Some(ready), None) = (task.previous_state_transition_time, &task.depends_on) {
                let secs = (now.0 - ready.0).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                crate::metrics::DISPATCH_SECONDS.observe(secs);
            }
        }
        task.previous_state = Some(task.state);
        task.previous_state_transition_time = Some(task.state_transition_time);
        task.state = state;
        task.state_transition_time = now;
    }
}

/// Whether a failed attempt may be retried under the task's constraints.
pub fn may_retry(task: &CloudTask) -> bool {
    match task.constraints.max_task_retry_count.unwrap_or(0) {
        -1 => true,
        n => task.execution_info.retry_count < n,
    }
}

fn ms_to_ts(ms: i64) -> Timestamp {
    Timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now))
}

fn us(v: u64) -> Duration {
    Duration((v as i64).saturating_mul(10))
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What the task looks like after an attempt ended. Returns true when the
/// task completed (false: it went back to `active` for a retry).
pub fn apply_outcome(task: &mut CloudTask, o: &TaskOutcome, url: String, now: Timestamp) -> bool {
    let start = ms_to_ts(o.start_time_ms);
    let end = ms_to_ts(o.end_time_ms);
    // A short attempt can end before its `running` state was recorded: the
    // agent's start time is when it began running.
    if task.state == TaskState::Preparing {
        transition(task, TaskState::Running, start);
    }
    let wall = match o.wall_us {
        Some(us) => Duration((us as i64).saturating_mul(10)),
        None => Duration((o.end_time_ms - o.start_time_ms).max(0) * 10_000),
    };
    // Statistics accumulate over the task's attempts.
    let prev = task.stats.take();
    let add = |a: Duration, b: Duration| Duration(a.0.saturating_add(b.0));
    task.stats = Some(TaskStatistics {
        url,
        start_time: prev.as_ref().map(|p| p.start_time).unwrap_or(start),
        last_update_time: now,
        user_cpu_time: add(prev.as_ref().map(|p| p.user_cpu_time).unwrap_or(Duration::ZERO), us(o.user_cpu_us)),
        kernel_cpu_time: add(prev.as_ref().map(|p| p.kernel_cpu_time).unwrap_or(Duration::ZERO), us(o.kernel_cpu_us)),
        wall_clock_time: add(prev.as_ref().map(|p| p.wall_clock_time).unwrap_or(Duration::ZERO), wall),
        read_iops: prev.as_ref().map(|p| p.read_iops).unwrap_or(0) + o.read_ops as i64,
        write_iops: prev.as_ref().map(|p| p.write_iops).unwrap_or(0) + o.write_ops as i64,
        read_io_gib: prev.as_ref().map(|p| p.read_io_gib).unwrap_or(0.0) + o.read_bytes as f64 / GIB,
        write_io_gib: prev.as_ref().map(|p| p.write_io_gib).unwrap_or(0.0) + o.write_bytes as f64 / GIB,
        wait_time: prev
            .as_ref()
            .map(|p| p.wait_time)
            .unwrap_or_else(|| Duration(((start.0 - task.creation_time.0).num_milliseconds().max(0)) * 10_000)),
    });
    let e = &mut task.execution_info;
    e.start_time = Some(start);
    e.end_time = Some(end);
    e.exit_code = o.exit_code;
    e.container_info = o.container_id.as_ref().map(|id| wire::models::ContainerExecutionInformation {
        container_id: Some(id.clone()),
        state: Some("exited".into()),
        error: None,
    });
    let failure = match (&o.failure_code, o.exit_code) {
        (Some(code), _) => Some(FailureInformation {
            category: match o.failure_category.as_deref() {
                Some("servererror") => ErrorCategory::ServerError,
                _ => ErrorCategory::UserError,
            },
            code: Some(code.clone()),
            message: o.failure_message.clone(),
            details: None,
        }),
        (None, Some(0)) => None,
        (None, Some(_)) => Some(FailureInformation {
            category: ErrorCategory::UserError,
            code: Some("FailureExitCode".into()),
            message: Some("The task process exited with an unexpected exit code".into()),
            details: None,
        }),
        (None, None) => Some(FailureInformation {
            category: ErrorCategory::ServerError,
            code: Some("Unknown".into()),
            message: Some("The task ended without an exit code".into()),
            details: None,
        }),
    };
    let wall_clock_expired = o.failure_code.as_deref() == Some("MaxWallClockTimeExpiry");
    task.attempt = None;
    if failure.is_some() && !wall_clock_expired && may_retry(task) {
        let e = &mut task.execution_info;
        e.retry_count += 1;
        e.last_retry_time = Some(now);
        e.failure_info = failure;
        e.result = Some(ExecutionResult::Failure);
        task.node = None;
        transition(task, TaskState::Active, now);
        return false;
    }
    let e = &mut task.execution_info;
    e.result = Some(if failure.is_some() { ExecutionResult::Failure } else { ExecutionResult::Success });
    e.failure_info = failure;
    task.node = None;
    task.cleanup_at = retention_deadline(task, end);
    transition(task, TaskState::Completed, now);
    true
}

/// When the task directory of a run that ended at `end` is to be deleted.
pub fn retention_deadline(task: &CloudTask, end: Timestamp) -> Option<Timestamp> {
    let r = task.constraints.retention_time.unwrap_or(Duration::from_days(7));
    if r.is_infinite() {
        return None;
    }
    let d = chrono::Duration::milliseconds((r.to_std().as_millis()).min(i64::MAX as u128) as i64);
    end.0.checked_add_signed(d).map(Timestamp)
}

/// A task whose attempt was lost to a recovery operation (node reboot,
/// reimage, removal, or lost contact) goes back to `active`: requeueCount
/// grows, retryCount does not — even when maxTaskRetryCount is 0.
pub fn requeue(task: &mut CloudTask, now: Timestamp) {
    task.attempt = None;
    task.node = None;
    task.execution_info.requeue_count += 1;
    task.execution_info.last_requeue_time = Some(now);
    transition(task, TaskState::Active, now);
}

/// Clears what a previous run left, for reactivation.
pub fn reset_execution(task: &mut CloudTask) {
    task.execution_info = TaskExecutionInformation {
        requeue_count: task.execution_info.requeue_count,
        last_requeue_time: task.execution_info.last_requeue_time,
        ..Default::default()
    };
    task.node_info = None;
    task.attempt = None;
    task.node = None;
    task.cleanup_at = None;
    task.files_cleaned = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::models::*;

    fn task(max_retries: i32) -> CloudTask {
        let now = Timestamp::now();
        CloudTask {
            id: "t".into(),
            display_name: None,
            e_tag: "0x1".into(),
            last_modified: now,
            creation_time: now,
            exit_conditions: None,
            state: TaskState::Running,
            state_transition_time: now,
            previous_state: None,
            previous_state_transition_time: None,
            command_line: "x".into(),
            container_settings: None,
            resource_files: None,
            output_files: None,
            environment_settings: None,
            affinity_info: None,
            constraints: TaskConstraints { max_wall_clock_time: None, retention_time: None, max_task_retry_count: Some(max_retries) },
            required_slots: 1,
            user_identity: UserIdentity { username: None, auto_user: None },
            execution_info: TaskExecutionInformation::default(),
            node_info: None,
            multi_instance_settings: None,
            stats: None,
            depends_on: None,
            application_package_references: None,
            authentication_token_settings: None,
            attempt: Some(7),
            node: Some("n".into()),
            cleanup_at: None,
            files_cleaned: false,
            subtasks: None,
        }
    }

    fn outcome(exit: Option<i32>, code: Option<&str>) -> TaskOutcome {
        TaskOutcome {
            attempt: 7,
            exit_code: exit,
            failure_code: code.map(str::to_string),
            failure_message: None,
            failure_category: None,
            pre_processing_error: false,
            file_upload_error: false,
            container_id: None,
            start_time_ms: 1_700_000_000_000,
            end_time_ms: 1_700_000_001_500,
            wall_us: None,
            user_cpu_us: 1_000,
            kernel_cpu_us: 2_000,
            read_bytes: 0,
            write_bytes: 4096,
            read_ops: 0,
            write_ops: 8,
        }
    }

    #[test]
    fn success_completes() {
        let mut t = task(3);
        t.state = TaskState::Preparing;
        assert!(apply_outcome(&mut t, &outcome(Some(0), None), "u".into(), Timestamp::now()));
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.previous_state, Some(TaskState::Running), "it ran, even if `running` was never written");
        assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
        assert!(t.execution_info.failure_info.is_none());
        let s = t.stats.unwrap();
        assert_eq!(s.wall_clock_time, Duration(15_000_000));
        assert_eq!(s.user_cpu_time, Duration(10_000));
        assert_eq!(s.write_iops, 8);
        assert!(t.attempt.is_none() && t.node.is_none());
    }

    #[test]
    fn failures_retry_until_the_limit() {
        let mut t = task(2);
        for expected_retries in 1..=2 {
            assert!(!apply_outcome(&mut t, &outcome(Some(1), None), "u".into(), Timestamp::now()));
            assert_eq!(t.state, TaskState::Active);
            assert_eq!(t.execution_info.retry_count, expected_retries);
            t.state = TaskState::Running;
        }
        assert!(apply_outcome(&mut t, &outcome(Some(1), None), "u".into(), Timestamp::now()));
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
        assert_eq!(t.execution_info.failure_info.as_ref().unwrap().code.as_deref(), Some("FailureExitCode"));
        assert_eq!(t.execution_info.exit_code, Some(1));
    }

    #[test]
    fn unlimited_retries_and_no_retry_on_timeout() {
        let mut t = task(-1);
        t.execution_info.retry_count = 1000;
        assert!(!apply_outcome(&mut t, &outcome(Some(2), None), "u".into(), Timestamp::now()));
        let mut t = task(5);
        assert!(apply_outcome(&mut t, &outcome(Some(143), Some("MaxWallClockTimeExpiry")), "u".into(), Timestamp::now()));
        assert_eq!(t.execution_info.failure_info.unwrap().code.as_deref(), Some("MaxWallClockTimeExpiry"));
    }

    #[test]
    fn missing_program_is_a_user_error() {
        let mut t = task(0);
        assert!(apply_outcome(&mut t, &outcome(None, Some("CommandProgramNotFound")), "u".into(), Timestamp::now()));
        let f = t.execution_info.failure_info.unwrap();
        assert_eq!(f.category, ErrorCategory::UserError);
        assert_eq!(f.code.as_deref(), Some("CommandProgramNotFound"));
    }

    #[test]
    fn requeue_counts_separately() {
        let mut t = task(0);
        requeue(&mut t, Timestamp::now());
        assert_eq!(t.state, TaskState::Active);
        assert_eq!((t.execution_info.retry_count, t.execution_info.requeue_count), (0, 1));
        assert!(t.execution_info.last_requeue_time.is_some());
    }
}
