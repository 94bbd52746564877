//! The control plane's background loops, under one supervisor: each loop is
//! spawned with a [`Stop`] it watches, and [`Supervisor::shutdown`] signals
//! them all, then waits for each in the reverse of the order they started
//! (see [`start`]), aborting one that does not stop within the grace period.

use crate::cluster::Cluster;
use crate::config::{HEARTBEAT, NODE_LOST_AFTER};
use crate::sync::lock;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a supervised loop watches to know it must end.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once shutdown has begun (never, if the supervisor is dropped
    /// without a shutdown: dropping it does not stop its loops).
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// Owns the background loops of a running server.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    loops: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor { stop: watch::channel(false).0, loops: Mutex::new(Vec::new()) }
    }
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor::default())
    }

    /// Starts a loop named `name`; it gets a [`Stop`] and must return soon
    /// after it fires.
    pub fn spawn<F, Fut>(&self, name: &'static str, f: F)
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(f(Stop(self.stop.subscribe())));
        lock(&self.loops).push((name, handle));
    }

    /// The names of the loops still running.
    pub fn running(&self) -> Vec<&'static str> {
        lock(&self.loops).iter().filter(|(_, h)| !h.is_finished()).map(|(n, _)| *n).collect()
    }

    /// Stops every loop: signals them all, then waits for each in the
    /// reverse of the order they started, up to `grace` in all; a loop
    /// still running then is aborted (and named in the log).
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.send_replace(true);
        let deadline = Instant::now() + grace;
        let loops: Vec<(&'static str, JoinHandle<()>)> = lock(&self.loops).drain(..).rev().collect();
        for (name, mut handle) in loops {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, &mut handle).await.is_err() {
                tracing::warn!(task = name, "a background loop did not stop in time; aborting it");
                handle.abort();
                let _ = handle.await;
            }
        }
    }
}

/// Starts the control plane's loops under `sup`, in this order (so they stop
/// in the reverse one): the writer of `Started` reports, the scheduler, the
/// local node provider's reconciliation, autoscale (samples and
/// evaluations), the requeue of orphaned assignments after a restart, and
/// liveness with retention.
pub fn start(sup: &Supervisor, cluster: Arc<Cluster>, account_url: Arc<Mutex<Option<String>>>) {
    let c = cluster.clone();
    sup.spawn("started-reports", move |stop| c.write_started_reports(stop));
    let (c, url) = (cluster.clone(), account_url.clone());
    sup.spawn("scheduler", move |mut stop| async move {
        if let Err(e) = c.expect_nodes().await {
            tracing::warn!(error = %e, "cannot read which nodes ran tasks before the restart");
        }
        while !stop.is_stopped() {
            let base = lock(&url).clone().unwrap_or_default();
            match c.schedule(&base, Instant::now()).await {
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
                _ = stop.stopped() => break,
            }
        }
    });
    let c = cluster.clone();
    sup.spawn("local-nodes", move |mut stop| async move {
        if let Err(e) = c.recover_nodes().await {
            tracing::warn!(error = %e, "restarting the local nodes failed");
        }
        while !stop.is_stopped() {
            if let Err(e) = c.reconcile_pools().await {
                tracing::warn!(error = %e, "node reconciliation failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = c.reconcile.notified() => {}
                _ = stop.stopped() => break,
            }
        }
    });
    let c = cluster.clone();
    sup.spawn("autoscale", move |mut stop| async move {
        // Samples every period; each autoscale pool's formula when due, and
        // at once when its autoscale is enabled or changed (`autoscale`).
        let period = c.config.autoscale_sample_interval;
        let mut next_sample = chrono::Utc::now();
        while !stop.is_stopped() {
            let now = chrono::Utc::now();
            if now >= next_sample {
                if let Err(e) = c.sample_pools(now).await {
                    tracing::warn!(error = %e, "taking the pools' autoscale samples failed");
                }
                next_sample = now + period;
            }
            if let Err(e) = c.autoscale_due(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "evaluating the pools' autoscale formulas failed");
            }
            let wake = c.next_autoscale().map_or(next_sample, |t| t.min(next_sample));
            let wait = (wake - chrono::Utc::now()).to_std().unwrap_or_default().max(Duration::from_millis(20));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = c.autoscale.notified() => {}
                _ = stop.stopped() => break,
            }
        }
    });
    let c = cluster.clone();
    sup.spawn("orphans", move |mut stop| async move {
        tokio::select! {
            _ = tokio::time::sleep(NODE_LOST_AFTER) => {}
            _ = stop.stopped() => return,
        }
        if let Err(e) = c.requeue_orphans().await {
            tracing::warn!(error = %e, "requeueing the tasks of lost nodes failed");
        }
    });
    let c = cluster.clone();
    sup.spawn("usage", move |mut stop| async move {
        // The nodes' core-time into the pool usage metrics; once more at
        // shutdown, so a stop loses none of it.
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(crate::usage::USAGE_RECORD_EVERY) => false,
                _ = stop.stopped() => true,
            };
            if let Err(e) = c.record_usage(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "recording the pools' usage failed");
            }
            if stopping {
                break;
            }
        }
    });
    sup.spawn("liveness", move |mut stop| async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = stop.stopped() => break,
            }
            cluster.check_liveness(Instant::now()).await;
            if let Err(e) = cluster.clean_expired().await {
                tracing::warn!(error = %e, "cleaning expired task directories failed");
            }
            cluster.leave_after_retention(wire::time::Timestamp::now()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping the supervisor without a shutdown leaves its loops running.
    #[tokio::test]
    async fn a_dropped_supervisor_does_not_stop_its_loops() {
        let sup = Supervisor::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        sup.spawn("ticker", move |mut stop| async move {
            loop {
                tokio::select! {
                    _ = stop.stopped() => return,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => { let _ = tx.send(()); }
                }
            }
        });
        drop(sup);
        for _ in 0..3 {
            assert!(tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.ok().flatten().is_some(), "the loop still ticks");
        }
    }

    /// Shutdown ends loops that watch their `Stop` and aborts one that does not.
    #[tokio::test]
    async fn shutdown_stops_every_loop_and_aborts_a_stuck_one() {
        let sup = Supervisor::new();
        let stopped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for name in ["a", "b"] {
            let s = stopped.clone();
            sup.spawn(name, move |mut stop| async move {
                stop.stopped().await;
                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        sup.spawn("stuck", |_stop| async move { std::future::pending::<()>().await });
        assert_eq!(sup.running().len(), 3);
        let t = Instant::now();
        sup.shutdown(Duration::from_millis(200)).await;
        assert_eq!(stopped.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(sup.running().is_empty());
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
