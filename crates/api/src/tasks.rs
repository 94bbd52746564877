//! Task operations.

use crate::http::{encode_segment, Ctx, Reply};
use crate::jobs::{job_path, refuse_if_ending};
use crate::render::{self, apply_select, list_options, resource, select_expand};
use crate::App;
use serde_json::Value;
use store::tasks::NewTask;
use wire::enums::*;
use wire::models::*;
use wire::time::{Duration, Timestamp};
use wire::validate::{check_task, check_task_update, parse_body};
use wire::{Error, ErrorCode};

/// The most tasks one addtaskcollection request may carry.
pub const MAX_COLLECTION: usize = 100;
/// A collection body must be smaller than this.
pub const MAX_COLLECTION_BYTES: usize = 1024 * 1024;

pub fn task_path(job: &str, task: &str) -> String {
    format!("{}/tasks/{}", job_path(job), encode_segment(task))
}

/// Task retention when the client sets none.
pub fn default_retention() -> Duration {
    Duration::from_days(7)
}

fn full_constraints(c: Option<TaskConstraints>, job: &CloudJob) -> TaskConstraints {
    let c = c.unwrap_or_default();
    TaskConstraints {
        max_wall_clock_time: Some(c.max_wall_clock_time.unwrap_or(Duration::INFINITE)),
        retention_time: Some(c.retention_time.unwrap_or_else(default_retention)),
        max_task_retry_count: Some(c.max_task_retry_count.or(job.constraints.max_task_retry_count).unwrap_or(0)),
    }
}

