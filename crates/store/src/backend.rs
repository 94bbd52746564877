//! The interface between openbatch and the database that keeps its state.
//!
//! [`Backend`] is everything the HTTP handlers and the control plane ask of
//! durable state: documents (jobs, pools, job schedules), task inserts and
//! changes (one at a time and in batches, with a [`Durability`]), keyset-paged
//! lists with `$filter`, counts, the queries the scheduler and the
//! background workers run, the generation counters that tell caches when
//! to look again ([`Signals`]), and named leases with fencing tokens.
//! [`crate::Store`] is the handle everyone holds; it owns an
//! `Arc<dyn Backend>` and forwards. The embedded SQLite implementation is
//! [`crate::sqlite::Sqlite`].
//!
//! What every implementation must guarantee:
//!
//! * A change's closure ([`JobChange`], [`TaskChange`], ...) runs inside the
//!   transaction that reads the current resource and writes it back, so a
//!   rule that checks current state and then acts is atomic. A closure that
//!   returns an error leaves no trace, and only its own change is undone
//!   (others batched with it commit). Closures are synchronous: they run on
//!   whatever thread the backend runs its transactions on.
//! * A write's future resolves only after its transaction committed with the
//!   durability asked for ([`Durability`]); writes issued one after another
//!   by one caller commit in that order. [`Backend::update_tasks`] queues its
//!   write when it is called, not when its future is first polled: the
//!   scheduler relies on an assignment being queued before any later change
//!   to the same attempt.
//! * Ids are unique case-insensitively ([`crate::key_of`]); documents keep the
//!   case they were created with.
//! * Lists are in key order; `ListQuery::after` continues after a key, and
//!   `Page::next` is the last key returned when there are more. A `$filter`
//!   the backend cannot evaluate is a 400 `InvalidQueryParameterValue`
//!   naming `$filter`, before anything is read.
//! * Task counts (`task_counts`) and job statistics never scan a job's tasks,
//!   and a task waiting for dependencies is not returned by `ready_tasks`
//!   until every dependency is satisfied (`wire::workflow`).
//! * [`Signals`] move after the commits they describe (see there).
//!
//! Errors are Batch errors (`wire::Error`): the resource's not-found and
//! already-exists codes as documented per method, and `Error::internal` for
//! database failures.

use crate::doc_table::DocTable;
use crate::types::NewTask;
use crate::types::{EtagClock, ListQuery, Page, Preconditions, Stored};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wire::enums::JobState;
use wire::models::{CloudJob, CloudTask, TaskCountsResult, TaskStatistics};
use wire::time::Timestamp;
use wire::Error;

/// A boxed future: what the object-safe [`Backend`] returns from its
/// asynchronous methods (one allocation per call).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every asynchronous [`Backend`] method returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, Error>>;

/// A job's id, state and state transition time ([`Backend::jobs_in_states`]).
pub type JobInState = (String, JobState, Timestamp);
/// A task assigned to a node: (job id, task id, attempt).
pub type NodeTask = (String, String, u64);
/// A task's assignment: (job id, task id, node id, attempt).
pub type Assignment = (String, String, String, u64);

/// The task counts an autoscale formula samples for a pool, over the pool's
/// active jobs: `active` counts only tasks whose dependencies are met, and
/// `active` and `running` count every instance of a multi-instance task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolTaskCounts {
    pub active: u64,
    /// Preparing or running.
    pub running: u64,
    /// Completed with result `success`, or `failure`.
    pub succeeded: u64,
    pub failed: u64,
}

/// What a change to a job may read inside the transaction that makes it.
pub trait Txn {
    /// The state of a pool (`active`, `deleting`, ...), or None when there is
    /// no such pool.
    fn pool_state(&self, pool_id: &str) -> Result<Option<String>, Error>;
    /// A job's task and slot counts by state, and the total retries of its
    /// tasks.
    fn task_counts(&self, job_id: &str) -> Result<(TaskCountsResult, i64), Error>;
}

