//! The embedded backend: one SQLite database under the data directory.
//!
//! * One writer thread with group commit ([`writer`]): a write is on disk
//!   before its caller hears back, and concurrent writes share one fsync.
//! * A small pool of read-only connections for queries (WAL lets them run
//!   beside the writer); they only ever see committed data.
//! * Each resource is a row holding its wire document plus the columns that
//!   are filtered, sorted or aggregated on; `$filter` compiles to SQL
//!   ([`filter_sql`], [`fields`]) and runs in the database.
//! * Rules that depend on current state run inside the writer's transaction,
//!   as closures the caller passes in, so check-then-act is atomic.
//! * Schema: versioned migrations ([`db`]).
//!
//! `jobs.rs`, `tasks.rs`, `pools.rs` and `leases.rs` implement the
//! [`Backend`] methods as inherent methods of [`Sqlite`]; the `impl Backend`
//! below forwards to them.

pub mod db;
pub mod fields;
pub mod filter_sql;
mod jobs;
mod leases;
mod pools;
mod tasks;
mod txn;
mod usage;
pub mod writer;

use crate::backend::Durability;
use crate::backend::{
    AddCheck, Assignment, Backend, DeleteCheck, DocChange, JobChange, JobInState, Lease, NodeTask, Signals, StoreFuture, TaskChange,
    TaskResults,
};
use crate::doc_table::DocTable;
use crate::types::NewTask;
use crate::types::{EtagClock, ListQuery, Page, Preconditions, Stored};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wire::enums::JobState;
use wire::models::{CloudJob, CloudTask, TaskCountsResult, TaskStatistics};
use wire::time::Timestamp;
use wire::Error;
pub use writer::Writer;

/// Maps a SQLite error to an internal Batch error.
pub(crate) fn sql(e: rusqlite::Error) -> Error {
    Error::internal(format!("database error: {e}"))
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn take(&self) -> Result<Connection, Error> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        db::open_reader(&self.path).map_err(Error::internal)
    }
    fn give(&self, c: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 16 {
            idle.push(c);
        }
    }
}

/// The SQLite backend.
pub struct Sqlite {
    writer: Writer,
    readers: Arc<ReadPool>,
    etags: Arc<EtagClock>,
    signals: Arc<Signals>,
}

impl Sqlite {
    /// Opens (creating if needed) the database in `data_dir`.
    /// The database holds every job's environment secrets: it and the
    /// WAL and shared-memory files SQLite makes beside it (which take the
    /// database file's mode) are the server user's only (0600), from their
    /// creation on; files of an older install are made so on open.
    pub fn open(data_dir: &Path) -> Result<Sqlite, String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let path = data_dir.join("openbatch.sqlite");
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = data_dir.join(format!("openbatch.sqlite{suffix}"));
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(|e| format!("cannot make {} private: {e}", file.display()))?,
            }
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let conn = db::open_writer(&path)?;
        Ok(Sqlite {
            writer: Writer::start(conn),
            readers: Arc::new(ReadPool { path, idle: Mutex::new(Vec::new()) }),
            etags: Arc::new(EtagClock::default()),
            signals: Arc::new(Signals::default()),
        })
    }

    /// Runs `f` in the writer's transaction (see [`writer`]).
    pub async fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Queues a write now (writes run in submission order); the returned
    /// future resolves after its commit.
    pub fn submit<R, F>(&self, f: F, durability: Durability) -> impl std::future::Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    {
        self.writer.submit(f, durability)
    }

    /// Runs a short query (a point lookup by key) on a pooled read-only
    /// connection right here: handing it to another thread would cost more
    /// than the query.
    pub fn read_now<R, F>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&Connection) -> Result<R, Error>,
    {
        let conn = self.readers.take()?;
        let r = f(&conn);
        self.readers.give(conn);
        r
    }

    /// Runs a query on a pooled read-only connection, off the async threads.
    pub async fn read<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let r = f(&conn);
            pool.give(conn);
            r
        })
        .await
        .map_err(|e| Error::internal(format!("query task failed: {e}")))?
    }
}