fn full_identity(u: Option<UserIdentity>) -> UserIdentity {
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
fn check_dependencies_and_exit_options(p: &TaskAddParameter, job: &CloudJob) -> Result<(), Error> {
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

fn check_service_limits(p: &TaskAddParameter) -> Result<(), Error> {
    let chars: usize = p.depends_on.iter().flat_map(|d| d.task_ids.iter().flatten()).map(|id| id.chars().count()).sum();
    if chars > MAX_DEPENDENCY_ID_CHARS {
        return Err(Error::new(ErrorCode::TaskDependencyListTooLong));
    }
    Ok(())
}

/// Builds a stored task from a validated body, filling in what the service fills in.
pub fn build(app: &App, p: TaskAddParameter, id: String, job: &CloudJob) -> Result<NewTask, Error> {
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

/// Whether tasks may be added to a job in its current state.
fn can_add(job: &CloudJob) -> Result<(), Error> {
    refuse_if_ending(job.state)
}

async fn load_job(app: &App, id: &str) -> Result<CloudJob, Error> {
    let stored = app.store.get_job(id).await?;
    serde_json::from_str(&stored.doc).map_err(Error::internal)
}

pub async fn add(app: &App, ctx: &Ctx, job_id: &str) -> Result<Reply, Error> {
    let p: TaskAddParameter = parse_body(&ctx.body)?;
    let id = check_task(&p)?;
    let job = load_job(app, job_id).await?;
    can_add(&job)?;
    let task = build(app, p, id.clone(), &job)?;
    let (etag, lm) = (task.task.e_tag.clone(), task.task.last_modified);
    let mut results = app.store.add_tasks(job_id, vec![task], can_add).await?;
    results.pop().unwrap_or_else(|| Err(Error::internal("no result")))?;
    app.cluster.wake.notify_one();
    let url = ctx.url(&task_path(&job.id, &id));
    let stored = store::Stored { doc: String::new(), etag, last_modified: lm };
    Ok(Reply::status(201).changed(&stored, url.clone()).header("location", url))
}

pub async fn add_collection(app: &App, ctx: &Ctx, job_id: &str) -> Result<Reply, Error> {
    if ctx.body.len() >= MAX_COLLECTION_BYTES {
        return Err(Error::new(ErrorCode::RequestBodyTooLarge)
            .with("Reason", format!("The body must be smaller than {MAX_COLLECTION_BYTES} bytes.")));
    }
    // Each task is kept as its JSON text until it is parsed into its
    // parameter: no tree of the whole collection.
    #[derive(serde::Deserialize)]
    struct Collection {
        #[serde(default)]
        value: Option<Vec<Box<serde_json::value::RawValue>>>,
    }
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Box<serde_json::value::RawValue>>,
    }
    let p: Collection = parse_body(&ctx.body)?;
    let items = p.value.ok_or_else(|| Error::missing_property("value"))?;
    if items.len() > MAX_COLLECTION {
        return Err(Error::new(ErrorCode::RequestBodyTooLarge)
            .with("Reason", format!("A collection may hold at most {MAX_COLLECTION} tasks; this one has {}.", items.len())));
    }
    let job = load_job(app, job_id).await?;
    can_add(&job)?;
    // Validate and build each task; invalid ones fail alone (clienterror).
    // Per item: its id, and its ETag and time or its error.
    type Outcome = (String, Result<(String, Timestamp), Error>);
    let mut outcome: Vec<Outcome> = Vec::with_capacity(items.len());
    let mut to_insert = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    for item in items {
        let raw_id = serde_json::from_str::<IdOnly>(item.get())
            .ok()
            .and_then(|i| i.id)
            .and_then(|id| crate::rawdoc::as_str(&id))
            .unwrap_or_default();
        let built = parse_body::<TaskAddParameter>(item.get().as_bytes()).and_then(|p| {
            let id = check_task(&p)?;
            build(app, p, id, &job)
        });
        match built {
            Ok(t) => {
                outcome.push((t.task.id.clone(), Ok((t.task.e_tag.clone(), t.task.last_modified))));
                slots.push(outcome.len() - 1);
                to_insert.push(t);
            }
            Err(e) => outcome.push((raw_id, Err(e))),
        }
    }
    if !to_insert.is_empty() {
        let results = app.store.add_tasks(job_id, to_insert, can_add).await?;
        for (i, r) in slots.into_iter().zip(results) {
            if let Err(e) = r {
                outcome[i].1 = Err(e);
            }
        }
        app.cluster.wake.notify_one();
    }
    let value: Vec<TaskAddResult> = outcome
        .into_iter()
        .map(|(id, r)| match r {
            Ok((etag, lm)) => TaskAddResult {
                status: TaskAddStatus::Success,
                location: Some(ctx.url(&task_path(&job.id, &id))),
                task_id: id,
                e_tag: Some(etag),
                last_modified: Some(lm),
                error: None,
            },
            Err(e) => {
                let status = if e.status() >= 500 { TaskAddStatus::ServerError } else { TaskAddStatus::ClientError };
                let body = e.body(&ctx.base_url, &ctx.request_id, &Timestamp::now().to_string());
                let mut err: serde_json::Map<String, Value> = serde_json::from_str(&body).unwrap_or_default();
                err.remove("odata.metadata");
                TaskAddResult { status, task_id: id, e_tag: None, last_modified: None, location: None, error: Some(Value::Object(err)) }
            }
        })
        .collect();
    let body = serde_json::json!({
        "odata.metadata": format!("{}/$metadata#taskaddresult", ctx.base_url),
        "value": value,
    });
    Ok(Reply::json(200, body.to_string()))
}

fn render_task(
    ctx: &Ctx,
    job_id: &str,
    doc: &str,
    with_stats: bool,
    select: Option<&[String]>,
) -> Result<serde_json::Map<String, Value>, Error> {
    let id =
        serde_json::from_str::<Value>(doc).ok().and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
    let mut m = resource(doc, ctx.url(&task_path(job_id, &id)), with_stats)?;
    apply_select(&mut m, select);
    Ok(m)
}

pub async fn get(app: &App, ctx: &Ctx, job_id: &str, task_id: &str) -> Result<Reply, Error> {
    let (select, expand) = select_expand(ctx)?;
    let stored = app.store.get_task(job_id, task_id).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    let m = render_task(ctx, job_id, &stored.doc, expand.is_some(), select.as_ref().map(|s| s.1.as_slice()))?;
    Ok(Reply::json(200, render::single(ctx, "tasks", m)).tagged(&stored))
}

pub async fn list(app: &App, ctx: &Ctx, job_id: &str) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let page = app.store.list_tasks(job_id, opts.store_query()).await?;
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let items = page
        .docs
        .iter()
        .map(|d| render_task(ctx, job_id, d, opts.expands_stats(), select).map(Value::Object))
        .collect::<Result<Vec<_>, _>>()?;
    let next = page.next.map(|k| opts.next_link(ctx, &k));
    Ok(Reply::json(200, render::list(ctx, "tasks", items, next)))
}

/// PUT: replaces the constraints (the only updatable property).
pub async fn update(app: &App, ctx: &Ctx, job_id: &str, task_id: &str) -> Result<Reply, Error> {
    let p: TaskUpdateParameter = parse_body(&ctx.body)?;
    check_task_update(&p)?;
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_task(job_id, task_id, pre, move |job, task, _| {
            task.constraints = full_constraints(p.constraints, job);
            Ok(())
        })
        .await?;
    Ok(Reply::status(200).changed(&stored, ctx.url(&task_path(job_id, task_id))))
}

pub async fn delete(app: &App, ctx: &Ctx, job_id: &str, task_id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let running = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = running.clone();
    app.store
        .delete_task(job_id, task_id, pre, move |_, t| {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = t.node.clone().zip(t.attempt);
            Ok(())
        })
        .await?;
    match running.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some((node, attempt)) => app.cluster.kill(&node, attempt),
        None => app.cluster.retract_task(job_id, task_id),
    }
    app.lifecycle.job_changed(job_id);
    Ok(Reply::status(200))
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
        task.cleanup_at = control::execution::retention_deadline(task, now);
    }
}

