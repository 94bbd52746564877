//! The job lifecycle worker: finishes job transitions (delete, terminate,
//! disable, enable) and `onAllTasksComplete`, when `crate::lifecycle` signals
//! it (see there).

use crate::cluster::Cluster;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use wire::enums::{DisableJobOption, JobState, OnAllTasksComplete};
use wire::time::Timestamp;

/// Tasks removed per write while purging a deleted job.
pub const PURGE_CHUNK: usize = 2000;

/// The worker, until `stop`.
pub async fn run(app: Arc<Cluster>, mut stop: crate::supervisor::Stop) {
    let delay = app.config.transition_delay;
    let mut due_at: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
    while !stop.is_stopped() {
        let look = app.lifecycle.transitions.swap(false, std::sync::atomic::Ordering::SeqCst)
            || due_at.is_some_and(|d| d <= tokio::time::Instant::now());
        let next_due = match step(&app, delay, look).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "job lifecycle step failed; retrying");
                Some(StdDuration::from_millis(500))
            }
        };
        if look {
            due_at = next_due.map(|d| tokio::time::Instant::now() + d);
        }
        let due = async {
            match due_at {
                Some(d) => {
                    let _ = tokio::time::timeout_at(d, app.lifecycle.notify.notified()).await;
                }
                None => app.lifecycle.notify.notified().await,
            }
        };
        tokio::select! {
            _ = due => {}
            _ = stop.stopped() => break,
        }
    }
}

/// Does what is due; returns how long until the next pending transition is due.
pub async fn step(app: &Cluster, delay: StdDuration, look: bool) -> Result<Option<StdDuration>, wire::Error> {
    let changed: Vec<String> = app.lifecycle.changed.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
    for id in changed {
        check_all_complete(app, &id).await?;
    }
    if !look {
        return Ok(None);
    }
    let mut next = expire_jobs(app).await?;
    if let Some(d) = crate::schedules::step(app).await? {
        next = Some(next.map_or(d, |n| n.min(d)));
    }
    // Certificate deletions end here too (`deleting` → gone or `deletefailed`).
    if let Some(d) = crate::certificates::step(app, delay).await? {
        next = Some(next.map_or(d, |n| n.min(d)));
    }
    let pending = app.store.jobs_in_states(&[JobState::Deleting, JobState::Terminating, JobState::Disabling, JobState::Enabling]).await?;
    let now = Timestamp::now();
    for (id, state, since) in pending {
        if state != JobState::Enabling {
            // Its tasks waiting in nodes' queues do not start.
            app.retract_job(&id);
        }
        let age = (now.0 - since.0).to_std().unwrap_or_default();
        if age < delay {
            let wait = delay - age;
            next = Some(next.map_or(wait, |n| n.min(wait)));
            continue;
        }
        match state {
            JobState::Deleting | JobState::Terminating => {
                stop_running(app, &id, false).await?;
                // The job's release task runs on the nodes that prepared it.
                if let Ok(stored) = app.store.get_job(&id).await {
                    if let Ok(job) = serde_json::from_str::<wire::models::CloudJob>(&stored.doc) {
                        app.release_job(&job).await;
                        // A pool made for this job alone goes with it.
                        app.job_ended_auto_pool(&job).await;
                    }
                }
            }
            JobState::Disabling => match pending_disable(app, &id).await {
                Some(DisableJobOption::Requeue) => stop_running(app, &id, true).await?,
                Some(DisableJobOption::Terminate) => stop_running(app, &id, false).await?,
                _ => {}
            },
            _ => {}
        }
        match state {
            JobState::Deleting => {
                while !app.store.purge_job(&id, PURGE_CHUNK).await? {
                    tokio::task::yield_now().await;
                }
            }
            JobState::Terminating => finish(app, &id, JobState::Terminating, JobState::Completed).await?,
            JobState::Disabling => finish(app, &id, JobState::Disabling, JobState::Disabled).await?,
            JobState::Enabling => {
                finish(app, &id, JobState::Enabling, JobState::Active).await?;
                app.wake.notify_one();
            }
            _ => {}
        }
    }
    Ok(next)
}

/// Terminates active jobs that have run longer than their
/// `constraints.maxWallClockTime` (measured from creation), with reason
/// `MaxWallClockTimeExpiry`. Returns how long until the next one is due.
pub async fn expire_jobs(app: &Cluster) -> Result<Option<StdDuration>, wire::Error> {
    let now = Timestamp::now();
    let mut next: Option<StdDuration> = None;
    for job in app.store.active_jobs_with_wall_clock().await? {
        let Some(limit) = job.constraints.max_wall_clock_time.filter(|d| !d.is_infinite()) else { continue };
        let deadline = job.creation_time.0 + chrono::Duration::milliseconds(limit.0 / 10_000);
        if deadline > now.0 {
            let wait = (deadline - now.0).to_std().unwrap_or_default();
            next = Some(next.map_or(wait, |n| n.min(wait)));
            continue;
        }
        let ended = app.store.end_job(&job.id, "MaxWallClockTimeExpiry", |_, j| Ok(j.state == JobState::Active)).await?;
        if ended {
            next = Some(StdDuration::ZERO);
        }
    }
    Ok(next)
}

