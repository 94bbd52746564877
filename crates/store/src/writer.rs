//! The single writer, with group commit.
//!
//! Every state change is a closure sent to one thread that owns the write
//! connection. The thread takes everything queued, runs each closure inside
//! its own SAVEPOINT of one transaction (a failing closure rolls back only its
//! own changes), commits once — one fsync for the whole group — and only then
//! answers each caller. So an acknowledged write is always durable, and
//! concurrent writers share the cost of the sync instead of queueing behind it.

use rusqlite::Connection;
use tokio::sync::oneshot;
use wire::Error;

/// What a queued closure leaves behind: whether it succeeded, and how to
/// answer its caller once the group's fate is known.
type Answer = Box<dyn FnOnce(bool) + Send>;
/// `None`: the transaction could not start; the work must not run.
type Work = Box<dyn FnOnce(Option<&Connection>) -> (bool, Answer) + Send>;

/// Most closures in one transaction; bounds the latency of a group.
const MAX_GROUP: usize = 512;

/// How long a group of relaxed writes waits for company before committing.
const RELAXED_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

/// How a write must reach the disk before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync'd before the caller hears back (everything a client is told).
    Synced,
    /// Written to the WAL (survives the process being killed) but fsync'd
    /// with a later commit or checkpoint: for the server's own bookkeeping
    /// that it can rebuild (agent reports; a lost one means a task runs
    /// again, which Batch allows).
    Relaxed,
}

struct Queued {
    work: Work,
    durability: Durability,
}

/// What callers have queued, in submission order.
#[derive(Default)]
struct Pending {
    items: Vec<Queued>,
    /// The writer thread waits for a synced write or the end of a linger;
    /// while it lingers, relaxed writes do not wake it one by one.
    lingering: bool,
    /// The writer sleeps until told (nothing queued).
    idle: bool,
    closed: bool,
}

struct Shared {
    pending: std::sync::Mutex<Pending>,
    wake: std::sync::Condvar,
}

#[derive(Clone)]
pub struct Writer {
    shared: std::sync::Arc<Shared>,
    _closer: std::sync::Arc<Closer>,
}

/// Stops the writer thread once the last handle is gone.
struct Closer(std::sync::Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        lock(&self.0.pending).closed = true;
        self.0.wake.notify_one();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Writer {
        let shared = std::sync::Arc::new(Shared { pending: Default::default(), wake: std::sync::Condvar::new() });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("openbatch-writer".into())
            .spawn(move || run(conn, &theirs))
            .expect("spawn writer thread");
        Writer { _closer: std::sync::Arc::new(Closer(shared.clone())), shared }
    }

    /// Queues work; wakes the writer when it sleeps, or when it lingers and
    /// this write must not wait.
    fn queue(&self, q: Queued) -> bool {
        let mut p = lock(&self.shared.pending);
        if p.closed {
            return false;
        }
        let wake = p.idle || (p.lingering && q.durability == Durability::Synced);
        p.items.push(q);
        if wake {
            p.idle = false;
            p.lingering = false;
            drop(p);
            self.shared.wake.notify_one();
        }
        true
    }

    /// Runs `f` in the writer's transaction; resolves after the commit is on disk.
    pub async fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    {
        self.submit(f, Durability::Synced).await
    }

    /// Queues `f` now — writes run in the order they are submitted — and
    /// returns a future for its result (resolved after the commit).
    pub fn submit<R, F>(&self, f: F, durability: Durability) -> impl std::future::Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
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
        let sent = self.queue(Queued { work, durability });
        async move {
            if !sent {
                return Err(Error::internal("the store is shut down"));
            }
            rx.await.map_err(|_| Error::internal("the store stopped before answering"))?
        }
    }
}

/// Runs a transaction-control statement from the statement cache (these run
/// several times per write; parsing them each time showed in profiles).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// How often, at most, the writer refreshes the query planner's statistics.
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The next group of writes, in submission order: everything queued (up to
/// `MAX_GROUP`), after lingering up to `RELAXED_LINGER` for company when all
/// of it is relaxed. None when the store is shut down.
fn next_group(shared: &Shared, carry: &mut std::collections::VecDeque<Queued>) -> Option<Vec<Queued>> {
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
    if carry.iter().all(|q| q.durability == Durability::Relaxed) && carry.len() < MAX_GROUP {
        // Relaxed writes arriving meanwhile join without waking the thread.
        p.lingering = true;
        let deadline = std::time::Instant::now() + RELAXED_LINGER;
        while p.lingering && !p.closed {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            p = shared.wake.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        p.lingering = false;
        carry.extend(p.items.drain(..));
    }
    drop(p);
    let n = carry.len().min(MAX_GROUP);
    Some(carry.drain(..n).collect())
}

fn run(conn: Connection, shared: &Shared) {
    let mut answers: Vec<Answer> = Vec::with_capacity(MAX_GROUP);
    let mut synced = true;
    let mut carry = std::collections::VecDeque::new();
    // Planner statistics (sqlite_stat1) let SQLite pick the selective index
    // for a filter (e.g. exit codes) over the one that avoids a sort.
    // `analysis_limit` keeps each refresh to a few milliseconds.
    let _ = conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;");
    let mut last_optimize = std::time::Instant::now();
    // A group of only relaxed writes (the server's own bookkeeping, a steady
    // stream while tasks run) lingers briefly for more: one commit then
    // covers many task updates, and the pages they share are written once.
    // A synced write ends the wait at once.
    while let Some(group) = next_group(shared, &mut carry) {
        // One synced item makes the whole group's commit an fsync.
        let need_sync = group.iter().any(|q| q.durability == Durability::Synced);
        if need_sync != synced {
            let mode = if need_sync { "FULL" } else { "NORMAL" };
            if conn.pragma_update(None, "synchronous", mode).is_ok() {
                synced = need_sync;
            }
        }
        let group: Vec<Work> = group.into_iter().map(|q| q.work).collect();
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "cannot begin a transaction");
            for w in group {
                let (_, answer) = w(None);
                answer(false);
            }
            continue;
        }
        for w in group {
            let savepoint = exec(&conn, "SAVEPOINT w").is_ok();
            let (ok, answer) = w(Some(&conn));
            if savepoint {
                if !ok {
                    let _ = exec(&conn, "ROLLBACK TO w");
                }
                let _ = exec(&conn, "RELEASE w");
            }
            answers.push(answer);
        }
        let committed = match exec(&conn, "COMMIT") {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                false
            }
        };
        for a in answers.drain(..) {
            a(committed);
        }
        if last_optimize.elapsed() > OPTIMIZE_EVERY {
            last_optimize = std::time::Instant::now();
            if let Err(e) = conn.execute_batch("PRAGMA optimize;") {
                tracing::warn!(error = %e, "refreshing planner statistics failed");
            }
        }
    }
}
