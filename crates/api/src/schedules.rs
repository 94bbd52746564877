//! Job schedules: the operations, and the worker step that creates their
//! jobs on time.
//!
//! A schedule is a JSON document (like a pool). Its jobs are ordinary jobs
//! with ids `{scheduleId}:job-{n}` (`:` cannot appear in a client's job id),
//! built from `jobSpecification` by the same code as `POST /jobs`; at most
//! one of them is active at a time. `_jobs` in the document counts the jobs
//! created so far.

use crate::http::{encode_segment, Ctx, Reply};
use crate::jobs::job_path;
use crate::rawdoc::{self, RawObject};
use crate::render::{self, apply_select, list_options, select_expand};
use crate::App;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::time::Duration as StdDuration;
use store::pools::SCHEDULES;
use wire::enums::JobState;
use wire::models::JobAddParameter;
use wire::time::{Duration, Timestamp};
use wire::validate::{check_id, check_job, from_value, parse_body};
use wire::{Error, ErrorCode};

pub fn schedule_path(id: &str) -> String {
    format!("/jobschedules/{}", encode_segment(id))
}

/// The `schedule` property.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Timing {
    do_not_run_until: Option<Timestamp>,
    do_not_run_after: Option<Timestamp>,
    start_window: Option<Duration>,
    recurrence_interval: Option<Duration>,
}

const ONE_MINUTE: i64 = 60 * 10_000_000; // ticks

fn timing(doc: &Map<String, Value>) -> Timing {
    doc.get("schedule").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
}

/// Validates `schedule`: the service's minimum of one minute for the start
/// window and the recurrence interval.
pub fn check_timing(v: Option<&Value>) -> Result<(), Error> {
    let v = v.ok_or_else(|| Error::missing_property("schedule"))?;
    check_timing_of(from_value(v.clone())?).map(|_| ())
}

/// `check_timing` for `schedule` as its JSON text; the timing.
fn check_timing_text(v: Option<&RawValue>) -> Result<Timing, Error> {
    let v = v.ok_or_else(|| Error::missing_property("schedule"))?;
    check_timing_of(parse_body(v.get().as_bytes())?)
}

fn check_timing_of(t: Timing) -> Result<Timing, Error> {
    for (name, d) in [("startWindow", t.start_window), ("recurrenceInterval", t.recurrence_interval)] {
        if d.is_some_and(|d| d.0 < ONE_MINUTE) {
            return Err(Error::invalid_property(name, "The value must be at least one minute."));
        }
    }
    Ok(t)
}

/// Validates `jobSpecification` as the job it will become; its pool must exist.
async fn check_spec(app: &App, v: Option<&Value>) -> Result<Map<String, Value>, Error> {
    let spec = v.ok_or_else(|| Error::missing_property("jobSpecification"))?;
    let Some(spec) = spec.as_object() else {
        return Err(Error::invalid_property("jobSpecification", "The value must be an object."));
    };
    let p = job_parameter(spec, "specification")?;
    check_parameter(app, &p).await?;
    Ok(spec.clone())
}

/// `check_spec` for `jobSpecification` as its JSON text.
async fn check_spec_text(app: &App, v: Option<&RawValue>) -> Result<(), Error> {
    let spec = v.ok_or_else(|| Error::missing_property("jobSpecification"))?;
    if !rawdoc::is_object(spec) {
        return Err(Error::invalid_property("jobSpecification", "The value must be an object."));
    }
    let mut p: JobAddParameter = parse_body(spec.get().as_bytes())?;
    p.id = Some("specification".into());
    check_parameter(app, &p).await
}

/// A specification's rules as the job it will become; its pool must exist.
async fn check_parameter(app: &App, p: &JobAddParameter) -> Result<(), Error> {
    check_job(p)?;
    if let Some(pool) = p.pool_info.as_ref().and_then(|i| i.pool_id.as_deref()) {
        let doc: Map<String, Value> = serde_json::from_str(&app.store.get_pool(pool).await?.doc).map_err(Error::internal)?;
        if doc.get("state").and_then(Value::as_str) == Some("deleting") {
            return Err(Error::new(ErrorCode::PoolBeingDeleted).with("PoolId", pool));
        }
    }
    Ok(())
}

/// The job request a specification stands for, with the given id.
pub fn job_parameter(spec: &Map<String, Value>, id: &str) -> Result<JobAddParameter, Error> {
    let mut m = spec.clone();
    m.insert("id".into(), json!(id));
    from_value(Value::Object(m))
}

fn state(doc: &Map<String, Value>) -> &str {
    doc.get("state").and_then(Value::as_str).unwrap_or("active")
}

