//! Group commit, for any backend that runs its writes on one connection.
//!
//! Every state change is a closure sent to one thread that owns the write
//! connection. The thread takes everything queued, runs each closure inside
//! its own savepoint of one transaction (a failing closure rolls back only
//! its own changes), commits once — one sync for the whole group — and only
//! then answers each caller. So an acknowledged write is always durable, and
//! concurrent writers share the cost of the sync instead of queueing behind
//! it. What a transaction, a savepoint and a commit are is the [`Engine`]'s
//! business (SQLite: `sqlite::writer`; PostgreSQL: `postgres::writer`).

use crate::backend::Durability;
use tokio::sync::oneshot;
use wire::Error;

/// What a queued closure leaves behind: whether it succeeded, and how to
/// answer its caller once the group's fate is known.
type Answer = Box<dyn FnOnce(bool) + Send>;
/// `None`: the transaction could not start; the work must not run.
type Work<C> = Box<dyn FnOnce(Option<&mut C>) -> (bool, Answer) + Send>;

/// How long a relaxed write waits for company before its group commits: a
/// steady stream of them (task updates from busy nodes) then shares each
/// commit's page writes. Bounds how stale the API's view of that
/// bookkeeping can be.
const RELAXED_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// The same for a prompt write (something is about to wait on it).
const PROMPT_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

impl Durability {
    /// How long the write may wait for company before its group commits.
    pub(crate) fn linger(self) -> std::time::Duration {
        match self {
            Durability::Synced => std::time::Duration::ZERO,
            Durability::Prompt => PROMPT_LINGER,
            Durability::Relaxed => RELAXED_LINGER,
        }
    }
}

/// One database's side of the writer thread: transactions and savepoints
/// on the connection the closures get.
pub(crate) trait Engine: Send + 'static {
    /// What the closures are given.
    type Conn;
    /// Begins the group's transaction; `sync`: its commit must be on stable
    /// storage before it returns (else it only has to survive the process).
    fn begin(&mut self, sync: bool) -> Result<(), String>;
    /// The connection the closures run on.
    fn conn(&mut self) -> &mut Self::Conn;
    /// Opens a savepoint for the next closure; false when it could not.
    fn savepoint(&mut self) -> bool;
    /// Ends the closure's savepoint: keeps its changes when `ok`, else undoes them.
    fn end_savepoint(&mut self, ok: bool);
    /// Commits the group (on failure the engine rolls back).
    fn commit(&mut self) -> Result<(), String>;
    /// Called after every group (housekeeping).
    fn after_group(&mut self) {}
}

struct Queued<C> {
    work: Work<C>,
    durability: Durability,
    /// When its group must commit at the latest.
    due: std::time::Instant,
}

/// What callers have queued, in submission order.
struct Pending<C> {
    items: Vec<Queued<C>>,
    /// While the writer lingers: when the group commits. A write due
    /// earlier moves it (and wakes the writer); the others join without
    /// waking it one by one.
    linger_until: Option<std::time::Instant>,
    /// The writer sleeps until told (nothing queued).
    idle: bool,
    closed: bool,
}

struct Shared<C> {
    pending: std::sync::Mutex<Pending<C>>,
    wake: std::sync::Condvar,
    /// Most closures in one transaction; bounds the latency of a group.
    max_group: usize,
}

/// The handle callers queue writes through; cheap to clone.
pub(crate) struct Writer<C> {
    shared: std::sync::Arc<Shared<C>>,
    _closer: std::sync::Arc<Closer<C>>,
}

impl<C> Clone for Writer<C> {
    fn clone(&self) -> Self {
        Writer { shared: self.shared.clone(), _closer: self._closer.clone() }
    }
}

/// Stops the writer thread once the last handle is gone.
struct Closer<C>(std::sync::Arc<Shared<C>>);

