//! Job rows, and the keyset-paged list every resource uses.

use super::filter_sql::{self, Param, PgFilter};
use super::txn::PgTxn;
use super::writer::{pg, PgConn};
use super::{timestamp, Postgres};
use crate::backend::JobChange;
use crate::sqlite::fields::JobFields;
use crate::sqlite::filter_sql::FieldResolver;
use crate::types::{key_of, ListQuery, Page, Preconditions, Stored};
use postgres::types::ToSql;
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

pub(crate) fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, Error> {
    serde_json::from_str(doc).map_err(|e| Error::internal(format!("stored document is unreadable: {e}")))
}

/// Reads a job inside a transaction.
pub(crate) fn load(c: &mut PgConn, id: &str) -> Result<Option<CloudJob>, Error> {
    let row = c.query_opt("SELECT doc FROM jobs WHERE key = $1", &[&key_of(id)])?;
    row.map(|r| from_doc(r.get::<_, &str>(0))).transpose()
}

/// Writes back a changed job inside a transaction.
pub(crate) fn save(c: &mut PgConn, job: &CloudJob) -> Result<Stored, Error> {
    let doc = to_doc(job)?;
    c.execute(
        "UPDATE jobs SET state = $2, etag = $3, last_modified = $4, doc = $5, pool = $6, priority = $7 WHERE key = $1",
        &[
            &key_of(&job.id),
            &job.state.as_str(),
            &job.e_tag,
            &job.last_modified.to_string(),
            &doc,
            &crate::job_rules::pool_of(job).map(key_of),
            &(job.priority as i64),
        ],
    )?;
    Ok(Stored { doc, etag: job.e_tag.clone(), last_modified: job.last_modified })
}

