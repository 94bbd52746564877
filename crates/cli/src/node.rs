//! `openbatch node preempt` and `openbatch node recover`: openbatch's own
//! operations on a low-priority node (`POST
//! /openbatch/pools/{pool}/nodes/{node}/preempt` and `.../recover`), so that
//! people rehearse what a spot VM's preemption does to their jobs.

use crate::client::{segment, Client, Error};
use http::Method;
use serde_json::json;
use std::time::Duration;

/// The request path of openbatch's own node action `action`.
fn path(pool: &str, node: &str, action: &str) -> String {
    format!("/openbatch/pools/{}/nodes/{}/{action}", segment(pool), segment(node))
}

/// A whole number of seconds as an ISO 8601 duration (`PT90S`).
pub fn iso_seconds(d: Duration) -> String {
    format!("PT{}S", d.as_secs())
}

/// Preempts a low-priority node; it comes back by itself after
/// `recover_after` when given, else on `recover`.
pub async fn preempt(client: &Client, pool: &str, node: &str, recover_after: Option<Duration>) -> Result<(), Error> {
    let body = match recover_after {
        Some(d) => json!({ "recoverAfter": iso_seconds(d) }),
        None => json!({}),
    };
    let target = client.target(&path(pool, node, "preempt"), &[]);
    client.send(Method::POST, &target, Some(&body), &[]).await?;
    Ok(())
}

/// Brings a preempted node back (it is reimaged, then idle).
pub async fn recover(client: &Client, pool: &str, node: &str) -> Result<(), Error> {
    let target = client.target(&path(pool, node, "recover"), &[]);
    client.send(Method::POST, &target, Some(&json!({})), &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_ids_and_durations_are_iso() {
        assert_eq!(path("p 1", "n/2", "preempt"), "/openbatch/pools/p%201/nodes/n%2F2/preempt");
        assert_eq!(iso_seconds(Duration::from_secs(90)), "PT90S");
    }
}