fn set_state(doc: &mut Map<String, Value>, to: &str, now: Timestamp) {
    let from = state(doc).to_string();
    if from == to {
        return;
    }
    doc.insert("previousState".into(), json!(from));
    if let Some(t) = doc.get("stateTransitionTime").cloned() {
        doc.insert("previousStateTransitionTime".into(), t);
    }
    doc.insert("state".into(), json!(to));
    doc.insert("stateTransitionTime".into(), json!(now));
    if to == "completed" {
        exec_info(doc).insert("endTime".into(), json!(now));
        exec_info(doc).remove("nextRunTime");
    }
}

fn exec_info(doc: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let e = doc.entry("executionInfo").or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut().expect("an object")
}

/// The errors of a schedule that is ending or ended.
fn refuse_if_ending(doc: &Map<String, Value>) -> Result<(), Error> {
    match state(doc) {
        "deleting" => Err(Error::new(ErrorCode::JobScheduleBeingDeleted)),
        "terminating" => Err(Error::new(ErrorCode::JobScheduleBeingTerminated)),
        "completed" => Err(Error::new(ErrorCode::JobScheduleCompleted)),
        _ => Ok(()),
    }
}

pub async fn create(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    // Members kept as sent (no tree of the body); only what is checked is parsed.
    let mut body: RawObject = parse_body(&ctx.body)?;
    let id = check_id("id", body.str("id").as_deref())?;
    if body.str("displayName").is_some_and(|d| d.chars().count() > 1024) {
        return Err(Error::invalid_property("displayName", "The value must be at most 1024 characters long."));
    }
    let timing = check_timing_text(body.get("schedule"))?;
    check_spec_text(app, body.get("jobSpecification")).await?;
    let (now, etag) = app.store.etags.next();
    let mut doc = RawObject::default();
    doc.set("id", &id);
    if let Some(d) = body.take("displayName") {
        doc.set_raw("displayName", d);
    }
    doc.set("eTag", &etag);
    doc.set("lastModified", &now);
    doc.set("creationTime", &now);
    doc.set("state", &"active");
    doc.set("stateTransitionTime", &now);
    match body.take("schedule") {
        Some(s) => doc.set_raw("schedule", s),
        None => doc.set("schedule", &json!({})),
    }
    if let Some(spec) = body.take("jobSpecification") {
        doc.set_raw("jobSpecification", spec);
    }
    let first = timing.do_not_run_until.unwrap_or(now);
    doc.set("executionInfo", &json!({"nextRunTime": first}));
    if let Some(m) = body.take("metadata") {
        doc.set_raw("metadata", m);
    }
    doc.set("_jobs", &0);
    drop(body);
    let lm = doc.str("lastModified").unwrap_or_default();
    let text = doc.to_json();
    drop(doc);
    let stored = app.store.create_doc_text(SCHEDULES, &id, text, "active".into(), etag, lm).await?;
    app.lifecycle.wake();
    let url = ctx.url(&schedule_path(&id));
    Ok(Reply::status(201).changed(&stored, url.clone()).header("location", url))
}

fn render_schedule(ctx: &Ctx, doc: &str, select: Option<&[String]>) -> Result<Map<String, Value>, Error> {
    let mut m = render::resource(doc, String::new(), false)?;
    let id = m.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    m.insert("url".into(), json!(ctx.url(&schedule_path(&id))));
    if let Some(recent) = m.get_mut("executionInfo").and_then(|e| e.get_mut("recentJob")).and_then(Value::as_object_mut) {
        let job = recent.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        recent.insert("url".into(), json!(ctx.url(&job_path(&job))));
    }
    apply_select(&mut m, select);
    Ok(m)
}

pub async fn get(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let (select, _) = select_expand(ctx)?;
    let stored = app.store.get_doc(SCHEDULES, id).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    let m = render_schedule(ctx, &stored.doc, select.as_ref().map(|s| s.1.as_slice()))?;
    Ok(Reply::json(200, render::single(ctx, "jobschedules", m)).tagged(&stored))
}

pub async fn exists(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let stored = app.store.get_doc(SCHEDULES, id).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    Ok(Reply::status(200).tagged(&stored))
}

pub async fn list(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let page = app.store.list_schedules(opts.store_query()).await?;
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let items = page.docs.iter().map(|d| render_schedule(ctx, d, select).map(Value::Object)).collect::<Result<Vec<_>, _>>()?;
    let next = page.next.map(|k| opts.next_link(ctx, &k));
    Ok(Reply::json(200, render::list(ctx, "jobschedules", items, next)))
}

/// The jobs a schedule created (`GET /jobschedules/{id}/jobs`).
pub async fn list_jobs(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    app.store.get_doc(SCHEDULES, id).await?;
    let page = app.store.list_schedule_jobs(id, opts.store_query()).await?;
    crate::jobs::list_reply(app, ctx, &opts, page).await
}

