//! Jobs and tasks as the service fills them in: a job from its add
//! parameter (and its job manager task), a task from its add parameter, and
//! the rules on what may be added when. Used by the API's handlers and by the
//! job schedules that create jobs on time.

use crate::cluster::Cluster;
use store::tasks::NewTask;
use wire::enums::*;
use wire::models::*;
use wire::time::{Duration, Timestamp};
use wire::{Error, ErrorCode};

/// Why a job in `state` cannot be changed, if it cannot.
pub fn refuse_if_ending(state: JobState) -> Result<(), Error> {
    match state {
        JobState::Completed => Err(Error::new(ErrorCode::JobCompleted)),
        JobState::Terminating => Err(Error::new(ErrorCode::JobBeingTerminated)),
        JobState::Deleting => Err(Error::new(ErrorCode::JobBeingDeleted)),
        _ => Ok(()),
    }
}

pub fn default_constraints(c: Option<JobConstraints>) -> JobConstraints {
    let c = c.unwrap_or(JobConstraints { max_wall_clock_time: None, max_task_retry_count: None });
    JobConstraints {
        max_wall_clock_time: Some(c.max_wall_clock_time.unwrap_or(Duration::INFINITE)),
        max_task_retry_count: Some(c.max_task_retry_count.unwrap_or(0)),
    }
}

/// The job manager task as the task it becomes (same id and properties).
pub fn manager_task(app: &Cluster, job: &CloudJob) -> Result<Option<store::tasks::NewTask>, Error> {
    let Some(jm) = &job.job_manager_task else { return Ok(None) };
    let mut v = serde_json::to_value(jm).map_err(Error::internal)?;
    if let Some(m) = v.as_object_mut() {
        for k in ["killJobOnCompletion", "runExclusive", "allowLowPriorityNode"] {
            m.remove(k);
        }
    }
    let p: TaskAddParameter = wire::validate::from_value(v)?;
    let id = wire::validate::check_task(&p).map_err(|e| prefix_property(e, "jobManagerTask"))?;
    build_task(app, p, id, job).map(Some)
}

/// Names a nested property in an error from validating a part of a request.
pub fn prefix_property(mut e: Error, parent: &str) -> Error {
    for (k, v) in e.values.iter_mut() {
        if k == "PropertyName" {
            *v = format!("{parent}.{v}");
        }
    }
    e
}

/// Stores a new job and starts what watches it. Its pool need not exist
/// yet (its tasks wait for one of that id). A job manager task is added to
/// the job as its first task. A job with `onAllTasksComplete: terminatejob`
/// and no tasks ends at once ("if a Job contains no Tasks, then all Tasks
/// are considered complete", as the service documents).
pub async fn add(app: &Cluster, job: CloudJob) -> Result<store::Stored, Error> {
    let timed = job.constraints.max_wall_clock_time.is_some_and(|d| !d.is_infinite());
    let ends_with_tasks = job.on_all_tasks_complete == OnAllTasksComplete::TerminateJob;
    let manager = manager_task(app, &job)?;
    let id = job.id.clone();
    // An auto pool exists before its job: the job is never without its pool.
    let auto = match &job.pool_info.auto_pool_specification {
        Some(spec) => Some(crate::autopool::parse(spec)?),
        None => None,
    };
    if let Some(auto) = &auto {
        app.make_auto_pool(&job, auto).await?;
    }
    let stored = match app.store.create_job(job.clone()).await {
        Ok(s) => s,
        Err(e) => {
            // Not stored (e.g. the id is taken): its own pool goes again.
            app.job_ended_auto_pool(&job).await;
            return Err(e);
        }
    };
    if let Some(m) = manager {
        app.store.add_tasks(&id, vec![m], |_| Ok(())).await?;
    }
    if timed {
        app.lifecycle.wake(); // its wall clock is now running
    }
    if ends_with_tasks {
        app.lifecycle.job_changed(&id);
    }
    app.wake.notify_one();
    Ok(stored)
}

