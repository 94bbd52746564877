//! Job rows.

use super::fields::JobFields;
use super::filter_sql::{self, CompiledFilter};
use super::txn::SqliteTxn;
use super::{sql, Sqlite};
use crate::backend::JobChange;
use crate::types::{key_of, ListQuery, Page, Preconditions, Stored};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use wire::enums::JobState;
use wire::models::CloudJob;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

fn job_not_found(id: &str) -> Error {
    Error::new(ErrorCode::JobNotFound).with("JobId", id)
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, Error> {
    serde_json::from_str(doc).map_err(|e| Error::internal(format!("stored document is unreadable: {e}")))
}

/// Reads a job inside a transaction.
pub(crate) fn load(conn: &Connection, id: &str) -> Result<Option<CloudJob>, Error> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM jobs WHERE key = ?1")
        .and_then(|mut s| s.query_row([key_of(id)], |r| r.get(0)).optional())
        .map_err(sql)?;
    doc.map(|d| from_doc(&d)).transpose()
}

/// Writes back a changed job inside a transaction.
pub(crate) fn save(conn: &Connection, job: &CloudJob) -> Result<Stored, Error> {
    let doc = to_doc(job)?;
    conn.prepare_cached("UPDATE jobs SET state = ?2, etag = ?3, last_modified = ?4, doc = ?5, pool = ?6, priority = ?7 WHERE key = ?1")
        .and_then(|mut s| {
            s.execute(params![
                key_of(&job.id),
                job.state.as_str(),
                job.e_tag,
                job.last_modified.to_string(),
                doc,
                crate::job_rules::pool_of(job).map(key_of),
                job.priority
            ])
        })
        .map_err(sql)?;
    Ok(Stored { doc, etag: job.e_tag.clone(), last_modified: job.last_modified })
}

