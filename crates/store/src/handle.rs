//! [`Store`], the handle the HTTP handlers and the control plane hold. Its
//! methods for each resource are in `jobs`, `tasks`, `pools` and `leases`.

use crate::backend::{Backend, Signals};
use crate::types::EtagClock;
use crate::{postgres, sqlite};
use std::path::Path;
use std::sync::Arc;

/// The store handle; cheap to clone. Every method forwards to the
/// [`Backend`] it was built over.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) signals: Arc<Signals>,
    /// The backend's ETag source (new resources are stamped from it).
    pub etags: Arc<EtagClock>,
    /// Notified after a commit that made tasks ready (the scheduler waits on
    /// it); the backend's [`Signals::ready`].
    pub ready: Arc<tokio::sync::Notify>,
    /// The lease this server's writes are fenced with (replicas), if any.
    pub(crate) fence: Option<Arc<crate::fence::Fence>>,
}

impl Store {
    /// A handle over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        let signals = backend.signals().clone();
        let etags = backend.etags().clone();
        let ready = signals.ready().clone();
        Store { backend, signals, etags, ready, fence: None }
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
