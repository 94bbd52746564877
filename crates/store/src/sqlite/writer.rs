//! The single writer, with group commit.
//!
//! Every state change is a closure sent to one thread that owns the write
//! connection. The thread takes everything queued, runs each closure inside
//! its own SAVEPOINT of one transaction (a failing closure rolls back only its
//! own changes), commits once — one fsync for the whole group — and only then
//! answers each caller. So an acknowledged write is always durable, and
//! concurrent writers share the cost of the sync instead of queueing behind it.

use crate::Durability;
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

/// How long a relaxed write waits for company before its group commits: a
/// steady stream of them (task updates from busy nodes) then shares each
/// commit's page writes. Bounds how stale the API's view of that
/// bookkeeping can be.
const RELAXED_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// The same for a prompt write (something is about to wait on it).
const PROMPT_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

impl Durability {
    /// How long the write may wait for company before its group commits.
    fn linger(self) -> std::time::Duration {
        match self {
            Durability::Synced => std::time::Duration::ZERO,
            Durability::Prompt => PROMPT_LINGER,
            Durability::Relaxed => RELAXED_LINGER,
        }
    }
}

struct Queued {
    work: Work,
    durability: Durability,
    /// When its group must commit at the latest.
    due: std::time::Instant,
}

/// What callers have queued, in submission order.
#[derive(Default)]
struct Pending {
    items: Vec<Queued>,
    /// While the writer lingers: when the group commits. A write due
    /// earlier moves it (and wakes the writer); the others join without
    /// waking it one by one.
    linger_until: Option<std::time::Instant>,
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
        std::thread::Builder::new().name("openbatch-writer".into()).spawn(move || run(conn, &theirs)).expect("spawn writer thread");
        Writer { _closer: std::sync::Arc::new(Closer(shared.clone())), shared }
    }

    /// Queues work; wakes the writer when it sleeps, or when it lingers and
    /// this write must not wait.
    fn queue(&self, q: Queued) -> bool {
        let mut p = lock(&self.shared.pending);
        if p.closed {
            return false;
        }
        // Due sooner than the linger's end, or the group is full: commit sooner.
        let full = p.items.len() + 1 >= MAX_GROUP;
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
        let sent = self.queue(Queued { work, durability, due: std::time::Instant::now() + durability.linger() });
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
/// `MAX_GROUP`), after lingering for company until the first of them is due
/// (see `Durability::linger`). None when the store is shut down.
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
    let due = carry.iter().map(|q| q.due).min().expect("not empty");
    if carry.len() < MAX_GROUP && due > std::time::Instant::now() {
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
    // A group of the server's own writes (a steady stream while tasks run)
    // lingers for more (`next_group`): one commit then covers many task
    // updates, and the pages they share are written once. A synced write
    // ends the wait at once.
    while let Some(group) = next_group(shared, &mut carry) {
        // One synced item makes the whole group's commit an fsync.
        let need_sync = group.iter().any(|q| q.durability == Durability::Synced);
        if need_sync != synced {
            let mode = if need_sync { "FULL" } else { "NORMAL" };
            match conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => synced = need_sync,
                Err(e) => tracing::error!(error = %e, "cannot set synchronous = {mode}"),
            }
        }
        let group: Vec<Work> = group.into_iter().map(|q| q.work).collect();
        // A group that must be synced but cannot be fails rather than be
        // acknowledged without its fsync.
        let began = if need_sync && !synced {
            Err("its commit could not be synced".to_string())
        } else {
            exec(&conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())
        };
        if let Err(e) = began {
            tracing::error!(error = %e, "cannot begin a transaction");
            for w in group {
                let (_, answer) = w(None);
                answer(false);
            }
            continue;
        }
        let commit_began = std::time::Instant::now();
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
        crate::metrics::COMMIT_SECONDS.observe(commit_began.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.sqlite")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL)").unwrap();
        (dir, Writer::start(conn))
    }

    fn insert(v: i64, fail: bool) -> impl FnOnce(&Connection) -> Result<i64, Error> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (v) VALUES (?1)", [v]).map_err(|e| Error::internal(e.to_string()))?;
            if fail {
                return Err(Error::internal("refused"));
            }
            Ok(v)
        }
    }

    fn values(dir: &tempfile::TempDir) -> Vec<i64> {
        let c = Connection::open(dir.path().join("w.sqlite")).unwrap();
        let mut s = c.prepare("SELECT v FROM t ORDER BY rowid").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_only_itself_and_the_rest_keep_their_order() {
        let (dir, w) = writer();
        let a = w.submit(insert(1, false), Durability::Relaxed);
        let b = w.submit(insert(2, true), Durability::Prompt);
        let c = w.submit(insert(3, false), Durability::Relaxed);
        let d = w.submit(insert(4, false), Durability::Synced);
        assert_eq!(a.await.unwrap(), 1);
        assert!(b.await.is_err());
        assert_eq!(c.await.unwrap(), 3);
        assert_eq!(d.await.unwrap(), 4);
        assert_eq!(values(&dir), vec![1, 3, 4]);
    }

    #[tokio::test]
    async fn every_durability_is_committed_and_visible_to_other_connections() {
        let (dir, w) = writer();
        for (i, d) in [Durability::Relaxed, Durability::Prompt, Durability::Synced].into_iter().enumerate() {
            let v = i as i64 + 10;
            assert_eq!(w.submit(insert(v, false), d).await.unwrap(), v);
            // Answered only once committed: another connection sees it.
            assert_eq!(values(&dir).last(), Some(&v));
        }
    }

    #[test]
    fn lingers_are_ordered() {
        assert_eq!(Durability::Synced.linger(), std::time::Duration::ZERO);
        assert!(Durability::Prompt.linger() < Durability::Relaxed.linger());
    }
}