pub async fn pending_disable(app: &Cluster, id: &str) -> Option<DisableJobOption> {
    let stored = app.store.get_job(id).await.ok()?;
    serde_json::from_str::<wire::models::CloudJob>(&stored.doc).ok()?.pending_disable
}

/// Stops the job's tasks that are preparing or running: back to `active`
/// (`requeue`) or `completed` as terminated; their processes are killed.
pub async fn stop_running(app: &Cluster, job: &str, requeue: bool) -> Result<(), wire::Error> {
    let filter = wire::odata::parse_filter("state eq 'running' or state eq 'preparing'").map_err(wire::Error::internal)?;
    let mut after = None;
    loop {
        let page = app.store.list_tasks(job, store::ListQuery { filter: Some(filter.clone()), after: after.clone(), limit: 1000 }).await?;
        for doc in &page.docs {
            let Ok(t) = serde_json::from_str::<wire::models::CloudTask>(doc) else { continue };
            let (Some(node), Some(attempt)) = (t.node.clone(), t.attempt) else { continue };
            if requeue {
                app.requeue_attempt(job, &t.id, attempt).await;
            } else {
                let _ = app
                    .store
                    .update_task(job, &t.id, Default::default(), move |_, t, now| {
                        if t.attempt != Some(attempt) {
                            return Err(wire::Error::new(wire::ErrorCode::OperationInvalidForCurrentState));
                        }
                        crate::jobs::complete_with_failure(t, now, "TaskEnded", "Task Was Ended by User Request");
                        t.attempt = None;
                        t.node = None;
                        Ok(())
                    })
                    .await;
            }
            app.kill(&node, attempt);
        }
        match page.next {
            Some(k) => after = Some(k),
            None => return Ok(()),
        }
    }
}

pub async fn finish(app: &Cluster, id: &str, from: JobState, to: JobState) -> Result<(), wire::Error> {
    let r = app
        .store
        .update_job(id, Default::default(), move |_, job, now| {
            if job.state != from {
                // Something else moved it on (e.g. a delete); nothing to do.
                return Err(wire::Error::new(wire::ErrorCode::OperationInvalidForCurrentState));
            }
            store::jobs::set_state(job, to, now);
            if to == JobState::Completed {
                job.execution_info.end_time = Some(now);
            }
            if from == JobState::Disabling {
                job.pending_disable = None;
            }
            Ok(())
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code, wire::ErrorCode::OperationInvalidForCurrentState | wire::ErrorCode::JobNotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `onAllTasksComplete: terminatejob`: once all of a job's tasks are
/// completed — at once for a job with none, as the service documents ("if
/// a Job contains no Tasks, then all Tasks are considered complete") — the
/// job terminates with reason `AllTasksComplete`.
pub async fn check_all_complete(app: &Cluster, id: &str) -> Result<(), wire::Error> {
    let generation = app.store.job_generation();
    let key = store::key_of(id);
    if app.lifecycle.quiet.lock().unwrap_or_else(|p| p.into_inner()).get(&key) == Some(&generation) {
        return Ok(());
    }
    // Most jobs do not ask for it: decide that from a read, without a write.
    let job = match app.store.get_job(id).await {
        Ok(s) => serde_json::from_str::<wire::models::CloudJob>(&s.doc).map_err(wire::Error::internal)?,
        Err(e) if e.code == wire::ErrorCode::JobNotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if job.state != JobState::Active || job.on_all_tasks_complete != OnAllTasksComplete::TerminateJob {
        let mut quiet = app.lifecycle.quiet.lock().unwrap_or_else(|p| p.into_inner());
        if quiet.len() > 10_000 {
            quiet.clear();
        }
        quiet.insert(key, generation);
        return Ok(());
    }
    let ended = app
        .store
        .end_job(id, "AllTasksComplete", |conn, job| {
            if job.state != JobState::Active || job.on_all_tasks_complete != OnAllTasksComplete::TerminateJob {
                return Ok(false);
            }
            // A job with no tasks counts as all complete (as documented).
            let c = store::tasks::counts(conn, &job.id)?.0.task_counts;
            Ok(c.active + c.running == 0)
        })
        .await?;
    if ended {
        app.lifecycle.wake();
    }
    Ok(())
}