/// A job as the service fills it in from a validated request.
pub fn new_job(app: &Cluster, id: String, p: JobAddParameter) -> CloudJob {
    let (now, etag) = app.store.etags.next();
    let pool_info = p.pool_info.unwrap_or(PoolInformation { pool_id: None, auto_pool_specification: None });
    CloudJob {
        id,
        display_name: p.display_name,
        uses_task_dependencies: p.uses_task_dependencies.unwrap_or(false),
        e_tag: etag,
        last_modified: now,
        creation_time: now,
        state: JobState::Active,
        state_transition_time: now,
        previous_state: None,
        previous_state_transition_time: None,
        priority: p.priority.unwrap_or(0),
        allow_task_preemption: p.allow_task_preemption.unwrap_or(false),
        max_parallel_tasks: p.max_parallel_tasks.unwrap_or(-1),
        constraints: default_constraints(p.constraints),
        job_manager_task: p.job_manager_task,
        job_preparation_task: p.job_preparation_task,
        job_release_task: p.job_release_task,
        common_environment_settings: p.common_environment_settings,
        execution_info: JobExecutionInformation {
            start_time: now,
            end_time: None,
            // An auto pool's id is chosen now (see `autopool`).
            pool_id: pool_info.pool_id.clone().or_else(|| {
                let auto = pool_info.auto_pool_specification.as_ref().and_then(|s| crate::autopool::parse(s).ok())?;
                Some(crate::autopool::job_pool_id(auto.prefix.as_deref()))
            }),
            scheduling_error: None,
            terminate_reason: None,
        },
        pool_info,
        on_all_tasks_complete: p.on_all_tasks_complete.unwrap_or(OnAllTasksComplete::NoAction),
        on_task_failure: p.on_task_failure.unwrap_or(OnTaskFailure::NoAction),
        network_configuration: p.network_configuration,
        metadata: p.metadata,
        pending_disable: None,
    }
}

/// Task retention when the client sets none.
pub fn default_retention() -> Duration {
    Duration::from_days(7)
}

pub fn full_constraints(c: Option<TaskConstraints>, job: &CloudJob) -> TaskConstraints {
    let c = c.unwrap_or_default();
    TaskConstraints {
        max_wall_clock_time: Some(c.max_wall_clock_time.unwrap_or(Duration::INFINITE)),
        retention_time: Some(c.retention_time.unwrap_or_else(default_retention)),
        max_task_retry_count: Some(c.max_task_retry_count.or(job.constraints.max_task_retry_count).unwrap_or(0)),
    }
}

pub fn full_identity(u: Option<UserIdentity>) -> UserIdentity {
    match u {
        Some(UserIdentity { username: Some(name), .. }) => UserIdentity { username: Some(name), auto_user: None },
        other => {
            let auto = other.and_then(|u| u.auto_user);
            UserIdentity {
                username: None,
                auto_user: Some(AutoUserSpecification {
                    scope: Some(auto.as_ref().and_then(|a| a.scope).unwrap_or(AutoUserScope::Pool)),
                    elevation_level: Some(auto.as_ref().and_then(|a| a.elevation_level).unwrap_or(ElevationLevel::NonAdmin)),
                }),
            }
        }
    }
}

/// What the service refuses in `dependsOn` and `exitConditions`: a range
/// whose start is after its end; a `dependencyAction` on a job that does not
/// use dependencies; a `jobAction` on a job whose `onTaskFailure` is
/// `noaction` (400 `InvalidPropertyValue`, as the reference says).
pub fn check_dependencies_and_exit_options(p: &TaskAddParameter, job: &CloudJob) -> Result<(), Error> {
    for r in p.depends_on.iter().flat_map(|d| d.task_id_ranges.iter().flatten()) {
        if r.start > r.end {
            return Err(Error::invalid_property("taskIdRanges", "The start of a task id range must not be after its end."));
        }
    }
    let Some(e) = &p.exit_conditions else { return Ok(()) };
    let all = e
        .exit_codes
        .iter()
        .flatten()
        .map(|m| &m.exit_options)
        .chain(e.exit_code_ranges.iter().flatten().map(|m| &m.exit_options))
        .chain(e.pre_processing_error.iter())
        .chain(e.file_upload_error.iter())
        .chain(e.default.iter());
    for o in all {
        if o.dependency_action.is_some() && !job.uses_task_dependencies {
            return Err(Error::invalid_property(
                "dependencyAction",
                "A dependency action needs a job that uses task dependencies (usesTaskDependencies).",
            ));
        }
        if o.job_action.is_some() && job.on_task_failure == OnTaskFailure::NoAction {
            return Err(Error::invalid_property(
                "jobAction",
                "A job action needs a job whose onTaskFailure is performexitoptionsjobaction.",
            ));
        }
    }
    for r in e.exit_code_ranges.iter().flatten() {
        if r.start > r.end {
            return Err(Error::invalid_property("exitCodeRanges", "The start of an exit code range must not be after its end."));
        }
    }
    Ok(())
}

