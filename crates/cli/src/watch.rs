//! `openbatch job watch`: task counts until every task of the job has
//! completed, then what failed.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use http::Method;
use serde_json::Value;

use crate::client::{file_path, segment, Client, Error};
use crate::term::{self, Progress, Term};

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub active: u64,
    pub running: u64,
    pub completed: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl Counts {
    fn from_json(v: &Value) -> Result<Counts, Error> {
        let c = &v["taskCounts"];
        let n = |name: &str| c[name].as_u64().ok_or_else(|| Error::Other(format!("the task counts have no '{name}': {v}")));
        Ok(Counts {
            active: n("active")?,
            running: n("running")?,
            completed: n("completed")?,
            succeeded: n("succeeded")?,
            failed: n("failed")?,
        })
    }

    pub fn total(&self) -> u64 {
        self.active + self.running + self.completed
    }

    /// Every task has completed (and there is at least one).
    pub fn done(&self) -> bool {
        self.total() > 0 && self.active == 0 && self.running == 0
    }

    fn message(&self) -> String {
        format!("active {} · running {} · succeeded {} · failed {}", self.active, self.running, self.succeeded, self.failed)
    }
}

pub struct WatchOptions {
    /// Between two task-count requests.
    pub interval: Duration,
    /// How many failed tasks the summary shows (with their stderr).
    pub show_failed: usize,
    /// How many lines of each failed task's stderr.
    pub tail_lines: usize,
}

/// Polls the job's task counts until all its tasks have completed (or the
/// job has), then prints the summary.
pub async fn watch(client: &Client, job: &str, opts: &WatchOptions, term: Term) -> Result<Summary, Error> {
    let started = Instant::now();
    let counts_target = client.target(&format!("/jobs/{}/taskcounts", segment(job)), &[]);
    let job_target = client.target(&format!("/jobs/{}", segment(job)), &[("$select", "id,state")]);
    // The job must exist (a clear error otherwise, before any bar).
    client.get_json(&job_target).await?;
    let mut progress = Progress::new(term, &format!("job {job}"));
    let counts = loop {
        let counts = match client.get_json(&counts_target).await.and_then(|v| Counts::from_json(&v)) {
            Ok(c) => c,
            Err(e) => {
                progress.abandon();
                return Err(e);
            }
        };
        if counts.done() {
            break counts;
        }
        if counts.total() == 0 {
            // No tasks (yet): the watch also ends when the job itself has.
            let state = client.get_json(&job_target).await?;
            if state["state"].as_str().is_some_and(|s| s == "completed") {
                break counts;
            }
            progress.set(0, 0, "no tasks yet");
        } else {
            progress.set(counts.completed, counts.total(), &counts.message());
        }
        tokio::time::sleep(opts.interval).await;
    };
    progress.finish(counts.completed, counts.total(), &counts.message());
    drop(progress);
    let summary = Summary { total: counts.total(), succeeded: counts.succeeded, failed: counts.failed };
    print_summary(client, job, &summary, started.elapsed(), opts, term).await?;
    Ok(summary)
}

/// A failed task, as the summary shows it.
#[derive(Debug)]
struct Failed {
    id: String,
    exit_code: Option<i64>,
    failure: String,
}

async fn print_summary(client: &Client, job: &str, s: &Summary, took: Duration, opts: &WatchOptions, term: Term) -> Result<(), Error> {
    let head =
        format!("job {job}: {} tasks completed in {:.1} s: {} succeeded, {} failed", s.total, took.as_secs_f64(), s.succeeded, s.failed);
    if s.failed == 0 {
        println!("{}", console::style(head).green());
        return Ok(());
    }
    println!("{}", console::style(head).red().bold());
    let failed = failed_tasks(client, job, opts.show_failed).await?;
    let tails: Vec<(String, String)> = stream::iter(failed.iter().map(|f| f.id.clone()))
        .map(|id| async move {
            let tail = stderr_tail(client, job, &id, opts.tail_lines).await;
            (id, tail)
        })
        .buffered(8)
        .collect()
        .await;
    let mut table = term::table(term, &["task", "exit code", "failure"]);
    for f in &failed {
        table.add_row(vec![f.id.clone(), f.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()), f.failure.clone()]);
    }
    println!("{table}");
    if s.failed > failed.len() as u64 {
        println!("… and {} more failed tasks (list them: $filter=executionInfo/result eq 'failure')", s.failed - failed.len() as u64);
    }
    for (id, tail) in tails {
        println!("{}", console::style(format!("--- stderr of {id} (last {} lines) ---", opts.tail_lines)).bold());
        println!("{tail}");
    }
    Ok(())
}

