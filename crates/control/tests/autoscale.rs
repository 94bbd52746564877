//! Autoscale on pools, with time as a parameter: samples are taken and
//! formulas evaluated at instants the test names (`sample_pools(now)`,
//! `autoscale_due(now)`), the targets a formula sets become the pool's and
//! the reconciliation follows them, and each run is recorded in the pool's
//! `autoScaleRun`, errors included.

mod support;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use support::*;
use wire::enums::{JobState, TaskState};

async fn world() -> (World, Arc<FakeProvider>) {
    let p = Arc::new(FakeProvider::default());
    (World::with_provider(p.clone()).await, p)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

async fn pool_doc(w: &World, id: &str) -> Map<String, Value> {
    serde_json::from_str(&w.store.get_pool(id).await.unwrap().doc).unwrap()
}

/// A pool with autoscale on: `formula`, evaluated every 5 seconds.
async fn autoscale_pool(w: &World, id: &str, formula: &str) {
    w.pool_with(id, 1, "spread", json!({"enableAutoScale": true, "autoScaleFormula": formula, "autoScaleEvaluationInterval": "PT5S"}))
        .await;
}

async fn set_job_state(w: &World, job: &str, state: JobState) {
    w.store
        .update_job(job, Default::default(), move |_, j, _| {
            j.state = state;
            Ok(())
        })
        .await
        .unwrap();
}

const ONE_PER_TEN: &str = "$tasks = max($PendingTasks.GetSample(1));\n$TargetDedicatedNodes = min(4, $tasks / 10);";

/// Pending tasks scale the pool up at the first evaluation, the next one is
/// due an interval later, and once the tasks are gone the pool scales down.
#[tokio::test]
async fn evaluations_set_the_targets_the_reconciliation_follows() {
    let (w, p) = world().await;
    autoscale_pool(&w, "p", ONE_PER_TEN).await;
    w.add_job("j", "p", |_| {}).await;
    let ids: Vec<String> = (0..35).map(|i| format!("t{i}")).collect();
    w.add_tasks("j", &ids.iter().map(String::as_str).collect::<Vec<_>>(), |_| {}).await;

    assert_eq!(w.cluster.sample_pools(t0()).await.unwrap(), 1);
    assert_eq!(w.cluster.autoscale_due(t0()).await.unwrap(), 1);
    let doc = pool_doc(&w, "p").await;
    assert_eq!(doc["targetDedicatedNodes"], 3, "35 pending tasks: 3.5 nodes, the fraction dropped");
    assert_eq!(doc["targetLowPriorityNodes"], 0);
    let run = &doc["autoScaleRun"];
    assert_eq!(run["timestamp"], "2026-12-07T12:00:00.0000000Z");
    assert_eq!(run["results"], "$TargetDedicatedNodes=3.5;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$tasks=35");
    assert!(run.get("error").is_none(), "{run}");
    assert_eq!(w.cluster.next_autoscale(), Some(t0() + Duration::seconds(5)));

    w.cluster.reconcile_pools().await.unwrap();
    let added = p.added.lock().unwrap().clone();
    assert_eq!(added.len(), 3, "the provider was asked for the formula's nodes");
    for id in &added {
        w.join("p", id).await;
    }

    // Not due before its interval has passed.
    assert_eq!(w.cluster.autoscale_due(t0() + Duration::seconds(4)).await.unwrap(), 0);

    // The tasks go (their job ends): the next evaluation scales to zero.
    set_job_state(&w, "j", JobState::Completed).await;
    assert_eq!(w.cluster.sample_pools(t0() + Duration::seconds(4)).await.unwrap(), 1);
    assert_eq!(w.cluster.autoscale_due(t0() + Duration::seconds(5)).await.unwrap(), 1);
    let doc = pool_doc(&w, "p").await;
    assert_eq!(doc["targetDedicatedNodes"], 0);
    assert_eq!(doc["autoScaleRun"]["timestamp"], "2026-12-07T12:00:05.0000000Z");
    w.cluster.reconcile_pools().await.unwrap();
    let mut removed = p.removed.lock().unwrap().clone();
    removed.sort();
    assert_eq!(removed, added, "every node left");
    assert!(w.cluster.pool_nodes("p", |n| n.id.clone()).is_empty());
}

/// A failed evaluation is recorded with its error and changes no target;
/// a pool with autoscale off is not evaluated.
#[tokio::test]
async fn evaluation_errors_are_recorded_and_change_nothing() {
    let (w, _p) = world().await;
    // A five-minute window wants 70 % of its ten samples: two are not enough.
    autoscale_pool(&w, "p", "$TargetDedicatedNodes = avg($PendingTasks.GetSample(TimeInterval_Minute * 5));").await;
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(2));
            Ok(())
        })
        .await
        .unwrap();
    w.cluster.sample_pools(t0() - Duration::seconds(30)).await.unwrap();
    w.cluster.sample_pools(t0()).await.unwrap();
    assert_eq!(w.cluster.autoscale_due(t0()).await.unwrap(), 1);
    let doc = pool_doc(&w, "p").await;
    assert_eq!(doc["targetDedicatedNodes"], 2, "a failed evaluation leaves the targets");
    let err = &doc["autoScaleRun"]["error"];
    assert_eq!(err["code"], "InsufficientSampleData", "{err}");
    let message = err["values"][0]["value"].as_str().unwrap();
    assert_eq!(err["values"][0]["name"], "Message");
    assert!(message.starts_with("Line 1, Col ") && message.contains("wanted 70%"), "{message}");

    // Autoscale off: not evaluated, however late.
    w.store
        .update_pool("p", Default::default(), |doc, _| {
            doc.insert("enableAutoScale".into(), json!(false));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(w.cluster.autoscale_due(t0() + Duration::hours(1)).await.unwrap(), 0);
    assert_eq!(w.cluster.next_autoscale(), None, "nothing is scheduled for a pool with autoscale off");
}

/// `$NodeDeallocationOption = taskcompletion`: a node running a task stays
/// (taking no new task) until the task ends, then leaves; the task is not
/// requeued.
#[tokio::test]
async fn taskcompletion_lets_running_tasks_finish_before_the_node_leaves() {
    let (w, p) = world().await;
    let formula = "$TargetDedicatedNodes = max($PendingTasks.GetSample(1)) > 0 ? 1 : 0; $NodeDeallocationOption = taskcompletion;";
    autoscale_pool(&w, "p", formula).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["a", "b"], |_| {}).await;
    w.cluster.sample_pools(t0()).await.unwrap();
    w.cluster.autoscale_due(t0()).await.unwrap();
    assert_eq!(pool_doc(&w, "p").await["targetDedicatedNodes"], 1);
    w.cluster.reconcile_pools().await.unwrap();
    let node = p.added.lock().unwrap()[0].clone();
    let mut agent = w.join("p", &node).await;
    w.round().await;
    let launch = agent.launches().into_iter().find(|l| l.task_id == "a").expect("a runs");
    agent.started(&w, launch.attempt);
    w.settle().await;

    // "b" is removed and "a" runs: one pending task keeps the node; then
    // the job is disabled (no pending task): the target drops to 0.
    w.store.delete_task("j", "b", Default::default(), |_, _| Ok(())).await.unwrap();
    set_job_state(&w, "j", JobState::Disabled).await;
    w.cluster.sample_pools(t0() + Duration::seconds(5)).await.unwrap();
    w.cluster.autoscale_due(t0() + Duration::seconds(5)).await.unwrap();
    let doc = pool_doc(&w, "p").await;
    assert_eq!(doc["targetDedicatedNodes"], 0);
    assert!(doc.get("_nodeDeallocationOption").is_some(), "kept for the reconciliation");
    w.cluster.reconcile_pools().await.unwrap();
    assert!(p.removed.lock().unwrap().is_empty(), "the node waits for its running task");
    assert_eq!(w.cluster.node("p", &node, |n| n.schedulable()), Some(false), "and takes no new task");

    agent.finish(&w, launch.attempt, 0).await;
    w.settle().await;
    assert_eq!(p.removed.lock().unwrap().clone(), vec![node.clone()], "then it leaves");
    assert_eq!(w.task_state("j", "a").await, TaskState::Completed, "the task finished, not requeued");
}

