//! The control plane's in-memory state, with one owner: [`Core`].
//!
//! Everything the control plane knows only while nodes are connected — the
//! node registry (slots in use, queues, channels), the scheduler's memory,
//! multi-instance runs, pending file requests, the nodes expected back after
//! a restart — lives in one `Core` behind one lock (`Cluster::core`). The
//! modules here are the state and the rules that only need the state; what
//! reacts to reports and time (`agents`, `scheduler`, `multi`, …) takes the
//! lock briefly, never across an `await`, and never twice on one thread
//! (that panics instead of deadlocking, see [`CoreGuard`]). The database
//! stays the source of truth for tasks.

pub mod autoscale;
pub mod multi;
pub mod node;
pub mod prep;
pub mod sched;

use node::Node;
use proto::{FileReply, NodeReply};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// The in-memory control state.
#[derive(Default)]
pub struct Core {
    /// The nodes, by id.
    pub nodes: BTreeMap<String, Node>,
    pub(crate) sched: sched::Sched,
    /// Multi-instance tasks under way.
    pub(crate) multi: multi::Runs,
    /// File requests sent to agents, by request id.
    pub(crate) files: HashMap<u64, oneshot::Sender<FileReply>>,
    /// Node requests sent to agents, by request id: the node asked, and
    /// where its reply goes.
    pub(crate) node_requests: HashMap<u64, (String, oneshot::Sender<NodeReply>)>,
    /// After a restart, the nodes scheduling waits for, and until when.
    pub(crate) expected: Option<(Instant, HashSet<String>)>,
    /// No scheduling before this instant (a replica that just took over
    /// lets agents rejoin first, see `Cluster::hold_scheduling`).
    pub(crate) hold: Option<Instant>,
    /// Each pool's autoscale samples and when its formula is due.
    pub(crate) autoscale: autoscale::Autoscale,
    /// Core-time of nodes that left the registry before it was recorded
    /// (pool, from, to, cores): added with the next `record_usage`.
    pub(crate) departed_usage: Vec<(String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>, u32)>,
}

thread_local! {
    /// Whether this thread holds the core's lock.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// The core, locked. Taking it again on the same thread while a guard lives
/// is a bug (it would deadlock): it panics with a clear message instead.
pub struct CoreGuard<'a>(MutexGuard<'a, Core>);

impl Core {
    /// Locks the core held in `m`.
    pub fn lock(m: &Mutex<Core>) -> CoreGuard<'_> {
        assert!(!HELD.with(Cell::get), "the control state is locked twice on one thread");
        let g = crate::sync::lock(m);
        HELD.with(|h| h.set(true));
        CoreGuard(g)
    }
}

impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        HELD.with(|h| h.set(false));
    }
}

impl Deref for CoreGuard<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0
    }
}

impl DerefMut for CoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.0
    }
}
