//! A [`Backend`] that forwards every call to another and, once a call's
//! result is ready, awaits a hook given the method's name before handing the
//! result back. For tests of the layers above the store: count the calls
//! made, or hold one back to reproduce a race (a read that saw the database
//! before a commit that happened while it was being answered).

use crate::backend::{
    AddCheck, Assignment, Backend, DeleteCheck, DocChange, JobChange, JobInState, Lease, NodeTask, PoolTaskCounts, Signals, StoreFuture,
    TaskChange, TaskResults,
};
use crate::backend::{BoxFuture, Durability};
use crate::doc_table::DocTable;
use crate::types::{EtagClock, ListQuery, NewTask, Page, Preconditions, Stored};
use std::sync::Arc;
use wire::enums::*;
use wire::models::*;
use wire::time::Timestamp;
use wire::Error;

/// Awaited after each call, with the method's name.
pub type Hook = Arc<dyn Fn(&'static str) -> BoxFuture<'static, ()> + Send + Sync>;

/// See the module's documentation.
pub struct Hooked {
    inner: Arc<dyn Backend>,
    hook: Hook,
}

impl Hooked {
    pub fn new(inner: Arc<dyn Backend>, hook: Hook) -> Hooked {
        Hooked { inner, hook }
    }

    /// The call, then the hook (the call is made now: a write is queued
    /// before this returns, as the backend promises).
    fn after<'a, T: Send + 'a>(&self, name: &'static str, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        let hook = self.hook.clone();
        Box::pin(async move {
            let r = call.await;
            hook(name).await;
            r
        })
    }
}

impl Backend for Hooked {
    fn etags(&self) -> &Arc<EtagClock> {
        self.inner.etags()
    }
    fn signals(&self) -> &Arc<Signals> {
        self.inner.signals()
    }
    fn create_job(&self, job: CloudJob) -> StoreFuture<'_, Stored> {
        self.after("create_job", self.inner.create_job(job))
    }
    fn get_job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Stored> {
        self.after("get_job", self.inner.get_job(id))
    }
    fn update_job<'a>(&'a self, id: &'a str, pre: Preconditions, f: JobChange) -> StoreFuture<'a, Stored> {
        self.after("update_job", self.inner.update_job(id, pre, f))
    }
    fn list_jobs(&self, q: ListQuery) -> StoreFuture<'_, Page> {
        self.after("list_jobs", self.inner.list_jobs(q))
    }
    fn list_schedule_jobs<'a>(&'a self, schedule: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        self.after("list_schedule_jobs", self.inner.list_schedule_jobs(schedule, q))
    }
    fn active_jobs_with_wall_clock(&self) -> StoreFuture<'_, Vec<CloudJob>> {
        self.after("active_jobs_with_wall_clock", self.inner.active_jobs_with_wall_clock())
    }
    fn jobs_in_states<'a>(&'a self, states: &'a [JobState]) -> StoreFuture<'a, Vec<JobInState>> {
        self.after("jobs_in_states", self.inner.jobs_in_states(states))
    }
    fn purge_job<'a>(&'a self, id: &'a str, chunk: usize) -> StoreFuture<'a, bool> {
        self.after("purge_job", self.inner.purge_job(id, chunk))
    }
    fn add_tasks<'a>(&'a self, job_id: &'a str, tasks: Vec<NewTask>, check: AddCheck) -> StoreFuture<'a, Vec<Result<(), Error>>> {
        self.after("add_tasks", self.inner.add_tasks(job_id, tasks, check))
    }
    fn get_task<'a>(&'a self, job_id: &'a str, task_id: &'a str) -> StoreFuture<'a, Stored> {
        self.after("get_task", self.inner.get_task(job_id, task_id))
    }
    fn update_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, f: TaskChange) -> StoreFuture<'a, Stored> {
        self.after("update_task", self.inner.update_task(job_id, task_id, pre, f))
    }
    fn delete_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, check: DeleteCheck) -> StoreFuture<'a, ()> {
        self.after("delete_task", self.inner.delete_task(job_id, task_id, pre, check))
    }
    fn update_tasks(&self, changes: Vec<(String, String, TaskChange)>, durability: Durability) -> StoreFuture<'static, TaskResults> {
        self.after("update_tasks", self.inner.update_tasks(changes, durability))
    }
    fn list_tasks<'a>(&'a self, job_id: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        self.after("list_tasks", self.inner.list_tasks(job_id, q))
    }
    fn task_counts<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, (TaskCountsResult, i64)> {
        self.after("task_counts", self.inner.task_counts(job_id))
    }
    fn task_totals(&self) -> StoreFuture<'_, crate::metrics::TaskTotals> {
        self.after("task_totals", self.inner.task_totals())
    }
    fn job_task_stats<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<TaskStatistics>> {
        self.after("job_task_stats", self.inner.job_task_stats(job_id))
    }
    fn pool_task_counts<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, PoolTaskCounts> {
        self.after("pool_task_counts", self.inner.pool_task_counts(pool_id))
    }
    fn schedulable_jobs<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, Vec<CloudJob>> {
        self.after("schedulable_jobs", self.inner.schedulable_jobs(pool_id))
    }
    fn ready_tasks<'a>(&'a self, job_id: &'a str, limit: usize, max_slots: u32) -> StoreFuture<'a, Vec<CloudTask>> {
        self.after("ready_tasks", self.inner.ready_tasks(job_id, limit, max_slots))
    }
    fn tasks_on_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, Vec<NodeTask>> {
        self.after("tasks_on_node", self.inner.tasks_on_node(node_id))
    }
    fn assigned_tasks(&self) -> StoreFuture<'_, Vec<Assignment>> {
        self.after("assigned_tasks", self.inner.assigned_tasks())
    }
    fn max_attempt(&self) -> StoreFuture<'_, u64> {
        self.after("max_attempt", self.inner.max_attempt())
    }
    fn due_cleanups(&self, now: Timestamp, limit: usize) -> StoreFuture<'_, Vec<(String, String)>> {
        self.after("due_cleanups", self.inner.due_cleanups(now, limit))
    }
    fn create_doc<'a>(
        &'a self,
        t: DocTable,
        id: &'a str,
        text: String,
        state: String,
        etag: String,
        lm: String,
    ) -> StoreFuture<'a, Stored> {
        self.after("create_doc", self.inner.create_doc(t, id, text, state, etag, lm))
    }
    fn get_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, Stored> {
        self.after("get_doc", self.inner.get_doc(t, id))
    }
    fn update_doc<'a>(&'a self, t: DocTable, id: &'a str, pre: Preconditions, f: DocChange) -> StoreFuture<'a, Stored> {
        self.after("update_doc", self.inner.update_doc(t, id, pre, f))
    }
    fn list_docs(&self, t: DocTable, q: ListQuery) -> StoreFuture<'_, Page> {
        self.after("list_docs", self.inner.list_docs(t, q))
    }
    fn all_docs(&self, t: DocTable) -> StoreFuture<'_, Vec<String>> {
        self.after("all_docs", self.inner.all_docs(t))
    }
    fn remove_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, ()> {
        self.after("remove_doc", self.inner.remove_doc(t, id))
    }
    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        self.after("acquire_lease", self.inner.acquire_lease(name, holder, ttl, now))
    }
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        token: u64,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        self.after("renew_lease", self.inner.renew_lease(name, holder, token, ttl, now))
    }
    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str, token: u64) -> StoreFuture<'a, bool> {
        self.after("release_lease", self.inner.release_lease(name, holder, token))
    }
    fn add_pool_usage(&self, usage: Vec<crate::backend::PoolUsage>) -> StoreFuture<'_, ()> {
        self.after("add_pool_usage", self.inner.add_pool_usage(usage))
    }
    fn pool_usage(&self, from: i64, to: i64) -> StoreFuture<'_, Vec<crate::backend::PoolUsage>> {
        self.after("pool_usage", self.inner.pool_usage(from, to))
    }
    fn latest_pool_usage(&self) -> StoreFuture<'_, Option<i64>> {
        self.after("latest_pool_usage", self.inner.latest_pool_usage())
    }
    fn current_lease<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Lease>> {
        self.after("current_lease", self.inner.current_lease(name))
    }
    fn set_fence(&self, fence: Arc<crate::fence::Fence>) -> Result<(), Error> {
        self.inner.set_fence(fence)
    }
}
