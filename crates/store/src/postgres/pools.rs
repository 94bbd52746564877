//! Pool and job schedule rows: JSON documents, one set of operations for
//! both tables.

use super::jobs::compile_with;
use super::{timestamp, Postgres};
use crate::backend::DocChange;
use crate::doc_table::{meta, DocTable};
use crate::types::{key_of, ListQuery, Page, Preconditions, Stored};
use serde_json::{Map, Value};
use wire::Error;

/// The table that holds a kind of document.
fn table(t: DocTable) -> &'static str {
    match t {
        DocTable::Pools => "pools",
        DocTable::Schedules => "job_schedules",
        DocTable::Certificates => "certificates",
    }
}

impl Postgres {
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
        self.write(move |c| {
            let key = key_of(&id);
            if let Some(row) = c.query_opt(&format!("SELECT state FROM {} WHERE key = $1", table(t)), &[&key])? {
                let state: &str = row.get(0);
                return Err(if state == "deleting" { t.being_deleted() } else { t.exists() });
            }
            c.execute(
                &format!(
                    "INSERT INTO {} (key, id, state, creation_time, etag, last_modified, doc) VALUES ($1, $2, $3, $4, $5, $4, $6)",
                    table(t)
                ),
                &[&key, &id, &state, &lm, &etag, &text],
            )?;
            Ok(Stored { doc: text, etag, last_modified: timestamp(&lm) })
        })
        .await
    }

    pub(crate) async fn get_doc(&self, t: DocTable, id: &str) -> Result<Stored, Error> {
        let row = self.query_opt(&format!("SELECT doc, etag, last_modified FROM {} WHERE key = $1", table(t)), &[&key_of(id)]).await?;
        let r = row.ok_or_else(|| t.not_found(id))?;
        Ok(Stored { doc: r.get(0), etag: r.get(1), last_modified: timestamp(r.get(2)) })
    }

    pub(crate) async fn update_doc(&self, t: DocTable, id: &str, pre: Preconditions, f: DocChange) -> Result<Stored, Error> {
        let id = id.to_string();
        let etags = self.etags.clone();
        self.write(move |c| {
            let key = key_of(&id);
            let row = c.query_opt(&format!("SELECT doc FROM {} WHERE key = $1", table(t)), &[&key])?.ok_or_else(|| t.not_found(&id))?;
            let mut doc: Map<String, Value> = serde_json::from_str(row.get::<_, &str>(0)).map_err(Error::internal)?;
            let (_, etag, lm) = meta(&doc);
            pre.check_write(&etag, &timestamp(&lm))?;
            let (now, etag) = etags.next();
            f(&mut doc, now)?;
            doc.insert("eTag".into(), Value::String(etag.clone()));
            doc.insert("lastModified".into(), Value::String(now.to_string()));
            let (state, _, _) = meta(&doc);
            let text = serde_json::to_string(&doc).map_err(Error::internal)?;
            c.execute(
                &format!("UPDATE {} SET state = $2, etag = $3, last_modified = $4, doc = $5 WHERE key = $1", table(t)),
                &[&key, &state, &etag, &now.to_string(), &text],
            )?;
            Ok(Stored { doc: text, etag, last_modified: now })
        })
        .await
    }

    pub(crate) async fn list_docs(&self, t: DocTable, q: ListQuery) -> Result<Page, Error> {
        let filter = match t {
            DocTable::Pools => compile_with(&q, &crate::sqlite::fields::PoolFields, 1)?,
            DocTable::Schedules => compile_with(&q, &crate::sqlite::fields::ScheduleFields, 1)?,
            DocTable::Certificates => compile_with(&q, &crate::sqlite::fields::CertificateFields, 1)?,
        };
        let base = match t {
            DocTable::Pools => "SELECT key, doc FROM pools WHERE true",
            DocTable::Schedules => "SELECT key, doc FROM job_schedules WHERE true",
            DocTable::Certificates => "SELECT key, doc FROM certificates WHERE true",
        };
        self.list_page(base, Vec::new(), filter, &q).await
    }

    pub(crate) async fn all_docs(&self, t: DocTable) -> Result<Vec<String>, Error> {
        let rows = self.query(&format!("SELECT doc FROM {} ORDER BY key", table(t)), &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(crate) async fn remove_doc(&self, t: DocTable, id: &str) -> Result<(), Error> {
        let key = key_of(id);
        self.write(move |c| {
            c.execute(&format!("DELETE FROM {} WHERE key = $1", table(t)), &[&key])?;
            Ok(())
        })
        .await
    }
}
