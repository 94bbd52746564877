//! The single writer, with group commit.
//!
//! Every state change is a closure sent to one thread that owns the write
//! connection. The thread takes everything queued, runs each closure inside
//! its own SAVEPOINT of one transaction (a failing closure rolls back only its
//! own changes), commits once — one fsync for the whole group — and only then
//! answers each caller. So an acknowledged write is always durable, and
//! concurrent writers share the cost of the sync instead of queueing behind it.

use rusqlite::Connection;
use std::sync::mpsc;
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

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Queued>();
        std::thread::Builder::new()
            .name("openbatch-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn writer thread");
        Writer { queue: tx }
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
        let sent = self.queue.send(Queued { work, durability }).is_ok();
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

fn run(conn: Connection, rx: mpsc::Receiver<Queued>) {
    let mut answers: Vec<Answer> = Vec::with_capacity(MAX_GROUP);
    let mut synced = true;
    // Planner statistics (sqlite_stat1) let SQLite pick the selective index
    // for a filter (e.g. exit codes) over the one that avoids a sort.
    // `analysis_limit` keeps each refresh to a few milliseconds.
    let _ = conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;");
    let mut last_optimize = std::time::Instant::now();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        // A group of only relaxed writes (the server's own bookkeeping, a
        // steady stream while tasks run) lingers briefly for more: one commit
        // then covers many task updates, and the pages they share are written
        // once. A synced write ends the wait at once.
        if group.iter().all(|q| q.durability == Durability::Relaxed) {
            let deadline = std::time::Instant::now() + RELAXED_LINGER;
            while group.len() < MAX_GROUP {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(w) => {
                        let synced = w.durability == Durability::Synced;
                        group.push(w);
                        if synced {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
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
