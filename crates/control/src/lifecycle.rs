//! Background completion of job state transitions.
//!
//! Delete, terminate, disable and enable answer 202 at once and leave the job
//! in a transitional state (`deleting`, `terminating`, `disabling`,
//! `enabling`) that clients can observe — the 15.x SDK's pollers depend on
//! it. This worker finishes each transition once the job has shown its
//! transitional state for at least `transition_delay`: a deleting job's tasks
//! are removed in chunks (so a huge job never blocks other writes) and then
//! the job; a terminating job becomes `completed`; disabling → `disabled`;
//! enabling → `active`. It also applies `onAllTasksComplete: terminatejob`
//! when a job's last task completes.
//!
//! Handlers and the control plane signal it (`Lifecycle::wake`,
//! `job_changed`); the worker (`crate::transitions::run`) is a supervised
//! loop.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the lifecycle worker is told, and what it remembers between looks.
pub struct Lifecycle {
    /// The store's job generation (see `quiet`).
    signals: Arc<store::Signals>,
    pub notify: Notify,
    pub changed: Mutex<HashSet<String>>,
    /// A job entered a transitional state since the last look.
    pub transitions: std::sync::atomic::AtomicBool,
    /// Jobs found not to end with their tasks (not active, or not
    /// `terminatejob`), with the store's job generation then: while it
    /// stands still, completions of their tasks need no look at the job.
    pub quiet: Mutex<std::collections::HashMap<String, u64>>,
}

impl Lifecycle {
    pub fn new(store: &store::Store) -> Lifecycle {
        Lifecycle {
            signals: store.signals().clone(),
            notify: Notify::new(),
            changed: Default::default(),
            transitions: Default::default(),
            quiet: Default::default(),
        }
    }

    /// A job entered a transitional state.
    pub fn wake(&self) {
        self.transitions.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// A job's tasks or completion settings changed: check whether all its
    /// tasks are done (unless the job was found quiet at the current job
    /// generation).
    pub fn job_changed(&self, id: &str) {
        let generation = self.signals.job_generation();
        if self.quiet.lock().unwrap_or_else(|p| p.into_inner()).get(&store::key_of(id)) == Some(&generation) {
            return;
        }
        self.changed.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string());
        self.notify.notify_one();
    }
}