impl Sqlite {
    /// Inserts a new job; 409 `JobExists` (or `JobBeingDeleted`) when the id is taken.
    pub(crate) async fn create_job(&self, job: CloudJob) -> Result<Stored, Error> {
        let doc = to_doc(&job)?;
        let r = self
            .write(move |conn| {
                let key = key_of(&job.id);
                let existing: Option<String> = conn
                    .prepare_cached("SELECT state FROM jobs WHERE key = ?1")
                    .and_then(|mut s| s.query_row([&key], |r| r.get(0)).optional())
                    .map_err(sql)?;
                if let Some(state) = existing {
                    return Err(if state == JobState::Deleting.as_str() {
                        Error::new(ErrorCode::JobBeingDeleted)
                    } else {
                        Error::new(ErrorCode::JobExists)
                    });
                }
                if let Some(pool) = crate::job_rules::pool_of(&job) {
                    crate::job_rules::check_pool_usable(&SqliteTxn(conn), pool)?;
                }
                conn.prepare_cached(
                    "INSERT INTO jobs (key, id, state, creation_time, etag, last_modified, doc, pool, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key,
                        job.id,
                        job.state.as_str(),
                        job.creation_time.to_string(),
                        job.e_tag,
                        job.last_modified.to_string(),
                        doc,
                        crate::job_rules::pool_of(&job).map(key_of),
                        job.priority
                    ])
                })
                .map_err(sql)?;
                Ok(Stored { doc, etag: job.e_tag.clone(), last_modified: job.last_modified })
            })
            .await;
        if r.is_ok() {
            self.bump_jobs();
        }
        r
    }

    /// Records that some job changed (after the commit), for job-list caches.
    fn bump_jobs(&self) {
        self.signals.jobs_changed();
    }

    /// The stored job, or 404 `JobNotFound`.
    pub(crate) async fn get_job(&self, id: &str) -> Result<Stored, Error> {
        let id = id.to_string();
        self.read_now(move |conn| {
            conn.prepare_cached("SELECT doc, etag, last_modified FROM jobs WHERE key = ?1")
                .and_then(|mut s| {
                    s.query_row([key_of(&id)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).optional()
                })
                .map_err(sql)?
                .map(|(doc, etag, lm)| Stored {
                    doc,
                    etag,
                    last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now),
                })
                .ok_or_else(|| job_not_found(&id))
        })
    }

    /// Reads, checks and changes a job in one transaction. `f` returns an
    /// error to refuse the change. The ETag and Last-Modified are renewed.
    pub(crate) async fn update_job(&self, id: &str, pre: Preconditions, f: JobChange) -> Result<Stored, Error> {
        let id = id.to_string();
        let etags = self.etags.clone();
        let r = self
            .write(move |conn| {
                let mut job = load(conn, &id)?.ok_or_else(|| job_not_found(&id))?;
                pre.check_write(&job.e_tag, &job.last_modified)?;
                let (now, etag) = etags.next();
                f(&SqliteTxn(conn), &mut job, now)?;
                job.e_tag = etag;
                job.last_modified = now;
                save(conn, &job)
            })
            .await;
        if r.is_ok() {
            self.bump_jobs();
        }
        r
    }

    /// A page of the jobs a job schedule created (ids `{schedule}:job-{n}`).
    pub(crate) async fn list_schedule_jobs(&self, schedule: &str, q: ListQuery) -> Result<Page, Error> {
        let filter = compile(&q)?;
        let (lo, hi) = (format!("{}:", key_of(schedule)), format!("{};", key_of(schedule)));
        self.read(move |conn| {
            list_page(conn, "SELECT key, doc FROM jobs WHERE key >= ? AND key < ?", vec![lo.into(), hi.into()], filter.as_ref(), &q)
        })
        .await
    }

    /// A page of jobs in id order.
    pub(crate) async fn list_jobs(&self, q: ListQuery) -> Result<Page, Error> {
        let filter = compile(&q)?;
        self.read(move |conn| list_page(conn, "SELECT key, doc FROM jobs WHERE 1", Vec::new(), filter.as_ref(), &q)).await
    }

    /// Active jobs that set `constraints.maxWallClockTime` (the lifecycle
    /// worker ends them when it expires).
    pub(crate) async fn active_jobs_with_wall_clock(&self) -> Result<Vec<CloudJob>, Error> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT doc FROM jobs INDEXED BY jobs_by_state WHERE state = 'active'
                     AND json_extract(doc, '$.constraints.maxWallClockTime') IS NOT NULL
                     AND json_extract(doc, '$.constraints.maxWallClockTime') != ?1",
                )
                .map_err(sql)?;
            // Most jobs carry the infinite default: they are not read at all.
            let infinite = wire::time::Duration::INFINITE.to_string();
            let rows = stmt.query_map([infinite], |r| r.get::<_, String>(0)).map_err(sql)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(from_doc(&row.map_err(sql)?)?);
            }
            Ok(out)
        })
        .await
    }

    /// Ids and states of jobs in the given states (for the lifecycle worker).
    pub(crate) async fn jobs_in_states(&self, states: &[JobState]) -> Result<Vec<(String, JobState, Timestamp)>, Error> {
        let states: Vec<String> = states.iter().map(|s| s.as_str().to_string()).collect();
        self.read(move |conn| {
            let marks = vec!["?"; states.len()].join(",");
            let mut stmt = conn.prepare(&format!("SELECT id, state, doc FROM jobs WHERE state IN ({marks})")).map_err(sql)?;
            let rows = stmt
                .query_map(params_from_iter(states.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(sql)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, state, doc) = row.map_err(sql)?;
                let job: CloudJob = from_doc(&doc)?;
                if let Some(s) = JobState::parse(&state) {
                    out.push((id, s, job.state_transition_time));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Removes up to `chunk` of a deleting job's tasks; when none are left,
    /// removes the job itself. Returns true once the job is gone.
    pub(crate) async fn purge_job(&self, id: &str, chunk: usize) -> Result<bool, Error> {
        let key = key_of(id);
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks WHERE job = ?1 LIMIT ?2)")
                .and_then(|mut s| s.execute(params![key, chunk as i64]))
                .map_err(sql)?;
            if n > 0 {
                return Ok(false);
            }
            conn.execute("DELETE FROM task_counts WHERE job = ?1", [&key]).map_err(sql)?;
            conn.execute("DELETE FROM task_dep_ids WHERE job = ?1", [&key]).map_err(sql)?;
            conn.execute("DELETE FROM task_dep_ranges WHERE job = ?1", [&key]).map_err(sql)?;
            conn.execute("DELETE FROM jobs WHERE key = ?1 AND state = 'deleting'", [&key]).map_err(sql)?;
            Ok(true)
        })
        .await
        .inspect(|done| {
            if *done {
                self.bump_jobs();
            }
        })
    }
}

pub(crate) fn compile(q: &ListQuery) -> Result<Option<CompiledFilter>, Error> {
    compile_with(q, &JobFields)
}

pub(crate) fn compile_with(q: &ListQuery, fields: &dyn filter_sql::FieldResolver) -> Result<Option<CompiledFilter>, Error> {
    q.filter
        .as_ref()
        .map(|f| filter_sql::compile(f, fields))
        .transpose()
        .map_err(|e| Error::new(ErrorCode::InvalidQueryParameterValue).with("QueryParameterName", "$filter").with("Reason", e))
}

/// A keyset-paged list: `base` selects `(key, doc)` rows with its own
/// conditions (bound to `args`); the filter, the continuation key, the order
/// and the limit are added here.
pub(crate) fn list_page(
    conn: &Connection,
    base: &str,
    mut args: Vec<rusqlite::types::Value>,
    filter: Option<&CompiledFilter>,
    q: &ListQuery,
) -> Result<Page, Error> {
    let mut sqltext = format!("{base} AND key > ?");
    args.push(q.after.clone().unwrap_or_default().into());
    if let Some(f) = filter {
        sqltext.push_str(" AND (");
        sqltext.push_str(&f.sql);
        sqltext.push(')');
        args.extend(f.params.iter().cloned());
    }
    sqltext.push_str(" ORDER BY key LIMIT ?");
    args.push(((q.limit + 1) as i64).into());
    page(conn, &sqltext, args, q.limit)
}

/// Runs a keyset-paged query whose rows are (key, doc).
fn page(conn: &Connection, sqltext: &str, args: Vec<rusqlite::types::Value>, limit: usize) -> Result<Page, Error> {
    let mut stmt = conn.prepare_cached(sqltext).map_err(sql)?;
    let mut rows = stmt.query(params_from_iter(args.iter())).map_err(sql)?;
    let mut out = Page::default();
    let mut last_key = None;
    while let Some(r) = rows.next().map_err(sql)? {
        if out.docs.len() == limit {
            out.next = last_key.take();
            break;
        }
        last_key = Some(r.get::<_, String>(0).map_err(sql)?);
        out.docs.push(r.get::<_, String>(1).map_err(sql)?);
    }
    Ok(out)
}
