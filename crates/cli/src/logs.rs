//! `openbatch task logs`: a task's stdout.txt or stderr.txt, and with
//! `--follow` what is appended to it until the task completes.

use std::io::Write;
use std::time::Duration;

use http::Method;

use crate::client::{file_path, segment, Client, Error};

/// Copies bytes to stdout; false when stdout is gone (a closed pipe).
fn emit(bytes: &[u8]) -> Result<bool, Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::Other(format!("cannot write to stdout: {e}"))),
    }
}

pub async fn logs(client: &Client, job: &str, task: &str, file: &str, follow: bool, interval: Duration) -> Result<(), Error> {
    let file_target = client.target(&format!("/jobs/{}/tasks/{}/files/{}", segment(job), segment(task), file_path(file)), &[]);
    if !follow {
        let mut resp = client.send_retrying(Method::GET, &file_target, None).await?;
        while let Some(chunk) = resp.chunk().await? {
            if !emit(&chunk)? {
                break;
            }
        }
        return Ok(());
    }
    let task_target = client.target(&format!("/jobs/{}/tasks/{}", segment(job), segment(task)), &[("$select", "id,state")]);
    let mut offset: u64 = 0;
    loop {
        // The state first: once it reads `completed`, the read that follows
        // gets everything the task wrote.
        let state = client.get_json(&task_target).await?;
        let done = state["state"].as_str() == Some("completed");
        match read_from(client, &file_target, offset).await {
            Ok(Some((start, bytes))) => {
                offset = start + bytes.len() as u64;
                if !emit(&bytes)? {
                    return Ok(());
                }
            }
            Ok(None) => {}
            // Nothing to read yet: the task has not started, or not made the file.
            Err(Error::Batch(e)) if !done && matches!(e.code.as_str(), "TaskFilesUnavailable" | "FileNotFound") => {}
            Err(Error::Batch(e)) if done && e.code == "TaskFilesUnavailable" => {
                // Completed without running (e.g. terminated while active): nothing to show.
                eprintln!("openbatch: task {task} completed without output: {}", Error::Batch(e));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if done {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

/// What the file holds from `offset` on, and where that starts: None when
/// nothing is new. A file
/// that became shorter than `offset` (a retried task starts a new one) is
/// read again from its start, after a note on stderr.
async fn read_from(client: &Client, target: &str, offset: u64) -> Result<Option<(u64, Vec<u8>)>, Error> {
    let range = format!("bytes={offset}-");
    match client.send(Method::GET, target, None, &[("ocp-range", range)]).await {
        Ok(r) => {
            let b = r.bytes().await?;
            Ok((!b.is_empty()).then_some((offset, b)))
        }
        // Past the end: nothing new, unless the file was replaced by a shorter one.
        Err(Error::Batch(e)) if e.status == 416 => {
            let head = client.send(Method::HEAD, target, None, &[]).await?;
            let size = head.headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            match size {
                Some(s) if s < offset => {
                    eprintln!("openbatch: the file started again (the task was retried); showing it from its start");
                    let b = client.send(Method::GET, target, None, &[]).await?.bytes().await?;
                    Ok(Some((0, b)))
                }
                _ => Ok(None),
            }
        }
        Err(e) => Err(e),
    }
}