impl Postgres {
    pub(crate) async fn create_job(&self, job: CloudJob) -> Result<Stored, Error> {
        let doc = to_doc(&job)?;
        let r = self
            .write(move |c| {
                let key = key_of(&job.id);
                if let Some(row) = c.query_opt("SELECT state FROM jobs WHERE key = $1", &[&key])? {
                    let state: &str = row.get(0);
                    return Err(if state == JobState::Deleting.as_str() {
                        Error::new(ErrorCode::JobBeingDeleted)
                    } else {
                        Error::new(ErrorCode::JobExists)
                    });
                }
                if let Some(pool) = crate::job_rules::pool_of(&job) {
                    crate::job_rules::check_pool_usable(&PgTxn(std::cell::RefCell::new(&mut *c)), pool)?;
                }
                c.execute(
                    "INSERT INTO jobs (key, id, state, creation_time, etag, last_modified, doc, pool, priority)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &key,
                        &job.id,
                        &job.state.as_str(),
                        &job.creation_time.to_string(),
                        &job.e_tag,
                        &job.last_modified.to_string(),
                        &doc,
                        &crate::job_rules::pool_of(&job).map(key_of),
                        &(job.priority as i64),
                    ],
                )?;
                Ok(Stored { doc, etag: job.e_tag.clone(), last_modified: job.last_modified })
            })
            .await;
        if r.is_ok() {
            self.signals.jobs_changed();
        }
        r
    }

    pub(crate) async fn get_job(&self, id: &str) -> Result<Stored, Error> {
        let row = self.query_opt("SELECT doc, etag, last_modified FROM jobs WHERE key = $1", &[&key_of(id)]).await?;
        row.map(|r| Stored { doc: r.get(0), etag: r.get(1), last_modified: timestamp(r.get(2)) }).ok_or_else(|| job_not_found(id))
    }

    pub(crate) async fn update_job(&self, id: &str, pre: Preconditions, f: JobChange) -> Result<Stored, Error> {
        let id = id.to_string();
        let etags = self.etags.clone();
        let r = self
            .write(move |c| {
                let mut job = load(c, &id)?.ok_or_else(|| job_not_found(&id))?;
                pre.check_write(&job.e_tag, &job.last_modified)?;
                let (now, etag) = etags.next();
                f(&PgTxn(std::cell::RefCell::new(&mut *c)), &mut job, now)?;
                job.e_tag = etag;
                job.last_modified = now;
                save(c, &job)
            })
            .await;
        if r.is_ok() {
            self.signals.jobs_changed();
        }
        r
    }

    pub(crate) async fn list_schedule_jobs(&self, schedule: &str, q: ListQuery) -> Result<Page, Error> {
        let filter = compile_with(&q, &JobFields, 3)?;
        let (lo, hi) = (format!("{}:", key_of(schedule)), format!("{};", key_of(schedule)));
        self.list_page("SELECT key, doc FROM jobs WHERE key >= $1 AND key < $2", vec![Box::new(lo), Box::new(hi)], filter, &q).await
    }

    pub(crate) async fn list_jobs(&self, q: ListQuery) -> Result<Page, Error> {
        let filter = compile_with(&q, &JobFields, 1)?;
        self.list_page("SELECT key, doc FROM jobs WHERE true", Vec::new(), filter, &q).await
    }

    pub(crate) async fn active_jobs_with_wall_clock(&self) -> Result<Vec<CloudJob>, Error> {
        // Most jobs carry the infinite default: they are not returned.
        let infinite = wire::time::Duration::INFINITE.to_string();
        let rows = self
            .query(
                "SELECT doc FROM jobs WHERE state = 'active'
                 AND (doc::jsonb -> 'constraints' ->> 'maxWallClockTime') IS NOT NULL
                 AND (doc::jsonb -> 'constraints' ->> 'maxWallClockTime') <> $1",
                &[&infinite],
            )
            .await?;
        rows.iter().map(|r| from_doc(r.get::<_, &str>(0))).collect()
    }

    pub(crate) async fn jobs_in_states(&self, states: &[JobState]) -> Result<Vec<(String, JobState, Timestamp)>, Error> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let rows = self.query("SELECT id, state, doc FROM jobs WHERE state = ANY($1)", &[&states]).await?;
        let mut out = Vec::new();
        for r in rows {
            let job: CloudJob = from_doc(r.get::<_, &str>(2))?;
            if let Some(s) = JobState::parse(r.get::<_, &str>(1)) {
                out.push((r.get(0), s, job.state_transition_time));
            }
        }
        Ok(out)
    }

    pub(crate) async fn purge_job(&self, id: &str, chunk: usize) -> Result<bool, Error> {
        let key = key_of(id);
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM tasks WHERE job = $1 AND key IN (SELECT key FROM tasks WHERE job = $1 LIMIT $2)",
                &[&key, &(chunk as i64)],
            )?;
            if n > 0 {
                return Ok(false);
            }
            for q in [
                "DELETE FROM task_counts WHERE job = $1",
                "DELETE FROM task_dep_ids WHERE job = $1",
                "DELETE FROM task_dep_ranges WHERE job = $1",
                "DELETE FROM jobs WHERE key = $1 AND state = 'deleting'",
            ] {
                c.execute(q, &[&key])?;
            }
            Ok(true)
        })
        .await
        .inspect(|done| {
            if *done {
                self.signals.jobs_changed();
            }
        })
    }

    /// A keyset-paged list: `base` selects `(key, doc)` rows with its own
    /// conditions (bound to `args`, `$1`...); the filter (compiled to
    /// number its placeholders after them), the continuation key, the order
    /// and the limit are added here.
    pub(crate) async fn list_page(&self, base: &str, mut args: Vec<Param>, filter: Option<PgFilter>, q: &ListQuery) -> Result<Page, Error> {
        let mut sql = base.to_string();
        if let Some(f) = filter {
            sql.push_str(" AND (");
            sql.push_str(&f.sql);
            sql.push(')');
            args.extend(f.params);
        }
        sql.push_str(&format!(" AND key > ${} ORDER BY key LIMIT ${}", args.len() + 1, args.len() + 2));
        args.push(Box::new(q.after.clone().unwrap_or_default()));
        args.push(Box::new((q.limit + 1) as i64));
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let rows = self.query_dynamic(&sql, &params).await?;
        let mut out = Page::default();
        let mut last_key = None;
        for r in rows {
            if out.docs.len() == q.limit {
                out.next = last_key.take();
                break;
            }
            last_key = Some(r.try_get::<_, String>(0).map_err(pg)?);
            out.docs.push(r.try_get::<_, String>(1).map_err(pg)?);
        }
        Ok(out)
    }
}

/// Compiles a list's `$filter` with placeholders from `first`; a filter
/// that cannot be evaluated is a 400 naming `$filter`.
pub(crate) fn compile_with(q: &ListQuery, fields: &dyn FieldResolver, first: usize) -> Result<Option<PgFilter>, Error> {
    q.filter
        .as_ref()
        .map(|f| filter_sql::compile(f, fields, first))
        .transpose()
        .map_err(|e| Error::new(ErrorCode::InvalidQueryParameterValue).with("QueryParameterName", "$filter").with("Reason", e))
}
