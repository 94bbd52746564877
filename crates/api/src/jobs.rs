//! Job operations.

use crate::http::{Ctx, Reply};
use crate::paths::job_path;
use crate::render::{self, apply_select, list_options, resource, select_expand};
use crate::state::App;
use control::jobs::{default_constraints, refuse_if_ending};
use serde_json::Value;
use wire::enums::*;
use wire::models::*;
use wire::time::{Duration, Timestamp};
use wire::validate::{check_job, check_job_update, parse_body};
use wire::{Error, ErrorCode};

pub async fn create(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let p: JobAddParameter = parse_body(&ctx.body)?;
    let id = check_job(&p)?;
    if let Some(spec) = p.pool_info.as_ref().and_then(|i| i.auto_pool_specification.as_ref()) {
        // A pool for a schedule's jobs needs a schedule.
        if control::autopool::parse(spec)?.lifetime == control::autopool::Lifetime::JobSchedule {
            return Err(Error::invalid_property(
                "poolInfo.autoPoolSpecification.poolLifetimeOption",
                "A job that is not created by a job schedule cannot have an auto pool with the jobSchedule lifetime.",
            ));
        }
    }
    let stored = control::jobs::add(&app.cluster, control::jobs::new_job(&app.cluster, id.clone(), p)).await?;
    let url = ctx.url(&job_path(&id));
    Ok(Reply::status(201).changed(&stored, url.clone()).header("location", url))
}

/// The job's `stats`, added up from its tasks' counters.
async fn stats(app: &App, ctx: &Ctx, job: &CloudJob) -> Result<Value, Error> {
    let (counts, retries) = app.store.task_counts(&job.id).await?;
    let sums = app.store.job_task_stats(&job.id).await?;
    let now = Timestamp::now();
    let zero = Duration::ZERO;
    let s = JobStatistics {
        url: format!("{}/stats", ctx.url(&job_path(&job.id))),
        start_time: job.creation_time,
        last_update_time: now,
        user_cpu_time: sums.as_ref().map_or(zero, |s| s.user_cpu_time),
        kernel_cpu_time: sums.as_ref().map_or(zero, |s| s.kernel_cpu_time),
        wall_clock_time: sums.as_ref().map_or(zero, |s| s.wall_clock_time),
        read_iops: sums.as_ref().map_or(0, |s| s.read_iops),
        write_iops: sums.as_ref().map_or(0, |s| s.write_iops),
        read_io_gib: sums.as_ref().map_or(0.0, |s| s.read_io_gib),
        write_io_gib: sums.as_ref().map_or(0.0, |s| s.write_io_gib),
        num_succeeded_tasks: counts.task_counts.succeeded,
        num_failed_tasks: counts.task_counts.failed,
        num_task_retries: retries,
        wait_time: sums.as_ref().map_or(zero, |s| s.wait_time),
    };
    serde_json::to_value(s).map_err(Error::internal)
}

async fn render_job(
    app: &App,
    ctx: &Ctx,
    doc: &str,
    with_stats: bool,
    select: Option<&[String]>,
) -> Result<serde_json::Map<String, Value>, Error> {
    let job: CloudJob = serde_json::from_str(doc).map_err(Error::internal)?;
    let mut m = resource(doc, ctx.url(&job_path(&job.id)), false)?;
    if with_stats {
        m.insert("stats".into(), stats(app, ctx, &job).await?);
    }
    apply_select(&mut m, select);
    Ok(m)
}

pub async fn get(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let (select, expand) = select_expand(ctx)?;
    let stored = app.store.get_job(id).await?;
    ctx.preconditions()?.check_read(&stored.etag, &stored.last_modified)?;
    let m = render_job(app, ctx, &stored.doc, expand.is_some(), select.as_ref().map(|s| s.1.as_slice())).await?;
    Ok(Reply::json(200, render::single(ctx, "jobs", m)).tagged(&stored))
}

pub async fn list(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let page = app.store.list_jobs(opts.store_query()).await?;
    list_reply(app, ctx, &opts, page).await
}

