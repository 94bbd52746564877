//! The agent's own log files, kept in its node root for
//! `uploadbatchservicelogs`: `volatile/logs/agent.YYYY-MM-DD-HH.log`, one
//! per UTC hour (`tracing-appender`'s hourly rolling file), the newest
//! [`KEEP_FILES`] kept, each cut at [`MAX_FILE_BYTES`] (what a chatty hour
//! logs beyond that is dropped, with one line saying so), so a node's logs
//! never take more than about 200 MiB. The directory is root's (or the
//! agent user's) and `0700`: tasks cannot read or plant anything in it.
//! Besides these files the agent logs to stderr as before.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_appender::rolling::{RollingFileAppender, Rotation};

/// Hourly files kept (two days).
pub const KEEP_FILES: usize = 48;
/// The most one hour's file holds.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

const PREFIX: &str = "agent";
const SUFFIX: &str = "log";

/// The directory of a node root's agent logs.
pub fn dir(root: &Path) -> PathBuf {
    root.join("volatile").join("logs")
}

struct Inner {
    file: RollingFileAppender,
    /// The UTC hour (since the epoch) `written` counts.
    hour: u64,
    written: u64,
}

/// A writer of the agent's log files; clones share the files.
#[derive(Clone)]
pub struct LogFiles {
    inner: Arc<Mutex<Inner>>,
    cap: u64,
}

fn hour_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 3600).unwrap_or(0)
}

impl LogFiles {
    /// Opens (creating) the log directory of `root`.
    pub fn open(root: &Path) -> Result<LogFiles, String> {
        Self::with_cap(root, MAX_FILE_BYTES)
    }

    fn with_cap(root: &Path, cap: u64) -> Result<LogFiles, String> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = dir(root);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let file = RollingFileAppender::builder()
            .rotation(Rotation::HOURLY)
            .filename_prefix(PREFIX)
            .filename_suffix(SUFFIX)
            .max_log_files(KEEP_FILES)
            .build(&dir)
            .map_err(|e| format!("cannot open the log files in {}: {e}", dir.display()))?;
        Ok(LogFiles { inner: Arc::new(Mutex::new(Inner { file, hour: hour_now(), written: 0 })), cap })
    }
}

impl Write for LogFiles {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let hour = hour_now();
        if hour != i.hour {
            i.hour = hour;
            i.written = 0;
        }
        if i.written >= self.cap {
            return Ok(buf.len()); // dropped: this hour's file is full
        }
        i.written += buf.len() as u64;
        if i.written >= self.cap {
            i.file.write_all(buf)?;
            i.file.write_all(b"(the log file of this hour reached its size limit; later lines of the hour are not kept)\n")?;
            return Ok(buf.len());
        }
        i.file.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).file.flush()
    }
}

/// The log files of `root` holding lines of the window `[start_ms, end_ms)`
/// (each file covers its hour; the service uploads whole files too), by name.
pub fn covering(root: &Path, start_ms: i64, end_ms: i64) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir(root)) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| hour_of(n).is_some_and(|h| h < end_ms && h + 3_600_000 > start_ms))
        .collect();
    names.sort();
    names
}

/// The start (Unix milliseconds) of the hour a file name says it covers:
/// `agent.YYYY-MM-DD-HH.log`.
fn hour_of(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix("agent.")?.strip_suffix(".log")?;
    let p: Vec<&str> = stamp.split('-').collect();
    let [y, m, d, h] = p.as_slice() else { return None };
    let (y, m, d, h): (i64, i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?, h.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(0..24).contains(&h) {
        return None;
    }
    Some((days_from_civil(y, m, d) * 24 + h) * 3_600_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_their_hour() {
        assert_eq!(hour_of("agent.1970-01-01-00.log"), Some(0));
        assert_eq!(hour_of("agent.1970-01-02-01.log"), Some(25 * 3_600_000));
        // 2024-02-29T13:00:00Z
        assert_eq!(hour_of("agent.2024-02-29-13.log"), Some(1_709_211_600_000));
        for bad in
            ["agent.log", "agent.2024-13-01-00.log", "agent.2024-01-01-24.log", "other.2024-01-01-00.log", "agent.2024-01-01-00.log.tmp"]
        {
            assert_eq!(hour_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn files_are_written_capped_and_selected_by_window() {
        let root = tempfile::tempdir().unwrap();
        let mut w = LogFiles::with_cap(root.path(), 100).unwrap();
        for i in 0..20 {
            writeln!(w, "line {i}").unwrap();
        }
        w.flush().unwrap();
        let now = crate::exec::now_ms();
        let names = covering(root.path(), now - 1000, now + 1000);
        assert_eq!(names.len(), 1, "{names:?}");
        let text = std::fs::read_to_string(dir(root.path()).join(&names[0])).unwrap();
        assert!(text.starts_with("line 0\n"), "{text}");
        assert!(text.contains("size limit") && !text.contains("line 19"), "{text}");
        assert!(text.len() < 220, "{}", text.len());
        // Hours before the window, or after it, are left out.
        std::fs::write(dir(root.path()).join("agent.2001-01-01-00.log"), "old\n").unwrap();
        assert_eq!(covering(root.path(), now - 1000, now + 1000), names);
        let y2001 = hour_of("agent.2001-01-01-00.log").unwrap();
        assert_eq!(covering(root.path(), y2001 + 3_599_999, y2001 + 3_600_000), vec!["agent.2001-01-01-00.log".to_string()]);
        assert!(covering(root.path(), y2001 + 3_600_000, y2001 + 7_200_000).is_empty());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir(root.path())).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