/// The nodes' measurements (sent with heartbeats) become the pool's
/// resource samples: `$CPUPercent` from the difference of two, averaged
/// over the nodes; `$SampleNodeCount` the nodes measured.
#[tokio::test]
async fn heartbeat_measurements_become_resource_samples() {
    let (w, _p) = world().await;
    autoscale_pool(&w, "p", "$TargetDedicatedNodes = 0;").await;
    let a = w.join("p", "n1").await;
    let b = w.join("p", "n2").await;
    let beat = |agent: &Agent, busy: u64, total: u64, mem: u64| {
        let usage = proto::NodeUsage { cpu_busy: Some(busy), cpu_total: Some(total), memory_bytes: Some(mem << 20), ..Default::default() };
        w.cluster.on_report(&agent.id, proto::ToServer::Heartbeat { usage: Some(usage) }, || URL.to_string());
    };
    beat(&a, 100, 1000, 100);
    beat(&b, 0, 1000, 300);
    w.cluster.sample_pools(t0()).await.unwrap();
    beat(&a, 400, 2000, 100);
    beat(&b, 100, 2000, 300);
    w.cluster.sample_pools(t0() + Duration::seconds(30)).await.unwrap();
    assert_eq!(w.cluster.pool_usage("p").iter().filter(|(_, u)| u.is_some()).count(), 2, "the latest values are kept per node");

    let doc = pool_doc(&w, "p").await;
    let f = control::autoscale::parse_formula(
        "$cpu = avg($CPUPercent.GetSample(1)); $mem = avg($MemoryBytes.GetSample(1)); $n = max($SampleNodeCount.GetSample(1)); \
         $wall = max($WallClockSeconds.GetSample(1));",
    )
    .unwrap();
    let run = w.cluster.evaluate_formula(&doc, &f, t0() + Duration::seconds(31));
    assert_eq!(run.error, None);
    assert!(run.results.ends_with(";$cpu=20;$mem=200;$n=2;$wall=60"), "{}", run.results);
}
