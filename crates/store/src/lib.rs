//! Durable state for openbatch, behind an interface.
//!
//! * [`Store`] is the handle the HTTP handlers and the control plane hold:
//!   cheap to clone, it owns an `Arc<dyn` [`Backend`]`>` and forwards to it
//!   (its generic methods box their closures first).
//! * [`backend`] defines that interface: documents, task changes with a
//!   [`Durability`], lists and counts, the scheduler's queries, generation
//!   counters ([`Signals`]) and leases.
//! * [`sqlite`] is the embedded implementation and the default: one writer
//!   thread with group commit, pooled read-only connections, `$filter`
//!   compiled to SQL, versioned migrations.
//! * The modules [`jobs`], [`tasks`] and [`pools`] hold the types and rules
//!   that do not depend on the database (`NewTask`, `DocTable`, job state
//!   transitions) and the `Store` methods for each resource.

pub mod backend;
mod group;
pub mod jobs;
mod leases;
pub mod metrics;
pub mod pools;
pub mod postgres;
pub mod sqlite;
pub mod tasks;

/// The SQLite implementation's modules, also at the crate root (the fuzz
/// targets compile `$filter`s against the real schema).
pub use sqlite::{db, fields, filter_sql};

pub use backend::{Backend, BoxFuture, Durability, Lease, PoolTaskCounts, Signals, StoreFuture, Txn};

use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

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

/// The store handle; cheap to clone. Every method forwards to the
/// [`Backend`] it was built over.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    signals: Arc<Signals>,
    /// The backend's ETag source (new resources are stamped from it).
    pub etags: Arc<EtagClock>,
    /// Notified after a commit that made tasks ready (the scheduler waits on
    /// it); the backend's [`Signals::ready`].
    pub ready: Arc<tokio::sync::Notify>,
}

impl Store {
    /// A handle over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        let signals = backend.signals().clone();
        let etags = backend.etags().clone();
        let ready = signals.ready().clone();
        Store { backend, signals, etags, ready }
    }

    /// Opens (creating if needed) the embedded SQLite database in `data_dir`
    /// (see [`sqlite::Sqlite::open`]).
    pub fn open(data_dir: &Path) -> Result<Store, String> {
        Ok(Store::new(Arc::new(sqlite::Sqlite::open(data_dir)?)))
    }

    /// Connects to the PostgreSQL database at `url` (see
    /// [`postgres::Postgres::connect`]).
    pub async fn connect_postgres(url: &str) -> Result<Store, String> {
        Ok(Store::new(Arc::new(postgres::Postgres::connect(url).await?)))
    }

    /// The backend this handle forwards to.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The backend's generation counters.
    pub fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    /// Both generations: any change to jobs or client change to tasks moves it.
    pub fn generation(&self) -> (u64, u64) {
        (self.signals.job_generation(), self.signals.task_generation())
    }

    /// See [`Signals::job_generation`].
    pub fn job_generation(&self) -> u64 {
        self.signals.job_generation()
    }

    /// See [`Signals::task_generation`].
    pub fn task_generation(&self) -> u64 {
        self.signals.task_generation()
    }

    /// Marks that tasks changed outside the scheduler's own writes.
    pub fn bump_tasks(&self) {
        self.signals.tasks_changed();
    }
}

/// Keys are ids lower-cased: ids are unique case-insensitively.
pub fn key_of(id: &str) -> String {
    id.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

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