impl<C> Drop for Closer<C> {
    fn drop(&mut self) {
        lock(&self.0.pending).closed = true;
        self.0.wake.notify_one();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<C: 'static> Writer<C> {
    /// Starts the writer thread `name` on `engine`, with groups of at most
    /// `max_group` closures.
    pub(crate) fn start<E: Engine<Conn = C>>(engine: E, name: &str, max_group: usize) -> Writer<C> {
        let shared = std::sync::Arc::new(Shared {
            pending: std::sync::Mutex::new(Pending { items: Vec::new(), linger_until: None, idle: false, closed: false }),
            wake: std::sync::Condvar::new(),
            max_group: max_group.max(1),
        });
        let theirs = shared.clone();
        std::thread::Builder::new().name(name.into()).spawn(move || run(engine, &theirs)).expect("spawn writer thread");
        Writer { _closer: std::sync::Arc::new(Closer(shared.clone())), shared }
    }

    /// Queues work; wakes the writer when it sleeps, or when it lingers and
    /// this write must not wait.
    fn queue(&self, q: Queued<C>) -> bool {
        let mut p = lock(&self.shared.pending);
        if p.closed {
            return false;
        }
        // Due sooner than the linger's end, or the group is full: commit sooner.
        let full = p.items.len() + 1 >= self.shared.max_group;
        let q_due = if full { std::time::Instant::now() } else { q.due };
        let sooner = p.linger_until.is_some_and(|until| q_due < until);
        let wake = p.idle || sooner;
        if sooner {
            p.linger_until = Some(q_due);
        }
        p.items.push(q);
        if wake {
            p.idle = false;
            drop(p);
            self.shared.wake.notify_one();
        }
        true
    }

    /// Queues `f` now — writes run in the order they are submitted — and
    /// returns a future for its result (resolved after the commit).
    pub(crate) fn submit<R, F>(&self, f: F, durability: Durability) -> impl std::future::Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&mut C) -> Result<R, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let work: Work<C> = Box::new(move |conn| {
            let r = match conn {
                Some(conn) => f(conn),
                None => Err(Error::internal("the store could not start a transaction")),
            };
            let ok = r.is_ok();
            let answer: Answer = Box::new(move |committed| {
                let _ = tx.send(if committed { r } else { Err(Error::internal("the transaction could not be committed")) });
            });
            (ok, answer)
        });
        let sent = self.queue(Queued { work, durability, due: std::time::Instant::now() + durability.linger() });
        async move {
            if !sent {
                return Err(Error::internal("the store is shut down"));
            }
            rx.await.map_err(|_| Error::internal("the store stopped before answering"))?
        }
    }
}

/// The next group of writes, in submission order: everything queued (up to
/// `max_group`), after lingering for company until the first of them is due
/// (see `Durability::linger`). None when the store is shut down.
fn next_group<C>(shared: &Shared<C>, carry: &mut std::collections::VecDeque<Queued<C>>) -> Option<Vec<Queued<C>>> {
    let mut p = lock(&shared.pending);
    loop {
        carry.extend(p.items.drain(..));
        if !carry.is_empty() {
            break;
        }
        if p.closed {
            return None;
        }
        p.idle = true;
        p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
    }
    let due = carry.iter().map(|q| q.due).min().expect("not empty");
    if carry.len() < shared.max_group && due > std::time::Instant::now() {
        // Writes arriving meanwhile join; one due sooner moves the deadline.
        p.linger_until = Some(due);
        while let Some(until) = p.linger_until {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || p.closed {
                break;
            }
            p = shared.wake.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        p.linger_until = None;
        carry.extend(p.items.drain(..));
    }
    drop(p);
    let n = carry.len().min(shared.max_group);
    Some(carry.drain(..n).collect())
}

fn run<E: Engine>(mut engine: E, shared: &Shared<E::Conn>) {
    let mut answers: Vec<Answer> = Vec::with_capacity(shared.max_group);
    let mut carry = std::collections::VecDeque::new();
    // A group of the server's own writes (a steady stream while tasks run)
    // lingers for more (`next_group`): one commit then covers many task
    // updates, and the pages they share are written once. A synced write
    // ends the wait at once.
    while let Some(group) = next_group(shared, &mut carry) {
        // One synced item makes the whole group's commit a synced one.
        let need_sync = group.iter().any(|q| q.durability == Durability::Synced);
        let group: Vec<Work<E::Conn>> = group.into_iter().map(|q| q.work).collect();
        // A group that must be synced but cannot be fails rather than be
        // acknowledged without its sync.
        if let Err(e) = engine.begin(need_sync) {
            tracing::error!(error = %e, "cannot begin a transaction");
            for w in group {
                let (_, answer) = w(None);
                answer(false);
            }
            continue;
        }
        let commit_began = std::time::Instant::now();
        for w in group {
            // Work that cannot get a savepoint does not run: a failure in it
            // could not be undone alone.
            if !engine.savepoint() {
                let (_, answer) = w(None);
                answers.push(Box::new(move |_| answer(false)));
                continue;
            }
            let (ok, answer) = w(Some(engine.conn()));
            engine.end_savepoint(ok);
            answers.push(answer);
        }
        let committed = match engine.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "commit failed");
                false
            }
        };
        crate::metrics::COMMIT_SECONDS.observe(commit_began.elapsed().as_secs_f64());
        for a in answers.drain(..) {
            a(committed);
        }
        engine.after_group();
    }
}
