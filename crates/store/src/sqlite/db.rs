//! SQLite connections, pragmas and versioned migrations.

use rusqlite::Connection;
use std::path::Path;

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and tasks. Each row keeps the resource's wire document in `doc`;
    // the columns beside it are the indexed or aggregated properties.
    r#"
    CREATE TABLE jobs (
        key           TEXT PRIMARY KEY,      -- id lower-cased: ids are unique case-insensitively
        id            TEXT NOT NULL,
        state         TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        etag          TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        doc           TEXT NOT NULL
    );
    CREATE INDEX jobs_by_state ON jobs(state, key);

    CREATE TABLE tasks (
        job           TEXT NOT NULL,         -- the job's key
        key           TEXT NOT NULL,         -- id lower-cased
        id            TEXT NOT NULL,
        state         TEXT NOT NULL,
        result        TEXT,                  -- success | failure once completed
        slots         INTEGER NOT NULL,      -- requiredSlots
        retries       INTEGER NOT NULL,      -- executionInfo.retryCount
        creation_time TEXT NOT NULL,
        etag          TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        doc           TEXT NOT NULL
    );
    CREATE UNIQUE INDEX tasks_by_key ON tasks(job, key);
    CREATE INDEX tasks_by_state ON tasks(job, state, key);

    -- Per job, state and result: how many tasks, slots and retries. Kept in
    -- step with `tasks` by every write, so counts and job statistics never
    -- scan the tasks.
    CREATE TABLE task_counts (
        job     TEXT NOT NULL,
        state   TEXT NOT NULL,
        result  TEXT NOT NULL,               -- '' when none
        n       INTEGER NOT NULL,
        slots   INTEGER NOT NULL,
        retries INTEGER NOT NULL,
        PRIMARY KEY (job, state, result)
    ) WITHOUT ROWID;
    "#,
    // 2: pools, the columns the scheduler selects runnable tasks by, and the
    // node each task runs on.
    r#"
    CREATE TABLE pools (
        key           TEXT PRIMARY KEY,
        id            TEXT NOT NULL,
        state         TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        etag          TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        doc           TEXT NOT NULL
    );
    ALTER TABLE jobs ADD COLUMN pool TEXT;
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET pool = lower(json_extract(doc, '$.poolInfo.poolId')),
                    priority = COALESCE(json_extract(doc, '$.priority'), 0);
    CREATE INDEX jobs_by_pool ON jobs(pool, state, priority);
    ALTER TABLE tasks ADD COLUMN node TEXT;
    CREATE INDEX tasks_by_node ON tasks(node) WHERE node IS NOT NULL;
    "#,
    // 3: exit codes as an indexed column (`executionInfo/exitCode` filters).
    // The index is partial: tasks that have not run cost it nothing.
    r#"
    ALTER TABLE tasks ADD COLUMN exit_code INTEGER;
    UPDATE tasks SET exit_code = json_extract(doc, '$.executionInfo.exitCode');
    CREATE INDEX tasks_by_exit_code ON tasks(job, exit_code) WHERE exit_code IS NOT NULL;
    "#,
    // 4: when each completed task's directory is due for deletion (retentionTime).
    r#"
    ALTER TABLE tasks ADD COLUMN cleanup_at TEXT;
    CREATE INDEX tasks_by_cleanup ON tasks(cleanup_at) WHERE cleanup_at IS NOT NULL;
    "#,
    // 5: task dependencies. Each dependent task counts its dependencies not
    // yet satisfied (`deps_left`; it is ready at 0); reverse tables find the
    // dependents of a task that becomes satisfied, by id or by a range over
    // integer ids (`range_id`), without expanding ranges.
    r#"
    ALTER TABLE tasks ADD COLUMN deps_left INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN satisfied INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN range_id INTEGER;
    CREATE INDEX tasks_by_range_id ON tasks(job, range_id, satisfied) WHERE range_id IS NOT NULL;
    CREATE TABLE task_dep_ids (job TEXT NOT NULL, task TEXT NOT NULL, dep TEXT NOT NULL);
    CREATE INDEX task_dep_ids_by_dep ON task_dep_ids(job, dep);
    CREATE INDEX task_dep_ids_by_task ON task_dep_ids(job, task);
    CREATE TABLE task_dep_ranges (job TEXT NOT NULL, task TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL);
    CREATE INDEX task_dep_ranges_by_lo ON task_dep_ranges(job, lo);
    CREATE INDEX task_dep_ranges_by_task ON task_dep_ranges(job, task);
    UPDATE tasks SET range_id = CAST(id AS INTEGER)
     WHERE (id = '0' OR (id GLOB '[1-9]*' AND id NOT GLOB '*[^0-9]*')) AND length(id) <= 18;
    UPDATE tasks SET satisfied = 1
     WHERE state = 'completed' AND result = 'success' AND json_extract(doc, '$.exitConditions') IS NULL;
    INSERT INTO task_dep_ids (job, task, dep)
     SELECT t.job, t.key, lower(j.value) FROM tasks t, json_each(t.doc, '$.dependsOn.taskIds') j;
    INSERT INTO task_dep_ranges (job, task, lo, hi)
     SELECT t.job, t.key, json_extract(j.value, '$.start'), json_extract(j.value, '$.end')
       FROM tasks t, json_each(t.doc, '$.dependsOn.taskIdRanges') j;
    UPDATE tasks SET deps_left =
        (SELECT count(*) FROM task_dep_ids d WHERE d.job = tasks.job AND d.task = tasks.key
            AND NOT EXISTS (SELECT 1 FROM tasks x WHERE x.job = d.job AND x.key = d.dep AND x.satisfied = 1))
      + (SELECT coalesce(sum(r.hi - r.lo + 1 - (SELECT count(*) FROM tasks x
            WHERE x.job = r.job AND x.range_id BETWEEN r.lo AND r.hi AND x.satisfied = 1)), 0)
           FROM task_dep_ranges r WHERE r.job = tasks.job AND r.task = tasks.key)
     WHERE json_extract(doc, '$.dependsOn') IS NOT NULL;
    "#,
    // 6: job schedules (documents, like pools).
    r#"
    CREATE TABLE job_schedules (
        key           TEXT PRIMARY KEY,
        id            TEXT NOT NULL,
        state         TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        etag          TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        doc           TEXT NOT NULL
    );
    "#,
    // 7: named leases (leader election). `token` is the fencing token of
    // the latest grant and never decreases: a released lease keeps its row.
    // `expires` is in milliseconds since the Unix epoch.
    r#"
    CREATE TABLE leases (
        name    TEXT PRIMARY KEY,
        holder  TEXT,                        -- NULL when released
        token   INTEGER NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 8: pool usage (GET /poolusagemetrics): core-hours per pool and hour.
    // `hour` is the interval's start in Unix seconds (a multiple of 3600).
    r#"
    CREATE TABLE pool_usage (
        hour       INTEGER NOT NULL,
        pool       TEXT NOT NULL,
        vm_size    TEXT NOT NULL,
        core_hours REAL NOT NULL,
        PRIMARY KEY (hour, pool)
    ) WITHOUT ROWID;
    "#,
    // 9: certificates (documents, like pools; keyed by thumbprint).
    r#"
    CREATE TABLE certificates (
        key           TEXT PRIMARY KEY,
        id            TEXT NOT NULL,
        state         TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        etag          TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        doc           TEXT NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

fn pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 8 MiB per connection. Bigger is slower here: SQLite walks a
    // connection's whole page-cache hash when the writer commits and when a
    // reader finds the database changed, which with 32 MiB took a quarter of
    // the writer's time under a steady stream of task updates; the rows
    // themselves stay in the operating system's cache.
    conn.pragma_update(None, "cache_size", -8192i64)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Opens the writer connection: WAL, and `synchronous=FULL` so a commit is on
/// disk before it returns; then runs pending migrations.
pub fn open_writer(path: &Path) -> Result<Connection, String> {
    let mut conn = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("the database does not support WAL mode (got {mode})"));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(|e| e.to_string())?;
    // Checkpoints happen in the writer; keep the WAL from growing without bound.
    conn.pragma_update(None, "wal_autocheckpoint", 4000i64).map_err(|e| e.to_string())?;
    pragmas(&conn).map_err(|e| e.to_string())?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a read-only connection for queries.
pub fn open_reader(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    pragmas(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| e.to_string())?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(format!(
            "the data directory was written by a newer openbatch (schema {current}, this build knows {})",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql).map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(open_writer(&path).unwrap());
        let conn = open_writer(&path).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v as usize, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", 999i64).unwrap();
        drop(conn);
        assert!(open_writer(&path).unwrap_err().contains("newer openbatch"));
    }
}
