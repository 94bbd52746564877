//! `openbatch submit`: one task per argument (a range of integers or the
//! lines of a file) from a command template, added in collections of up to
//! 100 tasks, several in flight.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use http::Method;
use serde_json::json;

use crate::client::{segment, transient, Client, Error};
use crate::term::{Progress, Term};

/// At most this many tasks per addtaskcollection (the service's limit).
pub const MAX_PER_COLLECTION: usize = 100;
/// And at most about this many bytes of body (the service's limit is 1 MB).
pub const MAX_COLLECTION_BYTES: usize = 1_000_000;

/// A task to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub id: String,
    pub command: String,
}

/// Parses `A..B` (or `A..=B`): the integers from A to B, both included.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("'{s}' is not a range: give FIRST..LAST, e.g. 1..100 (both included)");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let b = b.strip_prefix('=').unwrap_or(b);
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if b < a {
        return Err(format!("the range {s} is empty: its last number is below its first"));
    }
    Ok((a, b))
}

/// The command for one argument: every `{}` in the template becomes the
/// argument; a template without `{}` gets it appended after a space (as
/// xargs does).
pub fn expand(template: &str, arg: &str) -> String {
    if template.contains("{}") {
        template.replace("{}", arg)
    } else {
        format!("{template} {arg}")
    }
}

/// Checks an id prefix: task ids may hold letters, digits, `-` and `_`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err(format!("the task id prefix '{prefix}' may hold only letters, digits, '-' and '_'"))
    }
}

/// The tasks of a range: ids are the prefix and the number, zero-padded to
/// the width of the last one (so that they sort in order).
pub fn range_tasks(template: &str, prefix: &str, first: u64, last: u64) -> Vec<TaskSpec> {
    let width = last.to_string().len();
    (first..=last).map(|n| TaskSpec { id: format!("{prefix}{n:0width$}"), command: expand(template, &n.to_string()) }).collect()
}

/// The tasks of a file of arguments: one per line that is not empty (a
/// trailing `\r` is removed); ids are the prefix and the argument's number
/// (from 1), zero-padded.
pub fn file_tasks(template: &str, prefix: &str, text: &str) -> Vec<TaskSpec> {
    let args: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.trim().is_empty()).collect();
    let width = args.len().to_string().len();
    args.iter().enumerate().map(|(i, a)| TaskSpec { id: format!("{prefix}{:0width$}", i + 1), command: expand(template, a) }).collect()
}

