//! Jobs: the rules that do not depend on the database, and the `Store`
//! methods for jobs.

use crate::backend::{JobChange, Txn};
use crate::handle::Store;
use crate::types::{ListQuery, Page, Preconditions, Stored};
use wire::enums::JobState;
use wire::models::CloudJob;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

pub use crate::job_rules::{check_pool, check_pool_usable, set_state};

impl Store {
    /// Inserts a new job; 409 `JobExists` (or `JobBeingDeleted`) when the id is taken.
    pub async fn create_job(&self, job: CloudJob) -> Result<Stored, Error> {
        self.backend.create_job(job).await
    }

    /// The stored job, or 404 `JobNotFound`.
    pub async fn get_job(&self, id: &str) -> Result<Stored, Error> {
        self.backend.get_job(id).await
    }

    /// Reads, checks and changes a job in one transaction. `f` returns an
    /// error to refuse the change. The ETag and Last-Modified are renewed.
    pub async fn update_job<F>(&self, id: &str, pre: Preconditions, f: F) -> Result<Stored, Error>
    where
        F: FnOnce(&dyn Txn, &mut CloudJob, Timestamp) -> Result<(), Error> + Send + 'static,
    {
        let f: JobChange = Box::new(f);
        self.backend.update_job(id, pre, f).await
    }

    /// Ends a job for one of the service's own reasons (`terminateReason`:
    /// `TaskFailed`, `JMComplete`, `AllTasksComplete`, ...): it becomes
    /// `terminating`, after which the lifecycle worker kills its running
    /// tasks and completes it. `may_end` decides inside the transaction; a
    /// job it turns down, or one that is gone, is left alone. Returns
    /// whether the job was ended (the caller then wakes the worker).
    pub async fn end_job<F>(&self, id: &str, reason: &'static str, may_end: F) -> Result<bool, Error>
    where
        F: FnOnce(&dyn Txn, &CloudJob) -> Result<bool, Error> + Send + 'static,
    {
        let r = self
            .update_job(id, Preconditions::default(), move |tx, job, now| {
                if !may_end(tx, job)? {
                    return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                }
                job.execution_info.terminate_reason = Some(reason.into());
                set_state(job, JobState::Terminating, now);
                Ok(())
            })
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code, ErrorCode::OperationInvalidForCurrentState | ErrorCode::JobNotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A page of the jobs a job schedule created (ids `{schedule}:job-{n}`).
    pub async fn list_schedule_jobs(&self, schedule: &str, q: ListQuery) -> Result<Page, Error> {
        self.backend.list_schedule_jobs(schedule, q).await
    }

    /// A page of jobs in id order.
    pub async fn list_jobs(&self, q: ListQuery) -> Result<Page, Error> {
        self.backend.list_jobs(q).await
    }

    /// Active jobs that set `constraints.maxWallClockTime` (the lifecycle
    /// worker ends them when it expires).
    pub async fn active_jobs_with_wall_clock(&self) -> Result<Vec<CloudJob>, Error> {
        self.backend.active_jobs_with_wall_clock().await
    }

    /// Ids and states of jobs in the given states (for the lifecycle worker).
    pub async fn jobs_in_states(&self, states: &[JobState]) -> Result<Vec<(String, JobState, Timestamp)>, Error> {
        self.backend.jobs_in_states(states).await
    }

    /// Removes up to `chunk` of a deleting job's tasks; when none are left,
    /// removes the job itself. Returns true once the job is gone.
    pub async fn purge_job(&self, id: &str, chunk: usize) -> Result<bool, Error> {
        self.backend.purge_job(id, chunk).await
    }
}