/// Checks and changes a job; gets the transaction, the job as stored and the
/// time the change is made at. An error refuses the change.
pub type JobChange = Box<dyn FnOnce(&dyn Txn, &mut CloudJob, Timestamp) -> Result<(), Error> + Send>;
/// Checks and changes a task; gets its job, the task as stored and the time.
pub type TaskChange = Box<dyn FnOnce(&CloudJob, &mut CloudTask, Timestamp) -> Result<(), Error> + Send>;
/// Decides whether tasks may be added to a job, as the job is inside the
/// transaction that adds them.
pub type AddCheck = Box<dyn FnOnce(&CloudJob) -> Result<(), Error> + Send>;
/// Decides whether a task may be deleted.
pub type DeleteCheck = Box<dyn FnOnce(&CloudJob, &CloudTask) -> Result<(), Error> + Send>;
/// Checks and changes a document (pool, job schedule); gets the document and
/// the time.
pub type DocChange = Box<dyn FnOnce(&mut serde_json::Map<String, serde_json::Value>, Timestamp) -> Result<(), Error> + Send>;

/// The results of a batch of task changes: one per change, in order.
pub type TaskResults = Vec<Result<CloudTask, Error>>;

/// How a write must reach the disk before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage before the caller hears back (everything a client is
    /// told).
    Synced,
    /// Survives the server process being killed, but may be lost with the
    /// machine's power until a later synced write: for the server's own
    /// bookkeeping that it can rebuild (agent reports; a lost one means a
    /// task runs again, which Batch allows). Committed within a short bound
    /// (SQLite: 20 ms) so batches of them share commits.
    Relaxed,
    /// As `Relaxed`, committed sooner (SQLite: within 3 ms): work waits on
    /// it (a completion that may release dependents, end the job or be
    /// retried; a requeue).
    Prompt,
}

/// Counters that move when state that callers cache changed, and the wake-up
/// of the scheduler. A backend owns one and moves it after its commits; a
/// backend shared by several servers also moves it for changes made
/// elsewhere.
#[derive(Debug, Default)]
pub struct Signals {
    jobs: AtomicU64,
    tasks: AtomicU64,
    ready: Arc<tokio::sync::Notify>,
}

impl Signals {
    /// Grows with every committed change to any job (creation, change,
    /// removal), so callers can cache job lists.
    pub fn job_generation(&self) -> u64 {
        self.jobs.load(Ordering::SeqCst)
    }

    /// Grows whenever a task may have become ready or a ready task changed:
    /// tasks added, a client's change to a task (before and after its
    /// write), and any write that returns a task to `active` (retries,
    /// requeues, released dependents). The scheduler keeps what it read of
    /// ready tasks while it stands still.
    pub fn task_generation(&self) -> u64 {
        self.tasks.load(Ordering::SeqCst)
    }

    /// Some job changed (call after the commit).
    pub fn jobs_changed(&self) {
        self.jobs.fetch_add(1, Ordering::SeqCst);
    }

    /// Tasks may have become ready (call after the commit): moves the task
    /// generation and wakes the scheduler.
    pub fn tasks_changed(&self) {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        self.ready.notify_one();
    }

    /// Notified by [`Signals::tasks_changed`]; the scheduler waits on it.
    pub fn ready(&self) -> &Arc<tokio::sync::Notify> {
        &self.ready
    }
}

/// Seconds in one pool usage interval (see `crate::usage`).
pub const USAGE_INTERVAL_SECS: i64 = 3600;

/// One pool's usage in one hour (`start`: Unix seconds, a multiple of
/// [`USAGE_INTERVAL_SECS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUsage {
    pub pool_id: String,
    pub start: i64,
    /// The pool's VM size (the last one recorded in the hour).
    pub vm_size: String,
    pub core_hours: f64,
}

/// A named lease granted to a holder until `expires`.
///
/// `token` is the fencing token: it grows every time the lease passes to a
/// holder that did not hold it a moment before (a first grant, or a grant
/// after the previous holder released it or let it expire), and never
/// repeats, even across restarts. Whoever acts on behalf of a lease passes
/// the token along, so that work of a holder that lost the lease (paused,
/// partitioned) can be told apart from its successor's and refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub token: u64,
    pub expires: Timestamp,
}

