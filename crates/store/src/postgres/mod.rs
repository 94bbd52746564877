//! The PostgreSQL backend: the same rows, rules and guarantees as the
//! embedded SQLite store ([`crate::sqlite`]), on a PostgreSQL server.
//!
//! * Writes: one writer thread on one connection with group commit
//!   ([`writer`], over `crate::group` like SQLite's): closures run inside the
//!   transaction, each in its own savepoint, in submission order; a write is
//!   answered after its commit (synced writes with `synchronous_commit`
//!   on, the server's default).
//! * Reads: a pool of connections (`deadpool-postgres` over
//!   `tokio-postgres`, asynchronous, statements prepared once per
//!   connection); they see committed data only.
//! * Schema: the same tables and columns as SQLite's, with compared text
//!   `COLLATE "C"` (byte order, as SQLite); versioned migrations ([`db`]).
//! * `$filter` compiles to SQL ([`filter_sql`]) over the same property
//!   table as SQLite's (`sqlite::fields`).
//!
//! The closures the [`Backend`] takes are synchronous and may read inside
//! their transaction ([`Txn`]), so the writer uses the blocking client
//! (`postgres`, the same protocol implementation as `tokio-postgres`) on
//! its own thread.
//!
//! Not yet: the generation counters move for this server's own commits
//! only; servers sharing a database (replicas) need them moved for each
//! other's changes too (`LISTEN`/`NOTIFY`), which comes with replicas.

pub mod db;
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
use crate::group;
use crate::types::NewTask;
use crate::types::{EtagClock, ListQuery, Page, Preconditions, Stored};
use std::sync::Arc;
use wire::enums::JobState;
use wire::models::{CloudJob, CloudTask, TaskCountsResult, TaskStatistics};
use wire::time::Timestamp;
use wire::Error;
pub use writer::PgConn;
use writer::{pg, PgEngine};

/// Connections in the read pool.
const READ_POOL: usize = 16;

/// The PostgreSQL backend.
pub struct Postgres {
    writer: group::Writer<PgConn>,
    pool: deadpool_postgres::Pool,
    etags: Arc<EtagClock>,
    signals: Arc<Signals>,
    /// The lease every write is checked against (replicas; see `crate::Fence`).
    fence: std::sync::OnceLock<Arc<crate::fence::Fence>>,
}

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    // `password=` in a query string or the key=value form.
    let mut from = 0;
    while let Some(i) = out[from..].find("password=").map(|i| i + from) {
        let start = i + "password=".len();
        let end = out[start..].find(['&', ' ']).map(|e| e + start).unwrap_or(out.len());
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

impl Postgres {
    /// Connects to the database at `url`
    /// (`postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?options]`, or the
    /// key=value form libpq takes), applies pending migrations and starts
    /// the writer. The database must exist.
    pub async fn connect(url: &str) -> Result<Postgres, String> {
        let bad = |e: tokio_postgres::Error| format!("bad database URL {}: {e}", redact(url));
        let read_config: tokio_postgres::Config = url.parse().map_err(bad)?;
        let write_config: postgres::Config = url.parse().map_err(bad)?;
        if read_config.get_hosts().is_empty() {
            return Err(format!("the database URL {} names no host", redact(url)));
        }
        // The blocking client runs its own runtime: connect off this one.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shown = redact(url);
        std::thread::Builder::new()
            .name("openbatch-pg-connect".into())
            .spawn(move || {
                let r = (|| {
                    let mut client = write_config.connect(postgres::NoTls).map_err(|e| format!("cannot connect to {shown}: {e}"))?;
                    db::migrate(&mut client).map_err(|e| format!("{shown}: {e}"))?;
                    Ok::<_, String>(PgEngine::new(PgConn::new(client), write_config))
                })();
                let _ = tx.send(r);
            })
            .map_err(|e| e.to_string())?;
        let engine = rx.await.map_err(|_| "the connecting thread stopped".to_string())??;
        let manager = deadpool_postgres::Manager::from_config(
            read_config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(manager).max_size(READ_POOL).build().map_err(|e| e.to_string())?;
        // Fail now, not at the first request, when reads cannot connect.
        drop(pool.get().await.map_err(|e| format!("cannot connect to {}: {e}", redact(url)))?);
        Ok(Postgres {
            writer: group::Writer::start(engine, "openbatch-writer", writer::MAX_GROUP),
            pool,
            etags: Arc::new(EtagClock::default()),
            signals: Arc::new(Signals::default()),
            fence: std::sync::OnceLock::new(),
        })
    }

    /// Runs `f` in the writer's transaction (synced).
    pub async fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut PgConn) -> Result<R, Error> + Send + 'static,
    {
        self.submit(f, Durability::Synced).await
    }

    /// Queues a write now (writes run in submission order); the returned
    /// future resolves after its commit. With a fence (replicas), the write
    /// first checks, in its own transaction, that this server still holds
    /// the lease (`fenced`).
    pub fn submit<R, F>(&self, f: F, durability: Durability) -> impl std::future::Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&mut PgConn) -> Result<R, Error> + Send + 'static,
    {
        let fence = self.fence.get().cloned();
        self.writer.submit(
            move |c: &mut PgConn| {
                if let Some(fence) = &fence {
                    fenced(c, fence)?;
                }
                f(c)
            },
            durability,
        )
    }

    /// A write that is not fenced: the lease operations themselves.
    pub(crate) async fn write_unfenced<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut PgConn) -> Result<R, Error> + Send + 'static,
    {
        self.writer.submit(f, Durability::Synced).await
    }

    /// A pooled read connection.
    async fn reader(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg)
    }

    /// Runs a fixed query (prepared once per connection) on a read connection.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let c = self.reader().await?;
        let s = c.prepare_cached(sql).await.map_err(pg)?;
        c.query(&s, params).await.map_err(pg)
    }

    /// Runs a fixed query of at most one row on a read connection.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, Error> {
        let c = self.reader().await?;
        let s = c.prepare_cached(sql).await.map_err(pg)?;
        c.query_opt(&s, params).await.map_err(pg)
    }

    /// Runs a query built at run time (a `$filter`): not kept prepared, so
    /// clients' filters do not pile up statements on the connections.
    pub(crate) async fn query_dynamic(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let c = self.reader().await?;
        c.query(sql, params).await.map_err(pg)
    }
}

