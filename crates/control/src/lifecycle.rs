//! Signals to the job lifecycle worker: a job entered a transitional state,
//! or its tasks changed so that it may be complete. (The worker that acts on
//! them is `api::lifecycle`, which moves here with the job operations.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the lifecycle worker is told, and what it remembers between looks.
pub struct Lifecycle {
    /// The store's job generation (see `quiet`).
    pub job_generation: Arc<std::sync::atomic::AtomicU64>,
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
            job_generation: store.job_generation.clone(),
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
        let generation = self.job_generation.load(std::sync::atomic::Ordering::SeqCst);
        if self.quiet.lock().unwrap_or_else(|p| p.into_inner()).get(&store::key_of(id)) == Some(&generation) {
            return;
        }
        self.changed.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string());
        self.notify.notify_one();
    }
}
