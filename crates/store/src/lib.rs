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
//!   compiled to SQL, versioned migrations. [`postgres`] is the same over a
//!   PostgreSQL database; both share the group commit (`group`).
//! * [`types`] holds the plain types everyone shares (`Stored`, `Page`,
//!   `ListQuery`, `Preconditions`, `EtagClock`, `NewTask`); [`job_rules`] and
//!   [`doc_table`] the rules that do not depend on the database.
//! * The modules [`jobs`], [`tasks`], [`pools`] and `leases` hold the `Store`
//!   methods for each resource (the handle itself is in `handle`).
//!
//! Layering (checked by `control/tests/layering.rs`): this root only
//! declares and re-exports; `types` and `metrics` import nothing of the
//! crate; `backend` imports only those; each backend's `txn` module holds
//! what a job change reads inside its transaction, so the backend's root
//! never imports its per-resource modules.

pub mod backend;
pub mod doc_table;
pub mod fence;
mod group;
mod handle;
pub mod hooked;
pub mod job_rules;
pub mod jobs;
mod leases;
pub mod metrics;
pub mod pools;
pub mod postgres;
pub mod sqlite;
pub mod tasks;
pub mod types;
pub mod usage;

/// The SQLite implementation's modules, also at the crate root (the fuzz
/// targets compile `$filter`s against the real schema).
pub use sqlite::{db, fields, filter_sql};

pub use backend::{Backend, BoxFuture, Durability, Lease, PoolTaskCounts, Signals, StoreFuture, Txn};
pub use fence::Fence;

pub use handle::Store;
pub use types::{key_of, EtagClock, ListQuery, NewTask, Page, Preconditions, Stored};