/// Refuses the write unless this server may act (`Fence::acting`, its own
/// clock) and the lease row still names its holder and token. The row is
/// read `FOR SHARE`: another server's grant (`FOR UPDATE`) waits for this
/// transaction's commit, so a write either commits before a change of hands
/// or sees it. Checked once per transaction while its savepoints succeed
/// (a rolled-back savepoint gives the row lock back, see `PgConn::fenced`).
fn fenced(c: &mut PgConn, fence: &crate::fence::Fence) -> Result<(), Error> {
    let token = fence.token();
    if !fence.acting() {
        return Err(fence.refused());
    }
    if c.fenced == Some(token) {
        return Ok(());
    }
    let row = c.query_opt("SELECT holder, token FROM leases WHERE name = $1 FOR SHARE", &[&fence.name])?;
    let ok =
        row.is_some_and(|r| r.get::<_, Option<String>>(0).as_deref() == Some(fence.holder.as_str()) && r.get::<_, i64>(1) == token as i64);
    if !ok {
        fence.revoke();
        return Err(fence.refused());
    }
    c.fenced = Some(token);
    Ok(())
}

/// Parses a stored Last-Modified.
fn timestamp(text: &str) -> Timestamp {
    wire::time::parse_datetime(text).map(Timestamp).unwrap_or_else(Timestamp::now)
}

