//! Job schedules: the operations, and the worker step that creates their
//! jobs on time.
//!
//! A schedule is a JSON document (like a pool). Its jobs are ordinary jobs
//! with ids `{scheduleId}:job-{n}` (`:` cannot appear in a client's job id),
//! built from `jobSpecification` by the same code as `POST /jobs`; at most
//! one of them is active at a time. `_jobs` in the document counts the jobs
//! created so far.

use crate::http::{Ctx, Reply};
use crate::paths::{job_path, schedule_path};
use crate::rawdoc::{self, RawObject};
use crate::render::{self, apply_select, list_options, select_expand};
use crate::state::App;
use control::schedules::{check_timing, check_timing_text, exec_info, job_parameter, set_state, state, timing};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use store::pools::SCHEDULES;
use wire::models::JobAddParameter;
use wire::time::Timestamp;
use wire::validate::{check_id, check_job, parse_body};
use wire::{Error, ErrorCode};

/// Validates `jobSpecification` as the job it will become; its pool must not be being deleted.
async fn check_spec(app: &App, v: Option<&Value>) -> Result<Map<String, Value>, Error> {
    let spec = v.ok_or_else(|| Error::missing_property("jobSpecification"))?;
    let Some(spec) = spec.as_object() else {
        return Err(Error::invalid_property("jobSpecification", "The value must be an object."));
    };
    let p = job_parameter(spec, "specification")?;
    check_parameter(app, &p).await?;
    let mut spec = Value::Object(spec.clone());
    spec_numbers(&mut spec)?;
    match spec {
        Value::Object(m) => Ok(m),
        _ => Err(Error::internal("jobSpecification is not an object")),
    }
}

/// Numbers a client sent as strings in `jobSpecification` (see
/// `wire::lenient`), written as numbers into the kept specification.
fn spec_numbers(spec: &mut Value) -> Result<(), Error> {
    let text = serde_json::to_string(spec).map_err(Error::internal)?;
    if let Some(typed) = wire::validate::numbers_of::<JobAddParameter>("jobSpecification", &text)? {
        wire::lenient::adopt_numbers(spec, &typed);
    }
    Ok(())
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

/// A specification's rules as the job it will become; its pool must not be being deleted.
async fn check_parameter(app: &App, p: &JobAddParameter) -> Result<(), Error> {
    check_job(p)?;
    // A pool that does not exist yet is fine: the jobs' tasks wait for it.
    if let Some(pool) = p.pool_info.as_ref().and_then(|i| i.pool_id.as_deref()) {
        let stored = match app.store.get_pool(pool).await {
            Ok(s) => s,
            Err(e) if e.code == ErrorCode::PoolNotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let doc: Map<String, Value> = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
        if doc.get("state").and_then(Value::as_str) == Some("deleting") {
            return Err(Error::new(ErrorCode::PoolBeingDeleted).with("PoolId", pool));
        }
    }
    Ok(())
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
    if let Some(spec) = body.get("jobSpecification") {
        if let Some(typed) = wire::validate::numbers_of::<JobAddParameter>("jobSpecification", spec.get())? {
            let mut v: Value = serde_json::from_str(spec.get()).map_err(Error::internal)?;
            wire::lenient::adopt_numbers(&mut v, &typed);
            body.set("jobSpecification", &v);
        }
    }
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