/// The service's documented dependency limit: the task ids a task depends
/// on total at most 64,000 characters. openbatch enforces it only with
/// `--strict-limits`; otherwise the request body size is the only bound
/// (dependency lists are stored once and counted, never expanded).
pub const MAX_DEPENDENCY_ID_CHARS: usize = 64_000;

pub fn check_service_limits(p: &TaskAddParameter) -> Result<(), Error> {
    let chars: usize = p.depends_on.iter().flat_map(|d| d.task_ids.iter().flatten()).map(|id| id.chars().count()).sum();
    if chars > MAX_DEPENDENCY_ID_CHARS {
        return Err(Error::new(ErrorCode::TaskDependencyListTooLong));
    }
    Ok(())
}

/// Builds a stored task from a validated body, filling in what the service fills in.
pub fn build_task(app: &Cluster, p: TaskAddParameter, id: String, job: &CloudJob) -> Result<NewTask, Error> {
    if p.depends_on.is_some() && !job.uses_task_dependencies {
        return Err(Error::new(ErrorCode::TaskDependenciesNotSpecifiedOnJob));
    }
    check_dependencies_and_exit_options(&p, job)?;
    if app.config.strict_limits {
        check_service_limits(&p)?;
    }
    let (now, etag) = app.store.etags.next();
    let mut multi = p.multi_instance_settings;
    if let Some(m) = multi.as_mut() {
        if *m.number_of_instances.get_or_insert(1) < 1 {
            return Err(Error::invalid_property("numberOfInstances", "A multi-instance task needs at least one instance."));
        }
        if m.coordination_command_line.trim().is_empty() {
            return Err(Error::invalid_property("coordinationCommandLine", "A multi-instance task needs a coordination command line."));
        }
        if p.required_slots.is_some_and(|s| s != 1) {
            return Err(Error::invalid_property(
                "requiredSlots",
                "A multi-instance task takes one slot on each of its nodes: requiredSlots must be 1.",
            ));
        }
    }
    NewTask::new(CloudTask {
        id,
        display_name: p.display_name,
        e_tag: etag,
        last_modified: now,
        creation_time: now,
        exit_conditions: p.exit_conditions,
        state: TaskState::Active,
        state_transition_time: now,
        previous_state: None,
        previous_state_transition_time: None,
        command_line: p.command_line.unwrap_or_default(),
        container_settings: p.container_settings,
        resource_files: p.resource_files,
        output_files: p.output_files,
        environment_settings: p.environment_settings,
        affinity_info: p.affinity_info,
        constraints: full_constraints(p.constraints, job),
        required_slots: p.required_slots.unwrap_or(1),
        user_identity: full_identity(p.user_identity),
        execution_info: TaskExecutionInformation::default(),
        node_info: None,
        multi_instance_settings: multi,
        stats: None,
        depends_on: p.depends_on,
        application_package_references: p.application_package_references,
        authentication_token_settings: p.authentication_token_settings,
        attempt: None,
        node: None,
        cleanup_at: None,
        files_cleaned: false,
        subtasks: None,
    })
}

/// Moves a task to `completed` with the given failure.
pub fn complete_with_failure(task: &mut CloudTask, now: Timestamp, code: &str, message: &str) {
    let prev = task.state;
    task.previous_state = Some(prev);
    task.previous_state_transition_time = Some(task.state_transition_time);
    task.state = TaskState::Completed;
    task.state_transition_time = now;
    let e = &mut task.execution_info;
    e.end_time = Some(now);
    e.result = Some(ExecutionResult::Failure);
    e.failure_info = Some(FailureInformation {
        category: ErrorCategory::UserError,
        code: Some(code.to_string()),
        message: Some(message.to_string()),
        details: None,
    });
    if task.node_info.is_some() {
        task.cleanup_at = crate::execution::retention_deadline(task, now);
    }
}
