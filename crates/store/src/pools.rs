//! Pool and job schedule rows. Their documents are kept as JSON objects:
//! openbatch reads the properties it acts on and returns the rest as the
//! client sent it. One set of operations serves both tables.

use crate::jobs::{compile_with, list_page};
use crate::{key_of, sql, ListQuery, Page, Preconditions, Store, Stored};
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

/// A table of JSON documents and the errors that name its resource.
#[derive(Clone, Copy)]
pub struct DocTable {
    table: &'static str,
    not_found: ErrorCode,
    exists: ErrorCode,
    being_deleted: ErrorCode,
    id_name: &'static str,
}

pub const POOLS: DocTable = DocTable {
    table: "pools",
    not_found: ErrorCode::PoolNotFound,
    exists: ErrorCode::PoolExists,
    being_deleted: ErrorCode::PoolBeingDeleted,
    id_name: "PoolId",
};

pub const SCHEDULES: DocTable = DocTable {
    table: "job_schedules",
    not_found: ErrorCode::JobScheduleNotFound,
    exists: ErrorCode::JobScheduleExists,
    being_deleted: ErrorCode::JobScheduleBeingDeleted,
    id_name: "JobScheduleId",
};

impl DocTable {
    fn not_found(&self, id: &str) -> Error {
        Error::new(self.not_found).with(self.id_name, id)
    }
}

fn meta(doc: &Map<String, Value>) -> (String, String, String) {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("state"), s("eTag"), s("lastModified"))
}

impl Store {
    pub async fn create_pool(&self, id: &str, doc: Map<String, Value>) -> Result<Stored, Error> {
        self.create_doc(POOLS, id, doc).await
    }

    pub async fn create_doc(&self, t: DocTable, id: &str, doc: Map<String, Value>) -> Result<Stored, Error> {
        let (state, etag, lm) = meta(&doc);
        let text = serde_json::to_string(&doc).map_err(Error::internal)?;
        self.create_doc_text(t, id, text, state, etag, lm).await
    }

