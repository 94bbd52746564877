//! Durable state for openbatch: an embedded SQLite database under the data
//! directory.
//!
//! * One writer thread with group commit ([`writer`]): a write is on disk
//!   before its caller hears back, and concurrent writes share one fsync.
//! * A small pool of read-only connections for queries (WAL lets them run
//!   beside the writer); they only ever see committed data.
//! * Each resource is a row holding its wire document plus the columns that
//!   are filtered, sorted or aggregated on; `$filter` compiles to SQL
//!   ([`filter_sql`]) and runs in the database.
//! * Rules that depend on current state run inside the writer's transaction,
//!   as closures the caller passes in, so check-then-act is atomic.

pub mod db;
pub mod fields;
pub mod filter_sql;
pub mod jobs;
pub mod pools;
pub mod tasks;
pub mod writer;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

pub use writer::{Durability, Writer};

/// A resource as stored: its wire document and concurrency metadata.
#[derive(Debug, Clone)]
pub struct Stored {
    pub doc: String,
    pub etag: String,
    pub last_modified: Timestamp,
}

/// One page of a list.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub docs: Vec<String>,
    /// The key to continue after, when there are more items.
    pub next: Option<String>,
}

/// The options of a list request, already parsed.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<wire::odata::Filter>,
    /// Continue after this key (from a `$skiptoken`).
    pub after: Option<String>,
    pub limit: usize,
}

/// Conditional-request headers, checked against the current resource inside
/// the same transaction as the change they guard.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub if_match: Option<Vec<String>>,
    pub if_none_match: Option<Vec<String>>,
    pub if_modified_since: Option<DateTime<Utc>>,
    pub if_unmodified_since: Option<DateTime<Utc>>,
}

fn etag_matches(list: &[String], etag: &str) -> bool {
    list.iter().any(|e| e == "*" || e == etag)
}

impl Preconditions {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none() && self.if_modified_since.is_none() && self.if_unmodified_since.is_none()
    }

    /// For GET and HEAD: 304 when the client's copy is current, 412 when an
    /// If-Match / If-Unmodified-Since condition fails.
    pub fn check_read(&self, etag: &str, last_modified: &Timestamp) -> Result<(), Error> {
        let lm = last_modified.0.timestamp();
        if let Some(m) = &self.if_match {
            if !etag_matches(m, etag) {
                return Err(Error::new(ErrorCode::ConditionNotMet));
            }
        }
        if let Some(t) = self.if_unmodified_since {
            if lm > t.timestamp() {
                return Err(Error::new(ErrorCode::ConditionNotMet));
            }
        }
        if let Some(m) = &self.if_none_match {
            if etag_matches(m, etag) {
                return Err(Error::new(ErrorCode::NotModified));
            }
        } else if let Some(t) = self.if_modified_since {
            if lm <= t.timestamp() {
                return Err(Error::new(ErrorCode::NotModified));
            }
        }
        Ok(())
    }

    /// For changes: every failed condition is 412.
    pub fn check_write(&self, etag: &str, last_modified: &Timestamp) -> Result<(), Error> {
        match self.check_read(etag, last_modified) {
            Err(e) if e.code == ErrorCode::NotModified => Err(Error::new(ErrorCode::ConditionNotMet)),
            r => r,
        }
    }

    /// For a resource that does not exist: If-Match fails (412 would reveal
    /// nothing a 404 does not; the service answers 404 first, callers check
    /// existence before this).
    pub fn require_absent_ok(&self) -> Result<(), Error> {
        if self.if_match.is_some() {
            return Err(Error::new(ErrorCode::ConditionNotMet));
        }
        Ok(())
    }
}

/// Produces ETags like the service's (`0x8DCAFE...`: .NET ticks in hex),
/// strictly increasing so two changes never share one.
#[derive(Debug, Default)]
pub struct EtagClock {
    last: AtomicU64,
}

const UNIX_EPOCH_TICKS: u64 = 621_355_968_000_000_000;