/// PATCH (only what is given) or PUT (`schedule` and `jobSpecification`
/// required; `metadata` replaced). Changes apply to jobs created afterwards.
pub async fn update(app: &App, ctx: &Ctx, id: &str, replace: bool) -> Result<Reply, Error> {
    let body: Map<String, Value> = parse_body(&ctx.body)?;
    if replace || body.contains_key("schedule") {
        check_timing(body.get("schedule"))?;
    }
    let spec =
        if replace || body.contains_key("jobSpecification") { Some(check_spec(app, body.get("jobSpecification")).await?) } else { None };
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(SCHEDULES, id, pre, move |doc, now| {
            refuse_if_ending(doc)?;
            if let Some(s) = body.get("schedule") {
                doc.insert("schedule".into(), s.clone());
                // The next run follows the new timing.
                let t = timing(doc);
                let jobs = doc.get("_jobs").and_then(Value::as_u64).unwrap_or(0);
                let next = match (jobs, t.recurrence_interval) {
                    (0, _) => Some(t.do_not_run_until.unwrap_or(now)),
                    (_, Some(every)) => Some(Timestamp(now.0 + chrono::Duration::milliseconds(every.0 / 10_000))),
                    (_, None) => None,
                };
                match next {
                    Some(n) => exec_info(doc).insert("nextRunTime".into(), json!(n)),
                    None => exec_info(doc).remove("nextRunTime"),
                };
            }
            if let Some(spec) = spec {
                doc.insert("jobSpecification".into(), Value::Object(spec));
            }
            match body.get("metadata") {
                Some(m) => {
                    doc.insert("metadata".into(), m.clone());
                }
                None if replace => {
                    doc.remove("metadata");
                }
                None => {}
            }
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(200).changed(&stored, ctx.url(&schedule_path(id))))
}

pub async fn disable(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(SCHEDULES, id, pre, |doc, now| {
            refuse_if_ending(doc)?;
            set_state(doc, "disabled", now);
            Ok(())
        })
        .await?;
    Ok(Reply::status(204).changed(&stored, ctx.url(&schedule_path(id))))
}

pub async fn enable(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(SCHEDULES, id, pre, |doc, now| {
            refuse_if_ending(doc)?;
            set_state(doc, "active", now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(204).changed(&stored, ctx.url(&schedule_path(id))))
}

pub async fn terminate(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(SCHEDULES, id, pre, |doc, now| {
            match state(doc) {
                "deleting" => return Err(Error::new(ErrorCode::JobScheduleBeingDeleted)),
                "completed" => return Err(Error::new(ErrorCode::JobScheduleCompleted)),
                _ => {}
            }
            set_state(doc, "terminating", now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&schedule_path(id))))
}

pub async fn delete(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_doc(SCHEDULES, id, pre, |doc, now| {
            set_state(doc, "deleting", now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&schedule_path(id))))
}

// ---- the worker step ------------------------------------------------------

/// The state of a schedule's most recent job: `None` when it has none or it
/// is gone.
async fn recent_job_state(app: &App, doc: &Map<String, Value>) -> Result<Option<JobState>, Error> {
    let Some(id) = doc.get("executionInfo").and_then(|e| e.get("recentJob")).and_then(|r| r.get("id")).and_then(Value::as_str) else {
        return Ok(None);
    };
    match app.store.get_job(id).await {
        Ok(s) => Ok(Some(serde_json::from_str::<wire::models::CloudJob>(&s.doc).map_err(Error::internal)?.state)),
        Err(e) if e.code == ErrorCode::JobNotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ends a job the schedule is leaving behind (terminate, reason
/// `TerminateJobSchedule`) or removing (delete).
async fn end_job(app: &App, job: &str, delete: bool) -> Result<(), Error> {
    let ended = if delete {
        let r = app
            .store
            .update_job(job, Default::default(), |_, j, now| {
                if j.state == JobState::Deleting {
                    return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                }
                store::jobs::set_state(j, JobState::Deleting, now);
                Ok(())
            })
            .await;
        match r {
            Ok(_) => true,
            Err(e) if matches!(e.code, ErrorCode::OperationInvalidForCurrentState | ErrorCode::JobNotFound) => false,
            Err(e) => return Err(e),
        }
    } else {
        let may_end = |_: &dyn store::Txn, j: &wire::models::CloudJob| {
            Ok(!matches!(j.state, JobState::Completed | JobState::Terminating | JobState::Deleting))
        };
        app.store.end_job(job, "TerminateJobSchedule", may_end).await?
    };
    if ended {
        app.lifecycle.wake();
    }
    Ok(())
}

/// Moves every schedule along: creates the jobs that are due, completes
/// schedules that have nothing left to run, finishes terminations and
/// deletions. Returns how long until the next job is due.
pub async fn step(app: &App) -> Result<Option<StdDuration>, Error> {
    let mut next: Option<StdDuration> = None;
    let mut soon = |d: StdDuration| next = Some(next.map_or(d, |n: StdDuration| n.min(d)));
    for doc in app.store.all_docs(SCHEDULES).await? {
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        match state(&doc) {
            "deleting" => {
                let jobs = app.store.list_schedule_jobs(&id, store::ListQuery { filter: None, after: None, limit: 1000 }).await?;
                for j in &jobs.docs {
                    let job: wire::models::CloudJob = serde_json::from_str(j).map_err(Error::internal)?;
                    end_job(app, &job.id, true).await?;
                }
                if jobs.docs.is_empty() {
                    app.store.remove_doc(SCHEDULES, &id).await?;
                } else {
                    soon(StdDuration::from_millis(200));
                }
            }
            "terminating" => {
                if let Some(s) = recent_job_state(app, &doc).await? {
                    if s != JobState::Completed {
                        let job = doc["executionInfo"]["recentJob"]["id"].as_str().unwrap_or_default().to_string();
                        end_job(app, &job, false).await?;
                    }
                }
                complete(app, &id).await?;
            }
            "active" => {
                if let Some(wait) = run_due(app, &id, &doc).await? {
                    soon(wait);
                }
            }
            _ => {}
        }
    }
    Ok(next)
}

async fn complete(app: &App, id: &str) -> Result<(), Error> {
    let r = app
        .store
        .update_doc(SCHEDULES, id, Default::default(), |doc, now| {
            if !matches!(state(doc), "active" | "terminating" | "disabled") {
                return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
            }
            set_state(doc, "completed", now);
            Ok(())
        })
        .await;
    match r {
        Err(e) if e.code != ErrorCode::OperationInvalidForCurrentState && e.code != ErrorCode::JobScheduleNotFound => Err(e),
        _ => Ok(()),
    }
}

/// One active schedule: creates its next job when due and no job of it is
/// active; returns how long until it should be looked at again.
async fn run_due(app: &App, id: &str, doc: &Map<String, Value>) -> Result<Option<StdDuration>, Error> {
    let now = Timestamp::now();
    let t = timing(doc);
    let jobs = doc.get("_jobs").and_then(Value::as_u64).unwrap_or(0);
    let recent = recent_job_state(app, doc).await?;
    let busy = recent.is_some_and(|s| s != JobState::Completed);
    if busy {
        // Looked at again when the job changes (lifecycle) or at the next run time.
        return Ok(Some(StdDuration::from_millis(500)));
    }
    let past_end = t.do_not_run_after.is_some_and(|end| now.0 >= end.0);
    let next_run = doc
        .get("executionInfo")
        .and_then(|e| e.get("nextRunTime"))
        .and_then(Value::as_str)
        .and_then(|s| wire::time::parse_datetime(s).map(Timestamp));
    if past_end || (jobs > 0 && t.recurrence_interval.is_none()) || next_run.is_none() {
        complete(app, id).await?;
        return Ok(None);
    }
    let due = next_run.expect("checked");
    if due.0 > now.0 {
        return Ok(Some((due.0 - now.0).to_std().unwrap_or_default()));
    }
    let every = t.recurrence_interval.map(|d| chrono::Duration::milliseconds(d.0 / 10_000));
    // A run that could not start within its window is skipped.
    let missed = t.start_window.is_some_and(|w| now.0 > due.0 + chrono::Duration::milliseconds(w.0 / 10_000));
    let following = every.map(|e| {
        let mut n = due.0 + e;
        while n <= now.0 {
            n += e;
        }
        Timestamp(n)
    });
    let job_id = format!("{id}:job-{}", jobs + 1);
    if !missed {
        let spec = doc.get("jobSpecification").and_then(Value::as_object).cloned().unwrap_or_default();
        let p = job_parameter(&spec, &job_id)?;
        let job = crate::jobs::new_job(app, job_id.clone(), p);
        match crate::jobs::add(app, job).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::JobExists => {}
            Err(e) => {
                tracing::warn!(schedule = id, error = %e, "the job schedule could not create its job");
                return Ok(Some(StdDuration::from_secs(5)));
            }
        }
    }
    let created = !missed;
    app.store
        .update_doc(SCHEDULES, id, Default::default(), move |doc, _| {
            let e = exec_info(doc);
            match following {
                Some(n) => e.insert("nextRunTime".into(), json!(n)),
                None => e.remove("nextRunTime"),
            };
            if created {
                e.insert("recentJob".into(), json!({"id": job_id}));
                doc.insert("_jobs".into(), json!(jobs + 1));
            }
            Ok(())
        })
        .await?;
    Ok(Some(StdDuration::ZERO))
}