    /// Creates a document given as JSON text (a request body kept as it
    /// came, without a tree of it), with its state, eTag and lastModified.
    pub async fn create_doc_text(
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
                conn.query_row(&format!("SELECT state FROM {} WHERE key = ?1", t.table), [&key], |r| r.get(0)).optional().map_err(sql)?;
            if let Some(state) = existing {
                return Err(Error::new(if state == "deleting" { t.being_deleted } else { t.exists }));
            }
            conn.execute(
                &format!(
                    "INSERT INTO {} (key, id, state, creation_time, etag, last_modified, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
                    t.table
                ),
                params![key, id, state, lm, etag, text],
            )
            .map_err(sql)?;
            Ok(Stored { doc: text, etag, last_modified: wire::time::parse_datetime(&lm).map(Timestamp).unwrap_or_else(Timestamp::now) })
        })
        .await
    }

    pub async fn get_pool(&self, id: &str) -> Result<Stored, Error> {
        self.get_doc(POOLS, id).await
    }

    pub async fn get_doc(&self, t: DocTable, id: &str) -> Result<Stored, Error> {
        let id = id.to_string();
        self.read(move |conn| {
            let row: Option<(String, String, String)> = conn
                .prepare_cached(&format!("SELECT doc, etag, last_modified FROM {} WHERE key = ?1", t.table))
                .and_then(|mut s| s.query_row([key_of(&id)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                .map_err(sql)?;
            let (doc, etag, lm) = row.ok_or_else(|| t.not_found(&id))?;
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
        self.update_doc(POOLS, id, pre, f).await
    }

    pub async fn update_doc<F>(&self, t: DocTable, id: &str, pre: Preconditions, f: F) -> Result<Stored, Error>
    where
        F: FnOnce(&mut Map<String, Value>, Timestamp) -> Result<(), Error> + Send + 'static,
    {
        let id = id.to_string();
        let etags = self.etags.clone();
        self.write(move |conn| {
            let key = key_of(&id);
            let text: String = conn
                .query_row(&format!("SELECT doc FROM {} WHERE key = ?1", t.table), [&key], |r| r.get(0))
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
                &format!("UPDATE {} SET state = ?2, etag = ?3, last_modified = ?4, doc = ?5 WHERE key = ?1", t.table),
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

    pub async fn list_schedules(&self, q: ListQuery) -> Result<Page, Error> {
        let filter = compile_with(&q, &crate::fields::ScheduleFields)?;
        self.read(move |conn| list_page(conn, "SELECT key, doc FROM job_schedules WHERE 1", Vec::new(), filter.as_ref(), &q)).await
    }

    /// Every pool's document (for the node manager at startup).
    pub async fn all_pools(&self) -> Result<Vec<Map<String, Value>>, Error> {
        self.all_docs(POOLS).await
    }

    /// Every pool's top-level members that are not objects or arrays (id,
    /// state, node targets, ...), in id order: what the node provider reads
    /// every round, without parsing start tasks, metadata and the like.
    pub async fn pool_summaries(&self) -> Result<Vec<Map<String, Value>>, Error> {
        self.read(move |conn| {
            let mut s = conn.prepare(&format!("SELECT doc FROM {} ORDER BY key", POOLS.table)).map_err(sql)?;
            let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            let mut out = Vec::new();
            for r in rows {
                let Scalars(m) = serde_json::from_str(&r.map_err(sql)?).map_err(Error::internal)?;
                out.push(m);
            }
            Ok(out)
        })
        .await
    }

    /// Every document of a table, in id order.
    pub async fn all_docs(&self, t: DocTable) -> Result<Vec<Map<String, Value>>, Error> {
        self.read(move |conn| {
            let mut s = conn.prepare(&format!("SELECT doc FROM {} ORDER BY key", t.table)).map_err(sql)?;
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
        self.remove_doc(POOLS, id).await
    }

    pub async fn remove_doc(&self, t: DocTable, id: &str) -> Result<(), Error> {
        let key = key_of(id);
        self.write(move |conn| {
            conn.execute(&format!("DELETE FROM {} WHERE key = ?1", t.table), [&key]).map_err(sql)?;
            Ok(())
        })
        .await
    }
}

/// A JSON object's scalar members; nested objects and arrays are skipped
/// without being built.
struct Scalars(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Scalars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalars, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        /// A scalar, or None for a skipped object or array.
        struct Member(Option<Value>);
        impl<'de> serde::Deserialize<'de> for Member {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Member, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Member;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a JSON value")
                    }
                    fn visit_bool<E>(self, v: bool) -> Result<Member, E> {
                        Ok(Member(Some(Value::Bool(v))))
                    }
                    fn visit_i64<E>(self, v: i64) -> Result<Member, E> {
                        Ok(Member(Some(Value::from(v))))
                    }
                    fn visit_u64<E>(self, v: u64) -> Result<Member, E> {
                        Ok(Member(Some(Value::from(v))))
                    }
                    fn visit_f64<E>(self, v: f64) -> Result<Member, E> {
                        Ok(Member(Some(Value::from(v))))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Member, E> {
                        Ok(Member(Some(Value::String(v.to_string()))))
                    }
                    fn visit_string<E>(self, v: String) -> Result<Member, E> {
                        Ok(Member(Some(Value::String(v))))
                    }
                    fn visit_unit<E>(self) -> Result<Member, E> {
                        Ok(Member(Some(Value::Null)))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Member, A::Error> {
                        while a.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(Member(None))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Member, A::Error> {
                        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(Member(None))
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalars;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalars, A::Error> {
                let mut m = Map::new();
                while let Some((k, Member(v))) = a.next_entry::<String, Member>()? {
                    if let Some(v) = v {
                        m.insert(k, v);
                    }
                }
                Ok(Scalars(m))
            }
        }
        d.deserialize_map(V)
    }
}
