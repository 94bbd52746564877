//! Task operations.

use crate::http::{Ctx, Reply};
use crate::paths::task_path;
use crate::render::{self, apply_select, list_options, resource, select_expand};
use crate::state::App;
use control::jobs::refuse_if_ending;
use control::jobs::{complete_with_failure, full_constraints};
use serde_json::Value;
use wire::enums::*;
use wire::models::*;
use wire::time::Timestamp;
use wire::validate::{check_task, check_task_update, parse_body};
use wire::{Error, ErrorCode};

/// The most tasks one addtaskcollection request may carry.
pub const MAX_COLLECTION: usize = 100;
/// A collection body must be smaller than this.
pub const MAX_COLLECTION_BYTES: usize = 1024 * 1024;

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
    let task = control::jobs::build_task(&app.cluster, p, id.clone(), &job)?;
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
            control::jobs::build_task(&app.cluster, p, id, &job)
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