/// A page of jobs as a list response (all jobs, or a schedule's).
pub async fn list_reply(app: &App, ctx: &Ctx, opts: &render::ListOptions, page: store::Page) -> Result<Reply, Error> {
    let mut items = Vec::with_capacity(page.docs.len());
    for doc in &page.docs {
        let m = render_job(app, ctx, doc, opts.expands_stats(), opts.select.as_ref().map(|s| s.1.as_slice())).await?;
        items.push(Value::Object(m));
    }
    let next = page.next.map(|k| opts.next_link(ctx, &k));
    Ok(Reply::json(200, render::list(ctx, "jobs", items, next)))
}

/// PATCH (only the given properties) and PUT (all updatable properties).
pub async fn update(app: &App, ctx: &Ctx, id: &str, replace: bool) -> Result<Reply, Error> {
    let p: JobUpdateParameter = parse_body(&ctx.body)?;
    check_job_update(&p, replace)?;
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_job(id, pre, move |conn, job, _| {
            refuse_if_ending(job.state)?;
            if let Some(pool) = &p.pool_info {
                if *pool != job.pool_info && !matches!(job.state, JobState::Disabled) {
                    return Err(Error::msg(
                        ErrorCode::OperationInvalidForCurrentState,
                        "The pool of a job can only be changed while the job is disabled.",
                    )
                    .with("JobState", job.state.as_str()));
                }
                if let Some(id) = pool.pool_id.as_deref().filter(|_| *pool != job.pool_info) {
                    store::jobs::check_pool_usable(conn, id)?;
                }
            }
            let new_otc = match (p.on_all_tasks_complete, replace) {
                (Some(v), _) => Some(v),
                (None, true) => Some(OnAllTasksComplete::NoAction),
                (None, false) => None,
            };
            if let Some(v) = new_otc {
                if job.on_all_tasks_complete == OnAllTasksComplete::TerminateJob && v == OnAllTasksComplete::NoAction {
                    return Err(Error::invalid_property(
                        "onAllTasksComplete",
                        "A job's completion behavior cannot be changed from terminatejob to noaction.",
                    ));
                }
                job.on_all_tasks_complete = v;
            }
            if replace {
                job.priority = p.priority.unwrap_or(0);
                job.allow_task_preemption = p.allow_task_preemption.unwrap_or(false);
                job.max_parallel_tasks = p.max_parallel_tasks.unwrap_or(-1);
                job.constraints = default_constraints(p.constraints);
                job.metadata = p.metadata;
                if p.network_configuration.is_some() {
                    job.network_configuration = p.network_configuration;
                }
            } else {
                if let Some(v) = p.priority {
                    job.priority = v;
                }
                if let Some(v) = p.allow_task_preemption {
                    job.allow_task_preemption = v;
                }
                if let Some(v) = p.max_parallel_tasks {
                    job.max_parallel_tasks = v;
                }
                if let Some(c) = p.constraints {
                    job.constraints = default_constraints(Some(JobConstraints {
                        max_wall_clock_time: c.max_wall_clock_time.or(job.constraints.max_wall_clock_time),
                        max_task_retry_count: c.max_task_retry_count.or(job.constraints.max_task_retry_count),
                    }));
                }
                if p.metadata.is_some() {
                    job.metadata = p.metadata;
                }
                if p.network_configuration.is_some() {
                    job.network_configuration = p.network_configuration;
                }
            }
            if let Some(pool) = p.pool_info {
                match (&pool.auto_pool_specification, &job.pool_info.auto_pool_specification) {
                    // The service lets only an auto pool's keepAlive change.
                    (Some(new), Some(old)) if *new != *old => {
                        let (mut a, mut b) = (new.clone(), old.clone());
                        for v in [&mut a, &mut b] {
                            if let Some(m) = v.as_object_mut() {
                                m.remove("keepAlive");
                            }
                        }
                        if a != b {
                            return Err(Error::invalid_property(
                                "poolInfo.autoPoolSpecification",
                                "Only keepAlive of a job's auto pool specification can be changed.",
                            ));
                        }
                        job.pool_info = pool;
                    }
                    (Some(_), Some(_)) => {}
                    (Some(_), None) => {
                        return Err(Error::invalid_property(
                            "poolInfo.autoPoolSpecification",
                            "An existing job cannot be moved to an auto pool; name an existing pool in poolInfo.poolId.",
                        ));
                    }
                    (None, _) => {
                        job.execution_info.pool_id = pool.pool_id.clone();
                        job.pool_info = pool;
                    }
                }
            }
            Ok(())
        })
        .await?;
    app.lifecycle.job_changed(id);
    app.lifecycle.wake(); // constraints may have changed
    app.cluster.wake.notify_one();
    Ok(Reply::status(200).changed(&stored, ctx.url(&job_path(id))))
}

