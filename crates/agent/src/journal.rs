//! Outcomes kept until the server has them.
//!
//! An attempt's outcome is appended here before it is sent, and stays until
//! the server acknowledges it (`ToAgent::Ack`, sent once the outcome is
//! committed). Every `Hello` carries what is still unacknowledged, so an
//! outcome the server received but lost (it was killed before the write
//! committed) is applied when the agent reconnects, instead of the server
//! requeueing an attempt that already ran. The file lives in the node root
//! (`volatile/outcomes.log`) so that a restarted agent sends the outcomes its
//! predecessor could not deliver, too.
//!
//! The format is one JSON record per line: `{"o": outcome}` or `{"a": [ids]}`
//! (acknowledged). A torn last line (the agent killed mid-write) is ignored.
//! The file is rewritten with only the unacknowledged outcomes once it has
//! grown past [`COMPACT_AT`]. Appends are not fsync'd: they survive the
//! agent's death, not the machine's, and a machine that loses its memory has
//! lost its running attempts anyway (they are requeued).

use proto::Finished;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// The log is compacted when it grows past this many bytes.
pub const COMPACT_AT: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
enum Record {
    #[serde(rename = "o")]
    Outcome(Box<Finished>),
    #[serde(rename = "a")]
    Acked(Vec<u64>),
}

struct Inner {
    file: Option<File>,
    /// Bytes in the file.
    size: u64,
    /// Outcomes not yet acknowledged, by attempt.
    unacked: BTreeMap<u64, Finished>,
}

pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl Journal {
    /// Opens the journal in `dir`, with what an earlier agent left unacknowledged.
    pub fn open(dir: &std::path::Path) -> Journal {
        let path = dir.join("outcomes.log");
        let mut unacked = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                match serde_json::from_str::<Record>(line) {
                    Ok(Record::Outcome(f)) => {
                        unacked.insert(f.outcome.attempt, *f);
                    }
                    Ok(Record::Acked(ids)) => {
                        for a in ids {
                            unacked.remove(&a);
                        }
                    }
                    Err(_) => {} // a torn write
                }
            }
        }
        let j = Journal { path, inner: Mutex::new(Inner { file: None, size: 0, unacked }) };
        j.compact(&mut j.inner.lock().unwrap_or_else(|p| p.into_inner()));
        j
    }

    /// Rewrites the file with only the unacknowledged outcomes.
    fn compact(&self, inner: &mut Inner) {
        let tmp = self.path.with_extension("log.new");
        let mut text = String::new();
        for f in inner.unacked.values() {
            if let Ok(line) = serde_json::to_string(&Record::Outcome(Box::new(f.clone()))) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = &written {
            tracing::warn!(error = %e, "cannot rewrite the outcome journal");
        }
        inner.size = text.len() as u64;
        inner.file = std::fs::OpenOptions::new().append(true).create(true).open(&self.path).ok();
    }

    fn append(&self, inner: &mut Inner, r: &Record) {
        let Ok(mut line) = serde_json::to_vec(r) else { return };
        line.push(b'\n');
        if let Some(f) = inner.file.as_mut() {
            // One write: a record is whole or torn, never interleaved.
            if f.write_all(&line).is_ok() {
                inner.size += line.len() as u64;
            }
        }
    }

    /// Keeps an outcome until it is acknowledged.
    pub fn record(&self, f: &Finished) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.append(&mut inner, &Record::Outcome(Box::new(f.clone())));
        inner.unacked.insert(f.outcome.attempt, f.clone());
    }

    /// The server has these outcomes.
    pub fn ack(&self, attempts: &[u64]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let known: Vec<u64> = attempts.iter().copied().filter(|a| inner.unacked.remove(a).is_some()).collect();
        if known.is_empty() {
            return;
        }
        if inner.size >= COMPACT_AT {
            self.compact(&mut inner);
        } else {
            self.append(&mut inner, &Record::Acked(known));
        }
    }

    /// Outcomes not yet acknowledged, oldest attempt first.
    pub fn unacked(&self) -> Vec<Finished> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).unacked.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(attempt: u64) -> Finished {
        Finished {
            outcome: proto::TaskOutcome {
                attempt,
                exit_code: Some(0),
                failure_code: None,
                failure_message: None,
                failure_category: None,
                pre_processing_error: false,
                file_upload_error: false,
                container_id: None,
                start_time_ms: 1,
                end_time_ms: 2,
                wall_us: None,
                user_cpu_us: 0,
                kernel_cpu_us: 0,
                read_bytes: 0,
                write_bytes: 0,
                read_ops: 0,
                write_ops: 0,
            },
            task: Some(proto::AttemptOf { job_id: "j".into(), task_id: format!("t{attempt}"), slots: 1 }),
        }
    }

    #[test]
    fn unacknowledged_outcomes_survive_a_restart_and_acknowledged_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        for a in 1..=4 {
            j.record(&finished(a));
        }
        j.ack(&[2, 3]);
        drop(j);
        let j = Journal::open(dir.path());
        let left: Vec<u64> = j.unacked().iter().map(|f| f.outcome.attempt).collect();
        assert_eq!(left, vec![1, 4]);
        assert_eq!(j.unacked()[0].task.as_ref().unwrap().task_id, "t1");
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        j.record(&finished(7));
        drop(j);
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("outcomes.log")).unwrap();
        f.write_all(b"{\"o\":{\"outcome\":{\"attem").unwrap();
        let j = Journal::open(dir.path());
        assert_eq!(j.unacked().len(), 1);
        assert_eq!(j.unacked()[0].outcome.attempt, 7);
    }

    #[test]
    fn the_log_is_compacted_once_large() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        let one = serde_json::to_vec(&Record::Outcome(Box::new(finished(1)))).unwrap().len() as u64;
        // Twice the threshold's worth of outcomes, each acknowledged.
        let n = 2 * COMPACT_AT / one + 1;
        for a in 1..=n {
            j.record(&finished(a));
            j.ack(&[a]);
        }
        let size = std::fs::metadata(dir.path().join("outcomes.log")).unwrap().len();
        assert!(size < COMPACT_AT, "rewritten once past the threshold ({size} bytes)");
        j.record(&finished(n + 1));
        drop(j);
        let left = Journal::open(dir.path()).unacked();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].outcome.attempt, n + 1);
    }
}
