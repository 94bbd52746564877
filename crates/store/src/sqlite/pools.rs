//! Pool and job schedule rows. Their documents are kept as JSON objects:
//! openbatch reads the properties it acts on and returns the rest as the
//! client sent it. One set of operations serves both tables.

use super::jobs::{compile_with, list_page};
use super::{sql, Sqlite};
use crate::backend::DocChange;
use crate::doc_table::{meta, DocTable};
use crate::types::{key_of, ListQuery, Page, Preconditions, Stored};
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};
use wire::time::Timestamp;
use wire::Error;

/// The table that holds a kind of document.
fn table(t: DocTable) -> &'static str {
    match t {
        DocTable::Pools => "pools",
        DocTable::Schedules => "job_schedules",
        DocTable::Certificates => "certificates",
    }
}

impl Sqlite {
    pub(crate) async fn create_doc(
        &self,
        t: DocTable,
        id: &str,
        text: String,
        state: String,
        etag: String,
        lm: String,
    ) -> Result<Stored, Error> {
        let id = id.to_string();
        self.write(move |conn| {
            let key = key_of(&id);
            let existing: Option<String> =
                conn.query_row(&format!("SELECT state FROM {} WHERE key = ?1", table(t)), [&key], |r| r.get(0)).optional().map_err(sql)?;
            if let Some(state) = existing {
                return Err(if state == "deleting" { t.being_deleted() } else { t.exists() });
            }
            conn.execute(
                &format!(
                    "INSERT INTO {} (key, id, state, creation_time, etag, last_modified, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
                    table(t)
                ),
                params![key, id, state, lm, etag, text],
            )
            .map_err(sql)?;
            Ok(Stored { doc: text, etag, last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now) })
        })
        .await
    }

    pub(crate) async fn get_doc(&self, t: DocTable, id: &str) -> Result<Stored, Error> {
        let id = id.to_string();
        self.read(move |conn| {
            let row: Option<(String, String, String)> = conn
                .prepare_cached(&format!("SELECT doc, etag, last_modified FROM {} WHERE key = ?1", table(t)))
                .and_then(|mut s| s.query_row([key_of(&id)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                .map_err(sql)?;
            let (doc, etag, lm) = row.ok_or_else(|| t.not_found(&id))?;
            Ok(Stored { doc, etag, last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now) })
        })
        .await
    }

    pub(crate) async fn update_doc(&self, t: DocTable, id: &str, pre: Preconditions, f: DocChange) -> Result<Stored, Error> {
        let id = id.to_string();
        let etags = self.etags.clone();
        self.write(move |conn| {
            let key = key_of(&id);
            let text: String = conn
                .query_row(&format!("SELECT doc FROM {} WHERE key = ?1", table(t)), [&key], |r| r.get(0))
                .optional()
                .map_err(sql)?
                .ok_or_else(|| t.not_found(&id))?;
            let mut doc: Map<String, Value> = serde_json::from_str(&text).map_err(Error::internal)?;
            let (_, etag, lm) = meta(&doc);
            let lm = wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now);
            pre.check_write(&etag, &lm)?;
            let (now, etag) = etags.next();
            f(&mut doc, now)?;
            doc.insert("eTag".into(), Value::String(etag.clone()));
            doc.insert("lastModified".into(), Value::String(now.to_string()));
            let (state, _, _) = meta(&doc);
            let text = serde_json::to_string(&doc).map_err(Error::internal)?;
            conn.execute(
                &format!("UPDATE {} SET state = ?2, etag = ?3, last_modified = ?4, doc = ?5 WHERE key = ?1", table(t)),
                params![key, state, etag, now.to_string(), text],
            )
            .map_err(sql)?;
            Ok(Stored { doc: text, etag, last_modified: now })
        })
        .await
    }

    pub(crate) async fn list_docs(&self, t: DocTable, q: ListQuery) -> Result<Page, Error> {
        let filter = match t {
            DocTable::Pools => compile_with(&q, &super::fields::PoolFields)?,
            DocTable::Schedules => compile_with(&q, &super::fields::ScheduleFields)?,
            DocTable::Certificates => compile_with(&q, &super::fields::CertificateFields)?,
        };
        let base = match t {
            DocTable::Pools => "SELECT key, doc FROM pools WHERE 1",
            DocTable::Schedules => "SELECT key, doc FROM job_schedules WHERE 1",
            DocTable::Certificates => "SELECT key, doc FROM certificates WHERE 1",
        };
        self.read(move |conn| list_page(conn, base, Vec::new(), filter.as_ref(), &q)).await
    }

    /// Every document of a table, in id order.
    pub(crate) async fn all_docs(&self, t: DocTable) -> Result<Vec<String>, Error> {
        self.read(move |conn| {
            let mut s = conn.prepare(&format!("SELECT doc FROM {} ORDER BY key", table(t))).map_err(sql)?;
            let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })
        .await
    }

    pub(crate) async fn remove_doc(&self, t: DocTable, id: &str) -> Result<(), Error> {
        let key = key_of(id);
        self.write(move |conn| {
            conn.execute(&format!("DELETE FROM {} WHERE key = ?1", table(t)), [&key]).map_err(sql)?;
            Ok(())
        })
        .await
    }
}