/// Splits the tasks into collections of at most [`MAX_PER_COLLECTION`]
/// tasks and about [`MAX_COLLECTION_BYTES`] of JSON each.
pub fn collections(tasks: &[TaskSpec]) -> Vec<&[TaskSpec]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, t) in tasks.iter().enumerate() {
        // {"id":"…","commandLine":"…"}, with room for escapes.
        let size = 32 + t.id.len() + t.command.len() + t.command.bytes().filter(|b| matches!(b, b'"' | b'\\') || *b < 0x20).count() * 5;
        if i > start && (i - start == MAX_PER_COLLECTION || bytes + size > MAX_COLLECTION_BYTES) {
            out.push(&tasks[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < tasks.len() {
        out.push(&tasks[start..]);
    }
    out
}

/// A job id for a submit that names none: `submit-<UTC time>-<4 hex digits>`.
pub fn new_job_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("submit-{}-{:04x}", chrono::Utc::now().format("%Y%m%d-%H%M%S"), h.finish() & 0xffff)
}

/// Makes sure the job exists: created on `pool` if it does not.
/// Returns whether it was created.
pub async fn ensure_job(client: &Client, job: &str, pool: Option<&str>) -> Result<bool, Error> {
    match client.get_json(&client.target(&format!("/jobs/{}", segment(job)), &[("$select", "id,state")])).await {
        Ok(v) => {
            let state = v["state"].as_str().unwrap_or("");
            if !matches!(state, "active" | "enabling") {
                return Err(Error::Config(format!("the job {job} is {state}: it takes no new tasks")));
            }
            return Ok(false);
        }
        Err(Error::Batch(e)) if e.code == "JobNotFound" => {}
        Err(e) => return Err(e),
    }
    let pool = pool.ok_or_else(|| Error::Config(format!("the job {job} does not exist: give --pool POOL to create it")))?;
    let body = json!({"id": job, "poolInfo": {"poolId": pool}});
    client.send(Method::POST, &client.target("/jobs", &[]), Some(&body), &[]).await?;
    Ok(true)
}

/// A task the service did not take.
#[derive(Debug, Clone)]
pub struct Refused {
    pub id: String,
    pub reason: String,
}

/// Adds one collection, retrying what may pass; a repeated request counts
/// `TaskExists` as added (the first may have landed without its answer).
async fn add_collection(client: &Client, target: &str, tasks: &[TaskSpec]) -> Result<(usize, Vec<Refused>), Error> {
    let mut pending: Vec<&TaskSpec> = tasks.iter().collect();
    let mut added = 0;
    let mut refused = Vec::new();
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=4 {
        let body = json!({"value": pending.iter().map(|t| json!({"id": t.id, "commandLine": t.command})).collect::<Vec<_>>()});
        let reply = match client.send(Method::POST, target, Some(&body), &[]).await {
            Ok(r) => r.json().await?,
            Err(e) if attempt < 4 && transient(&e) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut again = Vec::new();
        for r in reply["value"].as_array().into_iter().flatten() {
            let id = r["taskId"].as_str().unwrap_or("");
            let Some(task) = pending.iter().find(|t| t.id == id).copied() else { continue };
            let code = r["error"]["code"].as_str().unwrap_or("");
            match r["status"].as_str().unwrap_or("") {
                "success" => added += 1,
                _ if code == "TaskExists" && attempt > 1 => added += 1,
                "serverError" if attempt < 4 => again.push(task),
                _ => {
                    let message = r["error"]["message"]["value"].as_str().unwrap_or("").lines().next().unwrap_or("").to_string();
                    refused.push(Refused { id: id.to_string(), reason: format!("{code}: {message}") });
                }
            }
        }
        if again.is_empty() {
            return Ok((added, refused));
        }
        pending = again;
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    Ok((added, refused))
}

/// What [`add_tasks`] did.
pub struct Added {
    pub added: usize,
    pub refused: Vec<Refused>,
    pub took: Duration,
}

/// Adds the tasks, `parallel` collections in flight; `note` always says
/// how far it got (for an interrupted run).
pub async fn add_tasks(
    client: &Client,
    job: &str,
    tasks: &[TaskSpec],
    parallel: usize,
    term: Term,
    note: &Arc<Mutex<String>>,
) -> Result<Added, Error> {
    let started = Instant::now();
    let target = client.target(&format!("/jobs/{}/addtaskcollection", segment(job)), &[]);
    let total = tasks.len();
    let mut progress = Progress::new(term, &format!("adding to {job}"));
    progress.set(0, total as u64, "");
    let mut done = 0;
    let mut refused = Vec::new();
    let mut results = stream::iter(collections(tasks)).map(|c| add_collection(client, &target, c)).buffer_unordered(parallel.max(1));
    while let Some(r) = results.next().await {
        let (n, mut bad) = match r {
            Ok(x) => x,
            Err(e) => {
                progress.abandon();
                return Err(Error::Other(format!("{e} (after {done} of {total} tasks were added to job {job})")));
            }
        };
        done += n;
        refused.append(&mut bad);
        progress.set(done as u64, total as u64, "");
        if let Ok(mut n) = note.lock() {
            *n = format!("{done} of {total} tasks were added to job {job}");
        }
    }
    progress.finish(done as u64, total as u64, "added");
    Ok(Added { added: done, refused, took: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_checked() {
        assert_eq!(parse_range("1..10000"), Ok((1, 10000)));
        assert_eq!(parse_range("0..=9"), Ok((0, 9)));
        assert_eq!(parse_range(" 5 .. 5 "), Ok((5, 5)));
        assert!(parse_range("10..1").unwrap_err().contains("empty"));
        for bad in ["1-10", "a..b", "..5", "1..", "-1..3", ""] {
            assert!(parse_range(bad).unwrap_err().contains("not a range"), "{bad}");
        }
    }

    #[test]
    fn templates_substitute_every_placeholder_or_append() {
        assert_eq!(expand("echo {} and {}", "7"), "echo 7 and 7");
        assert_eq!(expand("/bin/sh -c 'exit {}'", "3"), "/bin/sh -c 'exit 3'");
        assert_eq!(expand("process", "a b.txt"), "process a b.txt");
    }

    #[test]
    fn ids_are_padded_to_sort_in_order() {
        let t = range_tasks("echo {}", "task-", 8, 12);
        let ids: Vec<&str> = t.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["task-08", "task-09", "task-10", "task-11", "task-12"]);
        assert_eq!(t[0].command, "echo 8");
        let t = file_tasks("wc -l {}", "f", "a.txt\r\n\n  \nb c.txt\n");
        assert_eq!(
            t,
            [TaskSpec { id: "f1".into(), command: "wc -l a.txt".into() }, TaskSpec { id: "f2".into(), command: "wc -l b c.txt".into() }]
        );
        assert!(check_prefix("run_1-").is_ok());
        assert!(check_prefix("a/b").is_err());
    }

    #[test]
    fn collections_hold_100_tasks_and_stay_under_the_size_limit() {
        let t = range_tasks("echo {}", "t", 1, 250);
        let c = collections(&t);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), [100, 100, 50]);
        assert_eq!(c[2][0].id, "t201");
        let long = "x".repeat(300_000);
        let t = range_tasks(&format!("echo {long} {{}}"), "t", 1, 7);
        let c = collections(&t);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), [3, 3, 1]);
        assert!(collections(&[]).is_empty());
        let id = new_job_id();
        assert!(id.starts_with("submit-") && id.len() == "submit-20260101-000000-abcd".len(), "{id}");
    }
}