impl EtagClock {
    /// The current time and a fresh ETag.
    pub fn next(&self) -> (Timestamp, String) {
        let now = Utc::now();
        let ticks = UNIX_EPOCH_TICKS + (now.timestamp_nanos_opt().unwrap_or(0).max(0) as u64) / 100;
        let mut prev = self.last.load(Ordering::Relaxed);
        let value = loop {
            let v = ticks.max(prev + 1);
            match self.last.compare_exchange_weak(prev, v, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break v,
                Err(p) => prev = p,
            }
        };
        (Timestamp(now), format!("0x{value:X}"))
    }
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

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    readers: Arc<ReadPool>,
    pub etags: Arc<EtagClock>,
    /// Grows with every change to any job, so callers can cache job lists.
    pub job_generation: Arc<AtomicU64>,
    /// Grows whenever a task may have become ready or a ready task changed:
    /// tasks added, a client's change to a task (before and after its write),
    /// and any write that returns a task to `active` (retries, requeues). The
    /// scheduler keeps what it read of ready tasks while it stands still.
    pub task_generation: Arc<AtomicU64>,
    /// Notified after a commit that made tasks ready (the scheduler waits on it).
    pub ready: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`.
    /// The database holds every job's environment secrets: it and the
    /// WAL and shared-memory files SQLite makes beside it (which take the
    /// database file's mode) are the server user's only (0600), from their
    /// creation on; files of an older install are made so on open.
    pub fn open(data_dir: &Path) -> Result<Store, String> {
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
        Ok(Store {
            writer: Writer::start(conn),
            readers: Arc::new(ReadPool { path, idle: Mutex::new(Vec::new()) }),
            etags: Arc::new(EtagClock::default()),
            job_generation: Arc::new(AtomicU64::new(0)),
            task_generation: Arc::new(AtomicU64::new(0)),
            ready: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Both generations: any change to jobs or client change to tasks moves it.
    pub fn generation(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.job_generation.load(SeqCst), self.task_generation.load(SeqCst))
    }

    /// Marks that tasks changed outside the scheduler's own writes.
    pub fn bump_tasks(&self) {
        self.task_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.ready.notify_one();
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

/// Maps a SQLite error to an internal Batch error.
pub(crate) fn sql(e: rusqlite::Error) -> Error {
    Error::internal(format!("database error: {e}"))
}

/// Keys are ids lower-cased: ids are unique case-insensitively.
pub fn key_of(id: &str) -> String {
    id.to_ascii_lowercase()
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
        let store = Store::open(&data);
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
        let _store = Store::open(&data).unwrap();
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

    #[test]
    fn etags_increase() {
        let c = EtagClock::default();
        let (_, a) = c.next();
        let (_, b) = c.next();
        assert!(a.starts_with("0x8D") || a.starts_with("0x8E"), "{a}");
        assert_ne!(a, b);
        assert!(u64::from_str_radix(&b[2..], 16).unwrap() > u64::from_str_radix(&a[2..], 16).unwrap());
    }

    #[test]
    fn preconditions() {
        let lm = Timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let p = Preconditions { if_match: Some(vec!["0x1".into()]), ..Default::default() };
        assert!(p.check_write("0x1", &lm).is_ok());
        assert_eq!(p.check_write("0x2", &lm).unwrap_err().code, ErrorCode::ConditionNotMet);
        let p = Preconditions { if_none_match: Some(vec!["*".into()]), ..Default::default() };
        assert_eq!(p.check_read("0x2", &lm).unwrap_err().code, ErrorCode::NotModified);
        assert_eq!(p.check_write("0x2", &lm).unwrap_err().code, ErrorCode::ConditionNotMet);
        let p = Preconditions { if_modified_since: Some(lm.0), ..Default::default() };
        assert_eq!(p.check_read("0x2", &lm).unwrap_err().code, ErrorCode::NotModified);
        let later = Timestamp(lm.0 + chrono::Duration::seconds(5));
        assert!(p.check_read("0x2", &later).is_ok());
        let p = Preconditions { if_unmodified_since: Some(lm.0), ..Default::default() };
        assert!(p.check_write("0x2", &lm).is_ok());
        assert_eq!(p.check_write("0x2", &later).unwrap_err().code, ErrorCode::ConditionNotMet);
    }
}
