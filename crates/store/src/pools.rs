//! Pool rows. A pool's document is kept as a JSON object: openbatch reads the
//! properties it acts on and returns the rest as the client sent it.

use crate::jobs::{compile_with, list_page};
use crate::{key_of, sql, ListQuery, Page, Preconditions, Store, Stored};
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

fn pool_not_found(id: &str) -> Error {
    Error::new(ErrorCode::PoolNotFound).with("PoolId", id)
}

fn meta(doc: &Map<String, Value>) -> (String, String, String) {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("state"), s("eTag"), s("lastModified"))
}

impl Store {
    pub async fn create_pool(&self, id: &str, doc: Map<String, Value>) -> Result<Stored, Error> {
        let id = id.to_string();
        self.write(move |conn| {
            let key = key_of(&id);
            let existing: Option<String> = conn
                .query_row("SELECT state FROM pools WHERE key = ?1", [&key], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            if let Some(state) = existing {
                return Err(Error::new(if state == "deleting" { ErrorCode::PoolBeingDeleted } else { ErrorCode::PoolExists }));
            }
            let (state, etag, lm) = meta(&doc);
            let text = serde_json::to_string(&doc).map_err(Error::internal)?;
            conn.execute(
                "INSERT INTO pools (key, id, state, creation_time, etag, last_modified, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
                params![key, id, state, lm, etag, text],
            )
            .map_err(sql)?;
            Ok(Stored { doc: text, etag, last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now) })
        })
        .await
    }

    pub async fn get_pool(&self, id: &str) -> Result<Stored, Error> {
        let id = id.to_string();
        self.read(move |conn| {
            let row: Option<(String, String, String)> = conn
                .prepare_cached("SELECT doc, etag, last_modified FROM pools WHERE key = ?1")
                .and_then(|mut s| s.query_row([key_of(&id)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                .map_err(sql)?;
            let (doc, etag, lm) = row.ok_or_else(|| pool_not_found(&id))?;
            Ok(Stored { doc, etag, last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now) })
        })
        .await
    }

    /// Reads, checks and changes a pool document in one transaction. `f`
    /// gets the document and the new time; it may refuse.
    pub async fn update_pool<F>(&self, id: &str, pre: Preconditions, f: F) -> Result<Stored, Error>
    where
        F: FnOnce(&mut Map<String, Value>, Timestamp) -> Result<(), Error> + Send + 'static,
    {
        let id = id.to_string();
        let etags = self.etags.clone();
        self.write(move |conn| {
            let key = key_of(&id);
            let text: String = conn
                .query_row("SELECT doc FROM pools WHERE key = ?1", [&key], |r| r.get(0))
                .optional()
                .map_err(sql)?
                .ok_or_else(|| pool_not_found(&id))?;
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
                "UPDATE pools SET state = ?2, etag = ?3, last_modified = ?4, doc = ?5 WHERE key = ?1",
                params![key, state, etag, now.to_string(), text],
            )
            .map_err(sql)?;
            Ok(Stored { doc: text, etag, last_modified: now })
        })
        .await
    }

    pub async fn list_pools(&self, q: ListQuery) -> Result<Page, Error> {
        let filter = compile_with(&q, &crate::fields::PoolFields)?;
        self.read(move |conn| list_page(conn, "SELECT key, doc FROM pools WHERE 1", Vec::new(), filter.as_ref(), &q)).await
    }

    /// Every pool's document (for the node manager at startup).
    pub async fn all_pools(&self) -> Result<Vec<Map<String, Value>>, Error> {
        self.read(|conn| {
            let mut s = conn.prepare("SELECT doc FROM pools ORDER BY key").map_err(sql)?;
            let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(serde_json::from_str(&r.map_err(sql)?).map_err(Error::internal)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn remove_pool(&self, id: &str) -> Result<(), Error> {
        let key = key_of(id);
        self.write(move |conn| {
            conn.execute("DELETE FROM pools WHERE key = ?1", [&key]).map_err(sql)?;
            Ok(())
        })
        .await
    }
}
