//! Pools and job schedules: documents kept as JSON objects. openbatch reads
//! the properties it acts on and returns the rest as the client sent it.
//! One set of operations serves both kinds ([`DocTable`]).

use crate::backend::DocChange;
use crate::handle::Store;
use crate::types::{ListQuery, Page, Preconditions, Stored};
use serde_json::{Map, Value};
use wire::time::Timestamp;
use wire::Error;

pub use crate::doc_table::{meta, DocTable, CERTIFICATES, POOLS, SCHEDULES};

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
        self.backend.create_doc(t, id, text, state, etag, lm).await
    }

    pub async fn get_pool(&self, id: &str) -> Result<Stored, Error> {
        self.get_doc(POOLS, id).await
    }

    pub async fn get_doc(&self, t: DocTable, id: &str) -> Result<Stored, Error> {
        self.backend.get_doc(t, id).await
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
        let f: DocChange = Box::new(f);
        self.backend.update_doc(t, id, pre, f).await
    }

    pub async fn list_pools(&self, q: ListQuery) -> Result<Page, Error> {
        self.backend.list_docs(POOLS, q).await
    }

    pub async fn list_schedules(&self, q: ListQuery) -> Result<Page, Error> {
        self.backend.list_docs(SCHEDULES, q).await
    }

    /// A page of certificates (their documents include the hidden secret
    /// members: render them through a whitelist).
    pub async fn list_certificates(&self, q: ListQuery) -> Result<Page, Error> {
        self.backend.list_docs(CERTIFICATES, q).await
    }

    /// Every pool's document (for the node manager at startup).
    pub async fn all_pools(&self) -> Result<Vec<Map<String, Value>>, Error> {
        self.all_docs(POOLS).await
    }

    /// Every pool's top-level members that are not objects or arrays (id,
    /// state, node targets, ...), in id order: what the node provider reads
    /// every round, without building start tasks, metadata and the like.
    pub async fn pool_summaries(&self) -> Result<Vec<Map<String, Value>>, Error> {
        let texts = self.backend.all_docs(POOLS).await?;
        texts.iter().map(|t| serde_json::from_str(t).map(|Scalars(m)| m).map_err(Error::internal)).collect()
    }

    /// Every document of a table, in id order.
    pub async fn all_docs(&self, t: DocTable) -> Result<Vec<Map<String, Value>>, Error> {
        let texts = self.backend.all_docs(t).await?;
        texts.iter().map(|t| serde_json::from_str(t).map_err(Error::internal)).collect()
    }

    pub async fn remove_pool(&self, id: &str) -> Result<(), Error> {
        self.remove_doc(POOLS, id).await
    }

    pub async fn remove_doc(&self, t: DocTable, id: &str) -> Result<(), Error> {
        self.backend.remove_doc(t, id).await
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
