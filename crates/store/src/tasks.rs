//! Tasks: the insert type, and the `Store` methods for tasks and for what
//! the scheduler and the background workers read.

use crate::backend::Durability;
use crate::backend::{AddCheck, DeleteCheck, TaskChange, TaskResults, Txn};
use crate::handle::Store;
use crate::types::{ListQuery, Page, Preconditions, Stored};
use wire::models::{CloudJob, CloudTask, TaskCountsResult, TaskStatistics};
use wire::time::Timestamp;
use wire::Error;

pub use crate::types::NewTask;

/// A job's task and slot counts by state and its total retries, read inside
/// the transaction of a change to the job.
pub fn counts(tx: &dyn Txn, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
    tx.task_counts(job_id)
}

/// Boxes a task change, unless it already is one (the scheduler's are): a
/// batch of them then goes to the backend without a new allocation.
fn task_change<F>(f: F) -> TaskChange
where
    F: FnOnce(&CloudJob, &mut CloudTask, Timestamp) -> Result<(), Error> + Send + 'static,
{
    let mut slot = Some(f);
    if let Some(boxed) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<TaskChange>>().and_then(Option::take) {
        return boxed;
    }
    Box::new(move |job, task, now| match slot {
        Some(f) => f(job, task, now),
        None => Err(Error::internal("a task change ran twice")),
    })
}

impl Store {
    /// Adds tasks to a job in one transaction. `check` sees the job as it is
    /// inside the transaction and may refuse the whole request. Each task
    /// gets its own result: `TaskExists` when its id is taken (also by an
    /// earlier task of the same request).
    pub async fn add_tasks<C>(&self, job_id: &str, tasks: Vec<NewTask>, check: C) -> Result<Vec<Result<(), Error>>, Error>
    where
        C: FnOnce(&CloudJob) -> Result<(), Error> + Send + 'static,
    {
        let check: AddCheck = Box::new(check);
        self.backend.add_tasks(job_id, tasks, check).await
    }

    /// The stored task; 404 `JobNotFound` or `TaskNotFound`.
    pub async fn get_task(&self, job_id: &str, task_id: &str) -> Result<Stored, Error> {
        self.backend.get_task(job_id, task_id).await
    }

    /// Reads, checks and changes a task in one transaction; `f` may refuse.
    pub async fn update_task<F>(&self, job_id: &str, task_id: &str, pre: Preconditions, f: F) -> Result<Stored, Error>
    where
        F: FnOnce(&CloudJob, &mut CloudTask, Timestamp) -> Result<(), Error> + Send + 'static,
    {
        self.backend.update_task(job_id, task_id, pre, task_change(f)).await
    }

    /// Deletes a task after `check` accepts it.
    pub async fn delete_task<C>(&self, job_id: &str, task_id: &str, pre: Preconditions, check: C) -> Result<(), Error>
    where
        C: FnOnce(&CloudJob, &CloudTask) -> Result<(), Error> + Send + 'static,
    {
        let check: DeleteCheck = Box::new(check);
        self.backend.delete_task(job_id, task_id, pre, check).await
    }

    /// A page of a job's tasks in id order.
    pub async fn list_tasks(&self, job_id: &str, q: ListQuery) -> Result<Page, Error> {
        self.backend.list_tasks(job_id, q).await
    }

    /// Task and slot counts by state, from the counters, and the total retries.
    pub async fn task_counts(&self, job_id: &str) -> Result<(TaskCountsResult, i64), Error> {
        self.backend.task_counts(job_id).await
    }

    /// Tasks by state over every job, from the counters.
    pub async fn task_totals(&self) -> Result<crate::metrics::TaskTotals, Error> {
        self.backend.task_totals().await
    }

    /// Applies `f` to many tasks in one transaction (one fsync): each entry
    /// is (job id, task id, change); each gets its own result, and a refused
    /// change leaves its task untouched. The write is queued now, before the
    /// returned future is polled.
    pub fn update_tasks<F>(
        &self,
        changes: Vec<(String, String, F)>,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<TaskResults, Error>> + Send + 'static
    where
        F: FnOnce(&CloudJob, &mut CloudTask, Timestamp) -> Result<(), Error> + Send + 'static,
    {
        // Already boxed changes are collected in place (same layout).
        let changes = changes.into_iter().map(|(job, task, f)| (job, task, task_change(f))).collect();
        self.backend.update_tasks(changes, durability)
    }

    /// The sum of the resource statistics of a job's tasks (those that ran).
    pub async fn job_task_stats(&self, job_id: &str) -> Result<Option<TaskStatistics>, Error> {
        self.backend.job_task_stats(job_id).await
    }
}

/// What the scheduler and the background workers read.
impl Store {
    /// A pool's task counts for autoscale (see [`crate::backend::PoolTaskCounts`]).
    pub async fn pool_task_counts(&self, pool_id: &str) -> Result<crate::backend::PoolTaskCounts, Error> {
        self.backend.pool_task_counts(pool_id).await
    }

    /// Active jobs on a pool, highest priority first, then oldest.
    pub async fn schedulable_jobs(&self, pool_id: &str) -> Result<Vec<CloudJob>, Error> {
        self.backend.schedulable_jobs(pool_id).await
    }

    /// Up to `limit` of a job's active tasks, in id order, skipping those that
    /// wait for dependencies.
    /// Only tasks needing at most `max_slots` slots: those that fit no node
    /// wait without holding up the rest of the job.
    pub async fn ready_tasks(&self, job_id: &str, limit: usize, max_slots: u32) -> Result<Vec<CloudTask>, Error> {
        self.backend.ready_tasks(job_id, limit, max_slots).await
    }

    /// Completed tasks whose directories are due for deletion by `now`:
    /// (job id, task id).
    pub async fn due_cleanups(&self, now: Timestamp, limit: usize) -> Result<Vec<(String, String)>, Error> {
        self.backend.due_cleanups(now, limit).await
    }

    /// Tasks assigned to a node: (job id, task id, attempt).
    pub async fn tasks_on_node(&self, node_id: &str) -> Result<Vec<(String, String, u64)>, Error> {
        self.backend.tasks_on_node(node_id).await
    }

    /// Every task assigned to some node: (job id, task id, node id, attempt).
    pub async fn assigned_tasks(&self) -> Result<Vec<(String, String, String, u64)>, Error> {
        self.backend.assigned_tasks().await
    }

    /// The highest attempt id handed out so far.
    pub async fn max_attempt(&self) -> Result<u64, Error> {
        self.backend.max_attempt().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a boxed change's captured state lives.
    fn address(f: &TaskChange) -> *const () {
        &**f as *const _ as *const ()
    }

    #[test]
    fn a_change_that_is_already_boxed_is_passed_through() {
        // It captures something, so the box is a real allocation.
        let id = String::from("x");
        let boxed: TaskChange = Box::new(move |_, t, _| {
            t.id.clone_from(&id);
            Ok(())
        });
        let before = address(&boxed);
        let passed = task_change(boxed);
        assert_eq!(address(&passed), before, "the same box, not a box around it");
    }
}
