//! The control plane's background loops.

use crate::{lock, Cluster, HEARTBEAT, NODE_LOST_AFTER};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Background loops: scheduling on every wake-up, local node reconciliation,
/// and liveness checks.
pub fn start(cluster: Arc<Cluster>, account_url: Arc<Mutex<Option<String>>>) {
    if let Some(rx) = lock(&cluster.started_rx).take() {
        tokio::spawn(cluster.clone().debounce_started(rx));
    }
    let c = cluster.clone();
    let url = account_url.clone();
    tokio::spawn(async move {
        if let Err(e) = c.expect_nodes().await {
            tracing::warn!(error = %e, "cannot read which nodes ran tasks before the restart");
        }
        loop {
            let base = lock(&url).clone().unwrap_or_default();
            match c.schedule(&base).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduling round failed"),
            }
            // Woken by free slots and new tasks (`wake`) and by commits that
            // made tasks ready (dependencies met, retries, requeues).
            tokio::select! {
                _ = c.wake.notified() => {}
                _ = c.store.ready.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    let c = cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = c.adopt_local_nodes().await {
            tracing::warn!(error = %e, "restarting the local nodes failed");
        }
        loop {
            if let Err(e) = c.reconcile_local().await {
                tracing::warn!(error = %e, "node reconciliation failed");
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), c.reconcile.notified()).await;
        }
    });
    let c = cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(NODE_LOST_AFTER).await;
        if let Err(e) = c.requeue_orphans().await {
            tracing::warn!(error = %e, "requeueing the tasks of lost nodes failed");
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            cluster.check_liveness().await;
            if let Err(e) = cluster.clean_expired().await {
                tracing::warn!(error = %e, "cleaning expired task directories failed");
            }
        }
    });
}
