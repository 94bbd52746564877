//! The PostgreSQL writer: one thread owns one connection and runs every
//! change with group commit (`crate::group`), as the SQLite store does.
//!
//! A group is one transaction; each closure runs in its own savepoint (a
//! refused change rolls back alone); the commit is answered only after it
//! returned. A group holding a synced write commits with the server's
//! `synchronous_commit` (on: the commit is flushed to the WAL on disk, and
//! to synchronous standbys when there are any, before it returns); a group
//! of only `Relaxed`/`Prompt` writes commits with `synchronous_commit =
//! off`, which survives the openbatch process being killed but may lose the
//! last moment's commits if the database server itself crashes — the same
//! bargain as SQLite's `synchronous=NORMAL` for the server's own bookkeeping.
//!
//! One writer keeps SQLite's semantics exactly (writes run in submission
//! order, a closure's checks see every earlier write, no serialization
//! failures to retry), and a group costs one commit however many closures
//! it holds.

use crate::group::Engine;
use postgres::{Client, Statement};
use std::collections::HashMap;
use wire::Error;

/// Most closures in one transaction. Each closure that writes gets a
/// subtransaction id; past 64 per transaction PostgreSQL's per-backend cache
/// of them overflows and every other session's snapshots get slower.
pub(crate) const MAX_GROUP: usize = 48;

/// Maps a PostgreSQL error to an internal Batch error.
pub(crate) fn pg(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("database error: {e}"))
}

/// The writer's connection with its prepared statements.
pub struct PgConn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
    /// The fencing token checked (and its lease row locked) in the current
    /// transaction; cleared at every begin and savepoint rollback.
    pub(crate) fenced: Option<u64>,
}

impl PgConn {
    pub(crate) fn new(client: Client) -> PgConn {
        PgConn { client, statements: HashMap::new(), fenced: None }
    }

    /// The prepared statement for `sql` (prepared once per connection).
    pub(crate) fn prep(&mut self, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(pg)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<u64, Error> {
        let s = self.prep(sql)?;
        self.client.execute(&s, params).map_err(pg)
    }

    /// Runs a query; its rows.
    pub fn query(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<Vec<postgres::Row>, Error> {
        let s = self.prep(sql)?;
        self.client.query(&s, params).map_err(pg)
    }

    /// Runs a query of at most one row.
    pub fn query_opt(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<Option<postgres::Row>, Error> {
        let s = self.prep(sql)?;
        self.client.query_opt(&s, params).map_err(pg)
    }
}

pub(crate) struct PgEngine {
    pub(crate) conn: PgConn,
    /// How to connect again when the connection is lost.
    pub(crate) config: postgres::Config,
    /// The previous closure's savepoint is still to be released (it is, in
    /// the same round trip as the next savepoint or the commit).
    release_pending: bool,
    /// The group's BEGIN is still to be sent (it is, with the first
    /// savepoint): one round trip less per group.
    begin_pending: Option<&'static str>,
    /// Something failed that leaves the transaction unusable: the group
    /// must not be reported committed.
    poisoned: bool,
}

impl PgEngine {
    pub(crate) fn new(conn: PgConn, config: postgres::Config) -> PgEngine {
        PgEngine { conn, config, release_pending: false, begin_pending: None, poisoned: false }
    }

    fn batch(&mut self, sql: &str) -> Result<(), String> {
        self.conn.client.batch_execute(sql).map_err(|e| e.to_string())
    }
}

impl Engine for PgEngine {
    type Conn = PgConn;

    fn begin(&mut self, sync: bool) -> Result<(), String> {
        if self.conn.client.is_closed() {
            tracing::warn!("the database connection was lost; connecting again");
            let client = self.config.connect(postgres::NoTls).map_err(|e| format!("cannot connect: {e}"))?;
            self.conn = PgConn::new(client);
        }
        self.release_pending = false;
        self.poisoned = false;
        self.conn.fenced = None;
        self.begin_pending = Some(if sync { "BEGIN; " } else { "BEGIN; SET LOCAL synchronous_commit TO off; " });
        Ok(())
    }

    fn conn(&mut self) -> &mut PgConn {
        &mut self.conn
    }

    fn savepoint(&mut self) -> bool {
        let sql = if self.release_pending { "RELEASE SAVEPOINT w; SAVEPOINT w" } else { "SAVEPOINT w" };
        self.release_pending = false;
        let sql = match self.begin_pending.take() {
            Some(begin) => format!("{begin}{sql}"),
            None => sql.to_string(),
        };
        match self.batch(&sql) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot take a savepoint");
                self.poisoned = true;
                false
            }
        }
    }

    fn end_savepoint(&mut self, ok: bool) {
        if ok {
            self.release_pending = true;
            return;
        }
        self.conn.fenced = None;
        if let Err(e) = self.batch("ROLLBACK TO SAVEPOINT w; RELEASE SAVEPOINT w") {
            tracing::error!(error = %e, "cannot roll back a savepoint");
            self.poisoned = true;
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        self.release_pending = false;
        if self.begin_pending.take().is_some() {
            return Ok(()); // Nothing ran: nothing to commit.
        }
        if self.poisoned {
            let _ = self.batch("ROLLBACK");
            return Err("the transaction failed".into());
        }
        // In a transaction that failed, COMMIT answers ROLLBACK without an
        // error; the statement before it fails there instead (and the
        // COMMIT is then not run).
        self.batch("SELECT 1; COMMIT").inspect_err(|_| {
            let _ = self.batch("ROLLBACK");
        })
    }
}