/// Each method runs the inherent method of the same name (in `jobs.rs`,
/// `tasks.rs`, `pools.rs`, `leases.rs`) and boxes its future.
impl Backend for Postgres {
    fn etags(&self) -> &Arc<EtagClock> {
        &self.etags
    }
    fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    fn create_job(&self, job: CloudJob) -> StoreFuture<'_, Stored> {
        Box::pin(Postgres::create_job(self, job))
    }
    fn get_job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Stored> {
        Box::pin(Postgres::get_job(self, id))
    }
    fn update_job<'a>(&'a self, id: &'a str, pre: Preconditions, f: JobChange) -> StoreFuture<'a, Stored> {
        Box::pin(Postgres::update_job(self, id, pre, f))
    }
    fn list_jobs(&self, q: ListQuery) -> StoreFuture<'_, Page> {
        Box::pin(Postgres::list_jobs(self, q))
    }
    fn list_schedule_jobs<'a>(&'a self, schedule: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        Box::pin(Postgres::list_schedule_jobs(self, schedule, q))
    }
    fn active_jobs_with_wall_clock(&self) -> StoreFuture<'_, Vec<CloudJob>> {
        Box::pin(Postgres::active_jobs_with_wall_clock(self))
    }
    fn jobs_in_states<'a>(&'a self, states: &'a [JobState]) -> StoreFuture<'a, Vec<JobInState>> {
        Box::pin(Postgres::jobs_in_states(self, states))
    }
    fn purge_job<'a>(&'a self, id: &'a str, chunk: usize) -> StoreFuture<'a, bool> {
        Box::pin(Postgres::purge_job(self, id, chunk))
    }

    fn add_tasks<'a>(&'a self, job_id: &'a str, tasks: Vec<NewTask>, check: AddCheck) -> StoreFuture<'a, Vec<Result<(), Error>>> {
        Box::pin(Postgres::add_tasks(self, job_id, tasks, check))
    }
    fn get_task<'a>(&'a self, job_id: &'a str, task_id: &'a str) -> StoreFuture<'a, Stored> {
        Box::pin(Postgres::get_task(self, job_id, task_id))
    }
    fn update_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, f: TaskChange) -> StoreFuture<'a, Stored> {
        Box::pin(Postgres::update_task(self, job_id, task_id, pre, f))
    }
    fn delete_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, check: DeleteCheck) -> StoreFuture<'a, ()> {
        Box::pin(Postgres::delete_task(self, job_id, task_id, pre, check))
    }
    fn update_tasks(&self, changes: Vec<(String, String, TaskChange)>, durability: Durability) -> StoreFuture<'static, TaskResults> {
        Box::pin(Postgres::update_tasks(self, changes, durability))
    }
    fn list_tasks<'a>(&'a self, job_id: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        Box::pin(Postgres::list_tasks(self, job_id, q))
    }
    fn task_counts<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, (TaskCountsResult, i64)> {
        Box::pin(Postgres::task_counts(self, job_id))
    }
    fn task_totals(&self) -> StoreFuture<'_, crate::metrics::TaskTotals> {
        Box::pin(Postgres::task_totals(self))
    }
    fn pool_task_counts<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, crate::backend::PoolTaskCounts> {
        Box::pin(Postgres::pool_task_counts(self, pool_id))
    }
    fn job_task_stats<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<TaskStatistics>> {
        Box::pin(Postgres::job_task_stats(self, job_id))
    }

    fn schedulable_jobs<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, Vec<CloudJob>> {
        Box::pin(Postgres::schedulable_jobs(self, pool_id))
    }
    fn ready_tasks<'a>(&'a self, job_id: &'a str, limit: usize, max_slots: u32) -> StoreFuture<'a, Vec<CloudTask>> {
        Box::pin(Postgres::ready_tasks(self, job_id, limit, max_slots))
    }
    fn tasks_on_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, Vec<NodeTask>> {
        Box::pin(Postgres::tasks_on_node(self, node_id))
    }
    fn assigned_tasks(&self) -> StoreFuture<'_, Vec<Assignment>> {
        Box::pin(Postgres::assigned_tasks(self))
    }
    fn max_attempt(&self) -> StoreFuture<'_, u64> {
        Box::pin(Postgres::max_attempt(self))
    }
    fn due_cleanups(&self, now: Timestamp, limit: usize) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(Postgres::due_cleanups(self, now, limit))
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
        Box::pin(Postgres::create_doc(self, t, id, text, state, etag, lm))
    }
    fn get_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, Stored> {
        Box::pin(Postgres::get_doc(self, t, id))
    }
    fn update_doc<'a>(&'a self, t: DocTable, id: &'a str, pre: Preconditions, f: DocChange) -> StoreFuture<'a, Stored> {
        Box::pin(Postgres::update_doc(self, t, id, pre, f))
    }
    fn list_docs(&self, t: DocTable, q: ListQuery) -> StoreFuture<'_, Page> {
        Box::pin(Postgres::list_docs(self, t, q))
    }
    fn all_docs(&self, t: DocTable) -> StoreFuture<'_, Vec<String>> {
        Box::pin(Postgres::all_docs(self, t))
    }
    fn remove_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(Postgres::remove_doc(self, t, id))
    }

    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(Postgres::acquire_lease(self, name, holder, ttl, now))
    }
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        token: u64,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(Postgres::renew_lease(self, name, holder, token, ttl, now))
    }
    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str, token: u64) -> StoreFuture<'a, bool> {
        Box::pin(Postgres::release_lease(self, name, holder, token))
    }
    fn add_pool_usage(&self, usage: Vec<crate::backend::PoolUsage>) -> StoreFuture<'_, ()> {
        Box::pin(Postgres::add_pool_usage(self, usage))
    }
    fn pool_usage(&self, from: i64, to: i64) -> StoreFuture<'_, Vec<crate::backend::PoolUsage>> {
        Box::pin(Postgres::pool_usage(self, from, to))
    }
    fn latest_pool_usage(&self) -> StoreFuture<'_, Option<i64>> {
        Box::pin(Postgres::latest_pool_usage(self))
    }
    fn current_lease<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(Postgres::current_lease(self, name))
    }
    fn set_fence(&self, fence: Arc<crate::fence::Fence>) -> Result<(), Error> {
        self.fence.set(fence).map_err(|_| Error::internal("the store is fenced already"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(super::redact("postgresql://u:secret@h:5432/db"), "postgresql://u:***@h:5432/db");
        assert_eq!(super::redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(super::redact("host=/tmp user=u"), "host=/tmp user=u");
        assert_eq!(super::redact("host=/tmp password=pw user=u"), "host=/tmp password=*** user=u");
        assert_eq!(super::redact("postgresql://u@h/db?password=pw&x=1"), "postgresql://u@h/db?password=***&x=1");
    }
}