pub async fn delete(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_job(id, pre, |_, job, now| {
            store::jobs::set_state(job, JobState::Deleting, now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&job_path(id))))
}

pub async fn terminate(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let reason = if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        None
    } else {
        parse_body::<JobTerminateParameter>(&ctx.body)?.terminate_reason
    };
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_job(id, pre, move |_, job, now| {
            refuse_if_ending(job.state)?;
            job.execution_info.terminate_reason = Some(reason.unwrap_or_else(|| "UserTerminate".to_string()));
            store::jobs::set_state(job, JobState::Terminating, now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&job_path(id))))
}

pub async fn disable(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let p: JobDisableParameter = parse_body(&ctx.body)?;
    let option = p.disable_tasks.ok_or_else(|| Error::missing_property("disableTasks"))?;
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_job(id, pre, move |_, job, now| {
            refuse_if_ending(job.state)?;
            if job.state != JobState::Active {
                return Err(Error::new(ErrorCode::JobNotActive).with("JobState", job.state.as_str()));
            }
            job.pending_disable = Some(option);
            store::jobs::set_state(job, JobState::Disabling, now);
            Ok(())
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&job_path(id))))
}

pub async fn enable(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let pre = ctx.preconditions()?;
    let stored = app
        .store
        .update_job(id, pre, |_, job, now| {
            refuse_if_ending(job.state)?;
            match job.state {
                JobState::Disabled | JobState::Disabling => {
                    store::jobs::set_state(job, JobState::Enabling, now);
                    Ok(())
                }
                JobState::Enabling => Ok(()),
                s => Err(Error::msg(ErrorCode::OperationInvalidForCurrentState, "Only a disabled job can be enabled.")
                    .with("JobState", s.as_str())),
            }
        })
        .await?;
    app.lifecycle.wake();
    Ok(Reply::status(202).changed(&stored, ctx.url(&job_path(id))))
}

pub async fn task_counts(app: &App, id: &str) -> Result<Reply, Error> {
    let (counts, _) = app.store.task_counts(id).await?;
    Ok(Reply::json(200, serde_json::to_string(&counts).map_err(Error::internal)?))
}

/// Preparation and release tasks do not run yet (jobs that have them are
/// not scheduled, see `execution::unsupported_job_feature`), so no node has a
/// status to report: the list is empty — for a job that has such a task.
pub async fn prep_release_status(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    list_options(ctx)?; // the options are still validated
    let stored = app.store.get_job(id).await?;
    let job: CloudJob = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
    if job.job_preparation_task.is_none() {
        return Err(Error::new(ErrorCode::JobPreparationTaskNotSpecified));
    }
    let base = ctx.url("");
    let items = app.cluster.prep_release_status(&job.id, base.trim_end_matches('/'));
    Ok(Reply::json(200, render::list(ctx, "jobpreparationandreleasetaskstatuslist", items, None)))
}

/// The jobs of a job schedule.
pub async fn list_of_schedule(app: &App, ctx: &Ctx, id: &str) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    app.store.get_doc(store::pools::SCHEDULES, id).await?;
    let page = app.store.list_schedule_jobs(id, opts.store_query()).await?;
    list_reply(app, ctx, &opts, page).await
}