/// Everything openbatch asks of its database. Object-safe: the server holds
/// an `Arc<dyn Backend>` (inside [`crate::Store`]).
///
/// Asynchronous methods return a [`BoxFuture`]; ids are matched
/// case-insensitively. Read the module documentation for the guarantees each
/// implementation must keep.
pub trait Backend: Send + Sync + 'static {
    /// The ETag source the backend stamps changes with; the handlers use the
    /// same one to stamp new resources.
    fn etags(&self) -> &Arc<EtagClock>;
    /// The generation counters and the scheduler's wake-up.
    fn signals(&self) -> &Arc<Signals>;

    // Jobs.

    /// Inserts a new job; 409 `JobExists` (`JobBeingDeleted` while an old
    /// one of that id is being deleted) when the id is taken; `PoolNotFound`
    /// or `PoolBeingDeleted` when it names a pool that cannot take it.
    fn create_job(&self, job: CloudJob) -> StoreFuture<'_, Stored>;
    /// The stored job, or 404 `JobNotFound`.
    fn get_job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Stored>;
    /// Reads the job, checks `pre`, applies `f` and writes it back with a new
    /// ETag and Last-Modified, in one transaction.
    fn update_job<'a>(&'a self, id: &'a str, pre: Preconditions, f: JobChange) -> StoreFuture<'a, Stored>;
    /// A page of jobs.
    fn list_jobs(&self, q: ListQuery) -> StoreFuture<'_, Page>;
    /// A page of the jobs a job schedule created (ids `{schedule}:job-{n}`).
    fn list_schedule_jobs<'a>(&'a self, schedule: &'a str, q: ListQuery) -> StoreFuture<'a, Page>;
    /// Active jobs whose `constraints.maxWallClockTime` is finite.
    fn active_jobs_with_wall_clock(&self) -> StoreFuture<'_, Vec<CloudJob>>;
    /// Id, state and state transition time of the jobs in `states`.
    fn jobs_in_states<'a>(&'a self, states: &'a [JobState]) -> StoreFuture<'a, Vec<JobInState>>;
    /// Removes up to `chunk` of a deleting job's tasks; once none are left,
    /// the job itself (only while it is `deleting`). True once it is gone.
    fn purge_job<'a>(&'a self, id: &'a str, chunk: usize) -> StoreFuture<'a, bool>;

    // Tasks.

    /// Adds tasks to a job in one synced transaction after `check` accepted
    /// the job: one result per task, `TaskExists` for an id already taken
    /// (also by an earlier task of the same call). `JobNotFound` for the
    /// whole call when the job is missing.
    fn add_tasks<'a>(&'a self, job_id: &'a str, tasks: Vec<NewTask>, check: AddCheck) -> StoreFuture<'a, Vec<Result<(), Error>>>;
    /// The stored task; 404 `JobNotFound` or `TaskNotFound`.
    fn get_task<'a>(&'a self, job_id: &'a str, task_id: &'a str) -> StoreFuture<'a, Stored>;
    /// Reads, checks (`pre`), changes and writes back one task (synced).
    fn update_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, f: TaskChange) -> StoreFuture<'a, Stored>;
    /// Deletes a task after `pre` and `check` accept it.
    fn delete_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, check: DeleteCheck) -> StoreFuture<'a, ()>;
    /// Applies many changes (job id, task id, change) in one transaction;
    /// each gets its own result and a refused one leaves its task untouched.
    /// Queued when called (see the module documentation).
    fn update_tasks(&self, changes: Vec<(String, String, TaskChange)>, durability: Durability) -> StoreFuture<'static, TaskResults>;
    /// A page of a job's tasks; `JobNotFound` when the job is missing.
    fn list_tasks<'a>(&'a self, job_id: &'a str, q: ListQuery) -> StoreFuture<'a, Page>;
    /// A job's task and slot counts and its tasks' total retries.
    fn task_counts<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, (TaskCountsResult, i64)>;
    /// Tasks by state over every job, from the counters (one row per job
    /// and state: no task is read).
    fn task_totals(&self) -> StoreFuture<'_, crate::metrics::TaskTotals>;
    /// The sum of the resource statistics of a job's tasks that ran.
    fn job_task_stats<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<TaskStatistics>>;

    // What the scheduler and the background workers read.

    /// Active jobs on a pool, highest priority first, then oldest.
    fn schedulable_jobs<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, Vec<CloudJob>>;
    /// Up to `limit` of a job's active tasks whose dependencies are all
    /// satisfied and that need at most `max_slots` slots, in key order.
    fn ready_tasks<'a>(&'a self, job_id: &'a str, limit: usize, max_slots: u32) -> StoreFuture<'a, Vec<CloudTask>>;
    /// A pool's task counts for autoscale (see [`PoolTaskCounts`]); must
    /// not read every task of a job that has many completed ones.
    fn pool_task_counts<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, PoolTaskCounts>;
    /// Tasks assigned to a node: (job id, task id, attempt).
    fn tasks_on_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, Vec<NodeTask>>;
    /// Every task assigned to some node: (job id, task id, node id, attempt).
    fn assigned_tasks(&self) -> StoreFuture<'_, Vec<Assignment>>;
    /// The highest attempt id stored in any task (0 when none).
    fn max_attempt(&self) -> StoreFuture<'_, u64>;
    /// Up to `limit` completed tasks whose directories are due for deletion
    /// by `now` (earliest first): (job id, task id).
    fn due_cleanups(&self, now: Timestamp, limit: usize) -> StoreFuture<'_, Vec<(String, String)>>;

    // Documents kept as JSON text (pools, job schedules).

    /// Creates a document from its JSON text, with its state, eTag and
    /// lastModified (also its creation time); `t`'s exists / being-deleted
    /// error when the id is taken.
    fn create_doc<'a>(&'a self, t: DocTable, id: &'a str, text: String, state: String, etag: String, lm: String)
        -> StoreFuture<'a, Stored>;
    /// The stored document, or `t`'s not-found error.
    fn get_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, Stored>;
    /// Reads, checks (`pre`), changes and writes back a document; the
    /// backend renews its `eTag` and `lastModified` members.
    fn update_doc<'a>(&'a self, t: DocTable, id: &'a str, pre: Preconditions, f: DocChange) -> StoreFuture<'a, Stored>;
    /// A page of documents.
    fn list_docs(&self, t: DocTable, q: ListQuery) -> StoreFuture<'_, Page>;
    /// Every document's text, in key order.
    fn all_docs(&self, t: DocTable) -> StoreFuture<'_, Vec<String>>;
    /// Removes a document (nothing when there is none).
    fn remove_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, ()>;

    // Leases (synced writes; times are the caller's clock).

    /// Grants the lease `name` to `holder` until `now + ttl` when it is free,
    /// expired, or already `holder`'s (then it is extended and keeps its
    /// token). None while another holder has it.
    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>>;
    /// Extends a lease its holder still has (same holder and token, not
    /// expired at `now`) to `now + ttl`; None when it was lost.
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        token: u64,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>>;
    /// Gives up a lease held by `holder` with `token`; false when it was not
    /// theirs (any more). The token is kept: the next grant gets a higher
    /// one.
    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str, token: u64) -> StoreFuture<'a, bool>;

    // Pool usage (see `crate::usage`; the server's own bookkeeping, `Relaxed`).

    /// Adds each entry's core-hours to its (hour, pool) bucket, creating it
    /// when new; the bucket's VM size becomes the entry's.
    fn add_pool_usage(&self, usage: Vec<PoolUsage>) -> StoreFuture<'_, ()>;
    /// The buckets whose hour starts in `[from, to)`, by hour, then pool id.
    fn pool_usage(&self, from: i64, to: i64) -> StoreFuture<'_, Vec<PoolUsage>>;
    /// The latest hour that has a bucket.
    fn latest_pool_usage(&self) -> StoreFuture<'_, Option<i64>>;
    /// The lease `name` as it stands (holder, token, expiry), read without
    /// changing it; None when it was never granted. For a replica that
    /// wants to know who leads.
    fn current_lease<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Lease>> {
        let _ = name;
        Box::pin(async { Err(Error::internal("this store does not read leases")) })
    }
    /// Fences every later write (except the lease operations) with `fence`
    /// (see [`crate::Fence`]): inside the write's transaction the lease row
    /// must carry the fence's holder and current token, or the write is
    /// refused. Only a backend that several servers can share needs it.
    fn set_fence(&self, fence: Arc<crate::fence::Fence>) -> Result<(), Error> {
        let _ = fence;
        Err(Error::internal("this store cannot fence writes (it is not shared between servers)"))
    }
}