pub async fn terminate(app: &App, ctx: &Ctx, job_id: &str, task_id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let running = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = running.clone();
    let stored = app
        .store
        .update_task(job_id, task_id, pre, move |job, task, now| {
            if job.state == JobState::Deleting {
                return Err(Error::new(ErrorCode::JobBeingDeleted));
            }
            if task.state == TaskState::Completed {
                return Err(Error::new(ErrorCode::TaskCompleted));
            }
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = task.node.clone().zip(task.attempt);
            complete_with_failure(task, now, "TaskEnded", "Task Was Ended by User Request");
            task.attempt = None;
            task.node = None;
            Ok(())
        })
        .await?;
    match running.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some((node, attempt)) => app.cluster.kill(&node, attempt),
        None => app.cluster.retract_task(job_id, task_id),
    }
    app.lifecycle.job_changed(job_id);
    Ok(Reply::status(204).changed(&stored, ctx.url(&task_path(job_id, task_id))))
}

pub async fn reactivate(app: &App, ctx: &Ctx, job_id: &str, task_id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_task(job_id, task_id, pre, |job, task, now| {
            refuse_if_ending(job.state)?;
            if task.state != TaskState::Completed {
                return Err(Error::new(ErrorCode::TaskNotCompleted));
            }
            if task.execution_info.result == Some(ExecutionResult::Success) {
                return Err(Error::new(ErrorCode::TaskSucceeded));
            }
            control::execution::transition(task, TaskState::Active, now);
            control::execution::reset_execution(task);
            Ok(())
        })
        .await?;
    app.cluster.wake.notify_one();
    Ok(Reply::status(204).changed(&stored, ctx.url(&task_path(job_id, task_id))))
}

/// The subtasks (instances 1..n-1) of a multi-instance task: live while its
/// attempt runs, else as its last attempt left them; empty for other tasks.
pub async fn subtasks(app: &App, ctx: &Ctx, job_id: &str, task_id: &str) -> Result<Reply, Error> {
    let (select, _) = select_expand(ctx)?;
    let stored = app.store.get_task(job_id, task_id).await?;
    let task: CloudTask = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
    let live = task.attempt.and_then(|_| app.cluster.live_subtasks(job_id, task_id));
    let mut value = live.or(task.subtasks).unwrap_or_default();
    if let Some((_, keep)) = select.as_ref() {
        for v in value.iter_mut() {
            if let Some(m) = v.as_object_mut() {
                m.retain(|k, _| keep.iter().any(|s| s == k));
            }
        }
    }
    Ok(Reply::json(200, serde_json::json!({ "value": value }).to_string()))
}
