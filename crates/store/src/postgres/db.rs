//! PostgreSQL connections and versioned migrations.
//!
//! The schema files (`migrations/NNNN_*.sql`) are numbered like SQLite's
//! migrations (`sqlite::db`): migration N builds in PostgreSQL what SQLite's
//! migration N builds. `openbatch_schema` records how many have run; they
//! run under an advisory lock, so servers starting together on one database
//! apply each exactly once. Never edit a released migration: append one.

use postgres::Client;

/// The migrations, in order.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_jobs_tasks.sql"),
    include_str!("migrations/0002_pools_scheduling.sql"),
    include_str!("migrations/0003_exit_codes.sql"),
    include_str!("migrations/0004_cleanup.sql"),
    include_str!("migrations/0005_dependencies.sql"),
    include_str!("migrations/0006_job_schedules.sql"),
    include_str!("migrations/0007_leases.sql"),
    include_str!("migrations/0008_pool_usage.sql"),
    include_str!("migrations/0009_certificates.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock key migrations hold (any fixed number; "openbat" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7065_6e62_6174;

/// Applies the migrations the database has not seen yet.
pub fn migrate(client: &mut Client) -> Result<(), String> {
    let mut tx = client.transaction().map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(|e| e.to_string())?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS openbatch_schema (version bigint NOT NULL)").map_err(|e| e.to_string())?;
    let current: Option<i64> = tx.query_opt("SELECT version FROM openbatch_schema", &[]).map_err(|e| e.to_string())?.map(|r| r.get(0));
    let current = match current {
        Some(v) => usize::try_from(v).unwrap_or(0),
        None => {
            tx.execute("INSERT INTO openbatch_schema (version) VALUES (0)", &[]).map_err(|e| e.to_string())?;
            0
        }
    };
    if current > MIGRATIONS.len() {
        return Err(format!("the database was written by a newer openbatch (schema {current}, this build knows {})", MIGRATIONS.len()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        tx.execute("UPDATE openbatch_schema SET version = $1", &[&((i + 1) as i64)]).map_err(|e| e.to_string())?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    tx.commit().map_err(|e| e.to_string())
}

/// The schema version a database is at.
pub fn version(client: &mut Client) -> Result<usize, String> {
    let v: i64 = client.query_one("SELECT version FROM openbatch_schema", &[]).map_err(|e| e.to_string())?.get(0);
    Ok(usize::try_from(v).unwrap_or(0))
}
