//! The SQLite writer: one thread owns the write connection and runs every
//! change with group commit (`crate::group`): each closure in its own
//! SAVEPOINT of one `BEGIN IMMEDIATE` transaction, one fsync per group
//! (`synchronous=FULL` when the group holds a synced write, `NORMAL` —
//! in the WAL, so a killed process loses nothing — otherwise).

use crate::backend::Durability;
use crate::group::{self, Engine};
use rusqlite::Connection;
use wire::Error;

/// Most closures in one transaction; bounds the latency of a group.
const MAX_GROUP: usize = 512;

/// How often, at most, the writer refreshes the query planner's statistics.
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a transaction-control statement from the statement cache (these run
/// several times per write; parsing them each time showed in profiles).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

struct SqliteEngine {
    conn: Connection,
    /// Whether `synchronous` is FULL now.
    synced: bool,
    last_optimize: std::time::Instant,
}

impl Engine for SqliteEngine {
    type Conn = Connection;

    fn begin(&mut self, sync: bool) -> Result<(), String> {
        if sync != self.synced {
            let mode = if sync { "FULL" } else { "NORMAL" };
            match self.conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => self.synced = sync,
                Err(e) => tracing::error!(error = %e, "cannot set synchronous = {mode}"),
            }
        }
        if sync && !self.synced {
            return Err("its commit could not be synced".into());
        }
        exec(&self.conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())
    }

    fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn savepoint(&mut self) -> bool {
        exec(&self.conn, "SAVEPOINT w").is_ok()
    }

    fn end_savepoint(&mut self, ok: bool) {
        if !ok {
            let _ = exec(&self.conn, "ROLLBACK TO w");
        }
        let _ = exec(&self.conn, "RELEASE w");
    }

    fn commit(&mut self) -> Result<(), String> {
        exec(&self.conn, "COMMIT").map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            e.to_string()
        })
    }

    fn after_group(&mut self) {
        if self.last_optimize.elapsed() > OPTIMIZE_EVERY {
            self.last_optimize = std::time::Instant::now();
            if let Err(e) = self.conn.execute_batch("PRAGMA optimize;") {
                tracing::warn!(error = %e, "refreshing planner statistics failed");
            }
        }
    }
}

/// The handle to the SQLite writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer(group::Writer<Connection>);

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Writer {
        // Planner statistics (sqlite_stat1) let SQLite pick the selective index
        // for a filter (e.g. exit codes) over the one that avoids a sort.
        // `analysis_limit` keeps each refresh to a few milliseconds.
        let _ = conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;");
        let engine = SqliteEngine { conn, synced: true, last_optimize: std::time::Instant::now() };
        Writer(group::Writer::start(engine, "openbatch-writer", MAX_GROUP))
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
        self.0.submit(move |c: &mut Connection| f(c), durability)
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
