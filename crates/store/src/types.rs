//! The plain types every part of the store shares: documents as stored,
//! pages and list options, preconditions, ETags, keys and new tasks. They
//! depend on nothing else in the crate.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use wire::models::CloudTask;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

/// A resource as stored: its wire document and concurrency metadata.
#[derive(Debug, Clone)]
pub struct Stored {
    pub doc: String,
    pub etag: String,
    pub last_modified: Timestamp,
}

/// One page of a list.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub docs: Vec<String>,
    /// The key to continue after, when there are more items.
    pub next: Option<String>,
}

/// The options of a list request, already parsed.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<wire::odata::Filter>,
    /// Continue after this key (from a `$skiptoken`).
    pub after: Option<String>,
    pub limit: usize,
}

/// Conditional-request headers, checked against the current resource inside
/// the same transaction as the change they guard.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub if_match: Option<Vec<String>>,
    pub if_none_match: Option<Vec<String>>,
    pub if_modified_since: Option<DateTime<Utc>>,
    pub if_unmodified_since: Option<DateTime<Utc>>,
}

fn etag_matches(list: &[String], etag: &str) -> bool {
    list.iter().any(|e| e == "*" || e == etag)
}

impl Preconditions {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none() && self.if_modified_since.is_none() && self.if_unmodified_since.is_none()
    }

    /// For GET and HEAD: 304 when the client's copy is current, 412 when an
    /// If-Match / If-Unmodified-Since condition fails.
    pub fn check_read(&self, etag: &str, last_modified: &Timestamp) -> Result<(), Error> {
        let lm = last_modified.0.timestamp();
        if let Some(m) = &self.if_match {
            if !etag_matches(m, etag) {
                return Err(Error::new(ErrorCode::ConditionNotMet));
            }
        }
        if let Some(t) = self.if_unmodified_since {
            if lm > t.timestamp() {
                return Err(Error::new(ErrorCode::ConditionNotMet));
            }
        }
        if let Some(m) = &self.if_none_match {
            if etag_matches(m, etag) {
                return Err(Error::new(ErrorCode::NotModified));
            }
        } else if let Some(t) = self.if_modified_since {
            if lm <= t.timestamp() {
                return Err(Error::new(ErrorCode::NotModified));
            }
        }
        Ok(())
    }

    /// For changes: every failed condition is 412.
    pub fn check_write(&self, etag: &str, last_modified: &Timestamp) -> Result<(), Error> {
        match self.check_read(etag, last_modified) {
            Err(e) if e.code == ErrorCode::NotModified => Err(Error::new(ErrorCode::ConditionNotMet)),
            r => r,
        }
    }

    /// For a resource that does not exist: If-Match fails (412 would reveal
    /// nothing a 404 does not; the service answers 404 first, callers check
    /// existence before this).
    pub fn require_absent_ok(&self) -> Result<(), Error> {
        if self.if_match.is_some() {
            return Err(Error::new(ErrorCode::ConditionNotMet));
        }
        Ok(())
    }
}

/// Produces ETags like the service's (`0x8DCAFE...`: .NET ticks in hex),
/// strictly increasing so two changes never share one.
#[derive(Debug, Default)]
pub struct EtagClock {
    last: AtomicU64,
}

const UNIX_EPOCH_TICKS: u64 = 621_355_968_000_000_000;

impl EtagClock {
    /// The current time and a fresh ETag.
    pub fn next(&self) -> (Timestamp, String) {
        let now = Utc::now();
        let ticks = UNIX_EPOCH_TICKS + (now.timestamp_nanos_opt().unwrap_or(0).max(0) as u64) / 100;
        let mut prev = self.last.load(Ordering::Relaxed);
        let value = loop {
            let v = ticks.max(prev + 1);
            match self.last.compare_exchange_weak(prev, v, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break v,
                Err(p) => prev = p,
            }
        };
        (Timestamp(now), format!("0x{value:X}"))
    }
}

/// Keys are ids lower-cased: ids are unique case-insensitively.
pub fn key_of(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// A task ready to insert: its document is serialized by the caller, off the
/// writer thread.
pub struct NewTask {
    pub task: CloudTask,
    pub doc: String,
}

impl NewTask {
    pub fn new(task: CloudTask) -> Result<NewTask, Error> {
        let doc = serde_json::to_string(&task).map_err(Error::internal)?;
        Ok(NewTask { task, doc })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_increase() {
        let c = EtagClock::default();
        let (_, a) = c.next();
        let (_, b) = c.next();
        assert!(a.starts_with("0x8D") || a.starts_with("0x8E"), "{a}");
        assert_ne!(a, b);
        assert!(u64::from_str_radix(&b[2..], 16).unwrap() > u64::from_str_radix(&a[2..], 16).unwrap());
    }

    #[test]
    fn preconditions() {
        let lm = Timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let p = Preconditions { if_match: Some(vec!["0x1".into()]), ..Default::default() };
        assert!(p.check_write("0x1", &lm).is_ok());
        assert_eq!(p.check_write("0x2", &lm).unwrap_err().code, ErrorCode::ConditionNotMet);
        let p = Preconditions { if_none_match: Some(vec!["*".into()]), ..Default::default() };
        assert_eq!(p.check_read("0x2", &lm).unwrap_err().code, ErrorCode::NotModified);
        assert_eq!(p.check_write("0x2", &lm).unwrap_err().code, ErrorCode::ConditionNotMet);
        let p = Preconditions { if_modified_since: Some(lm.0), ..Default::default() };
        assert_eq!(p.check_read("0x2", &lm).unwrap_err().code, ErrorCode::NotModified);
        let later = Timestamp(lm.0 + chrono::Duration::seconds(5));
        assert!(p.check_read("0x2", &later).is_ok());
        let p = Preconditions { if_unmodified_since: Some(lm.0), ..Default::default() };
        assert!(p.check_write("0x2", &lm).is_ok());
        assert_eq!(p.check_write("0x2", &later).unwrap_err().code, ErrorCode::ConditionNotMet);
    }
}