/// The job's failed tasks, at most `limit`, in id order.
async fn failed_tasks(client: &Client, job: &str, limit: usize) -> Result<Vec<Failed>, Error> {
    let max = limit.clamp(1, 1000).to_string();
    let mut target = Some(client.target(
        &format!("/jobs/{}/tasks", segment(job)),
        &[("$filter", "executionInfo/result eq 'failure'"), ("$select", "id,executionInfo"), ("maxresults", &max)],
    ));
    let mut out = Vec::new();
    while let Some(t) = target.take() {
        let page = client.get_json(&t).await?;
        for task in page["value"].as_array().into_iter().flatten() {
            let info = &task["executionInfo"];
            let failure = &info["failureInfo"];
            let failure = match (failure["code"].as_str(), failure["message"].as_str()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => String::new(),
            };
            out.push(Failed { id: task["id"].as_str().unwrap_or("").to_string(), exit_code: info["exitCode"].as_i64(), failure });
            if out.len() >= limit {
                return Ok(out);
            }
        }
        if let Some(link) = page["odata.nextLink"].as_str() {
            target = Some(client.target_of_link(link)?);
        }
    }
    Ok(out)
}

/// The last `lines` lines of a task's stderr.txt (read from its last 8 KiB),
/// indented; or why it cannot be read.
async fn stderr_tail(client: &Client, job: &str, task: &str, lines: usize) -> String {
    const WINDOW: u64 = 8192;
    let path = format!("/jobs/{}/tasks/{}/files/{}", segment(job), segment(task), file_path("stderr.txt"));
    let target = client.target(&path, &[]);
    let size = match client.send_retrying(Method::HEAD, &target, None).await {
        Ok(r) => r.headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0),
        Err(e) => return format!("  (not available: {e})"),
    };
    if size == 0 {
        return "  (empty)".into();
    }
    let start = size.saturating_sub(WINDOW);
    let range = format!("bytes={start}-{}", size - 1);
    let bytes = match client.send(Method::GET, &target, None, &[("ocp-range", range)]).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(b) => tail_lines(&String::from_utf8_lossy(&b), lines, start > 0),
        Err(e) => format!("  (not available: {e})"),
    }
}

/// The last `n` lines of `text`, each indented; `cut` says the text is the
/// end of something longer: its first line may be partial, and is dropped
/// when another follows.
pub fn tail_lines(text: &str, n: usize, cut: bool) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    if cut && lines.len() > 1 {
        lines.remove(0);
    }
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_from_the_wire_and_done_only_when_nothing_is_left() {
        let v: Value =
            serde_json::from_str(r#"{"taskCounts":{"active":1,"running":2,"completed":3,"succeeded":2,"failed":1},"taskSlotCounts":{}}"#)
                .unwrap();
        let c = Counts::from_json(&v).unwrap();
        assert_eq!(c, Counts { active: 1, running: 2, completed: 3, succeeded: 2, failed: 1 });
        assert_eq!(c.total(), 6);
        assert!(!c.done());
        assert!(Counts { completed: 3, succeeded: 3, ..Default::default() }.done());
        assert!(!Counts::default().done(), "a job without tasks is not done by its counts");
        assert!(Counts::from_json(&serde_json::json!({"taskCounts": {}})).is_err());
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2, false), "  b\n  c");
        assert_eq!(tail_lines("a\nb\n", 5, false), "  a\n  b");
        // The first line of a cut window is partial: dropped.
        assert_eq!(tail_lines("tial\nb\nc", 5, true), "  b\n  c");
        assert_eq!(tail_lines("only", 5, true), "  only");
        assert_eq!(tail_lines("", 3, false), "");
    }
}
