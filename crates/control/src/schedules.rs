//! Job schedules: their document's state and timing, and the step that
//! creates their jobs on time, ends them and completes schedules (run by the
//! lifecycle worker).

use crate::cluster::Cluster;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::time::Duration as StdDuration;
use store::pools::SCHEDULES;
use wire::enums::JobState;
use wire::models::JobAddParameter;
use wire::time::{Duration, Timestamp};
use wire::validate::{from_value, parse_body};
use wire::{Error, ErrorCode};

/// The `schedule` property.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    pub do_not_run_until: Option<Timestamp>,
    pub do_not_run_after: Option<Timestamp>,
    pub start_window: Option<Duration>,
    pub recurrence_interval: Option<Duration>,
}

pub const ONE_MINUTE: i64 = 60 * 10_000_000; // ticks

pub fn timing(doc: &Map<String, Value>) -> Timing {
    doc.get("schedule").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
}

/// Validates `schedule`: the service's minimum of one minute for the start
/// window and the recurrence interval.
pub fn check_timing(v: Option<&Value>) -> Result<(), Error> {
    let v = v.ok_or_else(|| Error::missing_property("schedule"))?;
    check_timing_of(from_value(v.clone())?).map(|_| ())
}

/// `check_timing` for `schedule` as its JSON text; the timing.
pub fn check_timing_text(v: Option<&RawValue>) -> Result<Timing, Error> {
    let v = v.ok_or_else(|| Error::missing_property("schedule"))?;
    check_timing_of(parse_body(v.get().as_bytes())?)
}

pub fn check_timing_of(t: Timing) -> Result<Timing, Error> {
    for (name, d) in [("startWindow", t.start_window), ("recurrenceInterval", t.recurrence_interval)] {
        if d.is_some_and(|d| d.0 < ONE_MINUTE) {
            return Err(Error::invalid_property(name, "The value must be at least one minute."));
        }
    }
    Ok(t)
}

/// The job request a specification stands for, with the given id.
pub fn job_parameter(spec: &Map<String, Value>, id: &str) -> Result<JobAddParameter, Error> {
    let mut m = spec.clone();
    m.insert("id".into(), json!(id));
    from_value(Value::Object(m))
}

pub fn state(doc: &Map<String, Value>) -> &str {
    doc.get("state").and_then(Value::as_str).unwrap_or("active")
}

pub fn set_state(doc: &mut Map<String, Value>, to: &str, now: Timestamp) {
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

pub fn exec_info(doc: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let e = doc.entry("executionInfo").or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut().expect("an object")
}

/// The state of a schedule's most recent job: `None` when it has none or it
/// is gone.
pub async fn recent_job_state(app: &Cluster, doc: &Map<String, Value>) -> Result<Option<JobState>, Error> {
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
pub async fn end_job(app: &Cluster, job: &str, delete: bool) -> Result<(), Error> {
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
pub async fn step(app: &Cluster) -> Result<Option<StdDuration>, Error> {
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
                    app.schedule_ended_auto_pool(&doc).await;
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

pub async fn complete(app: &Cluster, id: &str) -> Result<(), Error> {
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
        Ok(stored) => {
            // The pool its jobs shared (`poolLifetimeOption: jobschedule`) goes.
            if let Ok(doc) = serde_json::from_str::<Map<String, Value>>(&stored.doc) {
                app.schedule_ended_auto_pool(&doc).await;
            }
            Ok(())
        }
        Err(e) if e.code != ErrorCode::OperationInvalidForCurrentState && e.code != ErrorCode::JobScheduleNotFound => Err(e),
        _ => Ok(()),
    }
}

/// One active schedule: creates its next job when due and no job of it is
/// active; returns how long until it should be looked at again.
pub async fn run_due(app: &Cluster, id: &str, doc: &Map<String, Value>) -> Result<Option<StdDuration>, Error> {
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
        let mut job = crate::jobs::new_job(app, job_id.clone(), p);
        // The jobs of a schedule whose auto pool lives as long as it share one.
        if let Some(auto) = crate::autopool::of(&job).filter(|a| a.lifetime == crate::autopool::Lifetime::JobSchedule) {
            let created = doc.get("creationTime").and_then(Value::as_str).unwrap_or_default();
            job.execution_info.pool_id = Some(crate::autopool::schedule_pool_id(auto.prefix.as_deref(), id, created));
        }
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
