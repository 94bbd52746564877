//! The kinds of JSON document the store keeps (pools, job schedules,
//! certificates) and
//! what it reads from every document.

use serde_json::{Map, Value};
use wire::{Error, ErrorCode};

/// A kind of JSON document, and the errors that name its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocTable {
    Pools,
    Schedules,
    /// Keyed by thumbprint; the secret parts (`_data`, `_password`) are
    /// hidden members, never rendered.
    Certificates,
}

pub const POOLS: DocTable = DocTable::Pools;

pub const SCHEDULES: DocTable = DocTable::Schedules;

pub const CERTIFICATES: DocTable = DocTable::Certificates;

impl DocTable {
    /// The name of the id in error details (`PoolId`, `JobScheduleId`).
    fn id_name(self) -> &'static str {
        match self {
            DocTable::Pools => "PoolId",
            DocTable::Schedules => "JobScheduleId",
            DocTable::Certificates => "Thumbprint",
        }
    }

    /// 404 for the document `id`.
    pub fn not_found(self, id: &str) -> Error {
        let code = match self {
            DocTable::Pools => ErrorCode::PoolNotFound,
            DocTable::Schedules => ErrorCode::JobScheduleNotFound,
            DocTable::Certificates => ErrorCode::CertificateNotFound,
        };
        Error::new(code).with(self.id_name(), id)
    }

    /// 409: a document of that id exists.
    pub fn exists(self) -> Error {
        Error::new(match self {
            DocTable::Pools => ErrorCode::PoolExists,
            DocTable::Schedules => ErrorCode::JobScheduleExists,
            DocTable::Certificates => ErrorCode::CertificateExists,
        })
    }

    /// 409: a document of that id is being deleted.
    pub fn being_deleted(self) -> Error {
        Error::new(match self {
            DocTable::Pools => ErrorCode::PoolBeingDeleted,
            DocTable::Schedules => ErrorCode::JobScheduleBeingDeleted,
            DocTable::Certificates => ErrorCode::CertificateBeingDeleted,
        })
    }
}

/// A document's `state`, `eTag` and `lastModified` members ('' when absent).
pub fn meta(doc: &Map<String, Value>) -> (String, String, String) {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("state"), s("eTag"), s("lastModified"))
}