/// Each method runs the inherent method of the same name (in `jobs.rs`,
/// `tasks.rs`, `pools.rs`, `leases.rs`) and boxes its future.
impl Backend for Sqlite {
    fn etags(&self) -> &Arc<EtagClock> {
        &self.etags
    }
    fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    fn create_job(&self, job: CloudJob) -> StoreFuture<'_, Stored> {
        Box::pin(Sqlite::create_job(self, job))
    }
    fn get_job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Stored> {
        Box::pin(Sqlite::get_job(self, id))
    }
    fn update_job<'a>(&'a self, id: &'a str, pre: Preconditions, f: JobChange) -> StoreFuture<'a, Stored> {
        Box::pin(Sqlite::update_job(self, id, pre, f))
    }
    fn list_jobs(&self, q: ListQuery) -> StoreFuture<'_, Page> {
        Box::pin(Sqlite::list_jobs(self, q))
    }
    fn list_schedule_jobs<'a>(&'a self, schedule: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        Box::pin(Sqlite::list_schedule_jobs(self, schedule, q))
    }
    fn active_jobs_with_wall_clock(&self) -> StoreFuture<'_, Vec<CloudJob>> {
        Box::pin(Sqlite::active_jobs_with_wall_clock(self))
    }
    fn jobs_in_states<'a>(&'a self, states: &'a [JobState]) -> StoreFuture<'a, Vec<JobInState>> {
        Box::pin(Sqlite::jobs_in_states(self, states))
    }
    fn purge_job<'a>(&'a self, id: &'a str, chunk: usize) -> StoreFuture<'a, bool> {
        Box::pin(Sqlite::purge_job(self, id, chunk))
    }

    fn add_tasks<'a>(&'a self, job_id: &'a str, tasks: Vec<NewTask>, check: AddCheck) -> StoreFuture<'a, Vec<Result<(), Error>>> {
        Box::pin(Sqlite::add_tasks(self, job_id, tasks, check))
    }
    fn get_task<'a>(&'a self, job_id: &'a str, task_id: &'a str) -> StoreFuture<'a, Stored> {
        Box::pin(Sqlite::get_task(self, job_id, task_id))
    }
    fn update_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, f: TaskChange) -> StoreFuture<'a, Stored> {
        Box::pin(Sqlite::update_task(self, job_id, task_id, pre, f))
    }
    fn delete_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, check: DeleteCheck) -> StoreFuture<'a, ()> {
        Box::pin(Sqlite::delete_task(self, job_id, task_id, pre, check))
    }
    fn update_tasks(&self, changes: Vec<(String, String, TaskChange)>, durability: Durability) -> StoreFuture<'static, TaskResults> {
        Box::pin(Sqlite::update_tasks(self, changes, durability))
    }
    fn list_tasks<'a>(&'a self, job_id: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        Box::pin(Sqlite::list_tasks(self, job_id, q))
    }
    fn task_counts<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, (TaskCountsResult, i64)> {
        Box::pin(Sqlite::task_counts(self, job_id))
    }
    fn task_totals(&self) -> StoreFuture<'_, crate::metrics::TaskTotals> {
        Box::pin(Sqlite::task_totals(self))
    }
    fn job_task_stats<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<TaskStatistics>> {
        Box::pin(Sqlite::job_task_stats(self, job_id))
    }

    fn pool_task_counts<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, crate::backend::PoolTaskCounts> {
        Box::pin(Sqlite::pool_task_counts(self, pool_id))
    }
    fn schedulable_jobs<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, Vec<CloudJob>> {
        Box::pin(Sqlite::schedulable_jobs(self, pool_id))
    }
    fn ready_tasks<'a>(&'a self, job_id: &'a str, limit: usize, max_slots: u32) -> StoreFuture<'a, Vec<CloudTask>> {
        Box::pin(Sqlite::ready_tasks(self, job_id, limit, max_slots))
    }
    fn tasks_on_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, Vec<NodeTask>> {
        Box::pin(Sqlite::tasks_on_node(self, node_id))
    }
    fn assigned_tasks(&self) -> StoreFuture<'_, Vec<Assignment>> {
        Box::pin(Sqlite::assigned_tasks(self))
    }
    fn max_attempt(&self) -> StoreFuture<'_, u64> {
        Box::pin(Sqlite::max_attempt(self))
    }
    fn due_cleanups(&self, now: Timestamp, limit: usize) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(Sqlite::due_cleanups(self, now, limit))
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
        Box::pin(Sqlite::create_doc(self, t, id, text, state, etag, lm))
    }
    fn get_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, Stored> {
        Box::pin(Sqlite::get_doc(self, t, id))
    }
    fn update_doc<'a>(&'a self, t: DocTable, id: &'a str, pre: Preconditions, f: DocChange) -> StoreFuture<'a, Stored> {
        Box::pin(Sqlite::update_doc(self, t, id, pre, f))
    }
    fn list_docs(&self, t: DocTable, q: ListQuery) -> StoreFuture<'_, Page> {
        Box::pin(Sqlite::list_docs(self, t, q))
    }
    fn all_docs(&self, t: DocTable) -> StoreFuture<'_, Vec<String>> {
        Box::pin(Sqlite::all_docs(self, t))
    }
    fn remove_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(Sqlite::remove_doc(self, t, id))
    }

    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(Sqlite::acquire_lease(self, name, holder, ttl, now))
    }
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        token: u64,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(Sqlite::renew_lease(self, name, holder, token, ttl, now))
    }
    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str, token: u64) -> StoreFuture<'a, bool> {
        Box::pin(Sqlite::release_lease(self, name, holder, token))
    }
    fn add_pool_usage(&self, usage: Vec<crate::backend::PoolUsage>) -> StoreFuture<'_, ()> {
        Box::pin(Sqlite::add_pool_usage(self, usage))
    }
    fn pool_usage(&self, from: i64, to: i64) -> StoreFuture<'_, Vec<crate::backend::PoolUsage>> {
        Box::pin(Sqlite::pool_usage(self, from, to))
    }
    fn latest_pool_usage(&self) -> StoreFuture<'_, Option<i64>> {
        Box::pin(Sqlite::latest_pool_usage(self))
    }
    fn current_lease<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(Sqlite::current_lease(self, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // SAFETY: umask only changes this process's creation mask; 0 is the
        // most permissive, so whatever is private below was made so on purpose.
        let old = unsafe { libc_umask(0) };
        let store = Sqlite::open(&data);
        unsafe { libc_umask(old) };
        let store = store.unwrap();
        store.write(|c| c.execute_batch("CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1);").map_err(sql)).await.unwrap();
        assert_eq!(mode(&data), 0o700);
        for f in ["openbatch.sqlite", "openbatch.sqlite-wal", "openbatch.sqlite-shm"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        drop(store);
        // An older install's files are made private on open.
        for f in ["openbatch.sqlite", "openbatch.sqlite-wal", "openbatch.sqlite-shm"] {
            if data.join(f).exists() {
                std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _store = Sqlite::open(&data).unwrap();
        for f in ["openbatch.sqlite", "openbatch.sqlite-wal", "openbatch.sqlite-shm"] {
            if data.join(f).exists() {
                assert_eq!(mode(&data.join(f)), 0o600, "{f}");
            }
        }
    }

    extern "C" {
        #[link_name = "umask"]
        fn libc_umask(mask: u32) -> u32;
    }
}
