//! Background completion of job state transitions.
//!
//! Delete, terminate, disable and enable answer 202 at once and leave the job
//! in a transitional state (`deleting`, `terminating`, `disabling`,
//! `enabling`) that clients can observe — the 15.x SDK's pollers depend on
//! it. This worker finishes each transition once the job has shown its
//! transitional state for at least `transition_delay`: a deleting job's tasks
//! are removed in chunks (so a huge job never blocks other writes) and then
//! the job; a terminating job becomes `completed`; disabling → `disabled`;
//! enabling → `active`. It also applies `onAllTasksComplete: terminatejob`
//! when a job's last task completes.

use crate::App;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use tokio::sync::Notify;
use wire::enums::{JobState, OnAllTasksComplete};
use wire::time::Timestamp;

/// Tasks removed per write while purging a deleted job.
const PURGE_CHUNK: usize = 2000;

#[derive(Default)]
pub struct Lifecycle {
    notify: Notify,
    changed: Mutex<HashSet<String>>,
}

impl Lifecycle {
    /// A job entered a transitional state.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// A job's tasks or completion settings changed: check whether all its tasks are done.
    pub fn job_changed(&self, id: &str) {
        self.changed.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string());
        self.notify.notify_one();
    }
}

pub async fn run(app: Arc<App>) {
    let delay = app.config.transition_delay;
    loop {
        let next_due = match step(&app, delay).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "job lifecycle step failed; retrying");
                Some(StdDuration::from_millis(500))
            }
        };
        match next_due {
            Some(d) => {
                let _ = tokio::time::timeout(d, app.lifecycle.notify.notified()).await;
            }
            None => app.lifecycle.notify.notified().await,
        }
    }
}

/// Does what is due; returns how long until the next pending transition is due.
async fn step(app: &App, delay: StdDuration) -> Result<Option<StdDuration>, wire::Error> {
    let changed: Vec<String> = app.lifecycle.changed.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
    for id in changed {
        check_all_complete(app, &id).await?;
    }
    let pending = app
        .store
        .jobs_in_states(&[JobState::Deleting, JobState::Terminating, JobState::Disabling, JobState::Enabling])
        .await?;
    let now = Timestamp::now();
    let mut next: Option<StdDuration> = None;
    for (id, state, since) in pending {
        let age = (now.0 - since.0).to_std().unwrap_or_default();
        if age < delay {
            let wait = delay - age;
            next = Some(next.map_or(wait, |n| n.min(wait)));
            continue;
        }
        match state {
            JobState::Deleting => {
                while !app.store.purge_job(&id, PURGE_CHUNK).await? {
                    tokio::task::yield_now().await;
                }
            }
            JobState::Terminating => finish(app, &id, JobState::Terminating, JobState::Completed).await?,
            JobState::Disabling => finish(app, &id, JobState::Disabling, JobState::Disabled).await?,
            JobState::Enabling => finish(app, &id, JobState::Enabling, JobState::Active).await?,
            _ => {}
        }
    }
    Ok(next)
}

async fn finish(app: &App, id: &str, from: JobState, to: JobState) -> Result<(), wire::Error> {
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

/// `onAllTasksComplete: terminatejob`: once a job has tasks and all of them
/// are completed, the job terminates with reason `AllTasksComplete`.
async fn check_all_complete(app: &App, id: &str) -> Result<(), wire::Error> {
    let r = app
        .store
        .update_job(id, Default::default(), |conn, job, now| {
            if job.state != JobState::Active || job.on_all_tasks_complete != OnAllTasksComplete::TerminateJob {
                return Err(wire::Error::new(wire::ErrorCode::OperationInvalidForCurrentState));
            }
            let (counts, _) = store::tasks::counts(conn, &job.id)?;
            let c = counts.task_counts;
            if c.completed == 0 || c.active + c.running > 0 {
                return Err(wire::Error::new(wire::ErrorCode::OperationInvalidForCurrentState));
            }
            job.execution_info.terminate_reason = Some("AllTasksComplete".into());
            store::jobs::set_state(job, JobState::Terminating, now);
            Ok(())
        })
        .await;
    match r {
        Ok(_) => {
            app.lifecycle.wake();
            Ok(())
        }
        Err(e) if matches!(e.code, wire::ErrorCode::OperationInvalidForCurrentState | wire::ErrorCode::JobNotFound) => Ok(()),
        Err(e) => Err(e),
    }
}
