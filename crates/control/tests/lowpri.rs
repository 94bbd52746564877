//! Low-priority (spot) nodes: a pool's two targets give nodes of two
//! kinds, each shrunk to its own target; an operator's preemption requeues
//! a node's tasks and keeps it from new ones until it recovers.

mod support;
use proto::{ToAgent, ToServer};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use wire::enums::{ComputeNodeState, TaskState};
use wire::models::JobManagerTask;
use wire::ErrorCode;

async fn world() -> (World, Arc<FakeProvider>) {
    let p = Arc::new(FakeProvider::default());
    (World::with_provider(p.clone()).await, p)
}

/// Sets a pool's targets as a resize would.
async fn resize(w: &World, pool: &str, dedicated: u64, low: u64, option: &str) {
    let option = option.to_string();
    w.store
        .update_pool(pool, Default::default(), move |doc, _| {
            doc.insert("targetDedicatedNodes".into(), json!(dedicated));
            doc.insert("targetLowPriorityNodes".into(), json!(low));
            doc.insert(control::autoscale::DEALLOCATION_MEMBER.into(), json!(option));
            Ok(())
        })
        .await
        .unwrap();
}

/// Joins every node the provider started that has not joined yet.
async fn join_pending(w: &World, p: &FakeProvider, pool: &str) -> Vec<Agent> {
    let ids: Vec<String> = p.nodes.lock().unwrap().iter().filter(|n| n.pool == pool).map(|n| n.id.clone()).collect();
    let mut agents = Vec::new();
    for id in ids {
        // Not joined yet: not listed, or listed as `creating`/`starting`.
        if matches!(w.node_state(pool, &id), None | Some(ComputeNodeState::Creating | ComputeNodeState::Starting)) {
            agents.push(w.join(pool, &id).await);
        }
    }
    agents
}

/// The pool's nodes that are dedicated, and those that are not.
fn kinds(w: &World, pool: &str) -> (Vec<String>, Vec<String>) {
    let all = w.cluster.pool_nodes(pool, |n| (n.id.clone(), n.is_dedicated));
    let dedicated = all.iter().filter(|(_, d)| *d).map(|(id, _)| id.clone()).collect();
    let low = all.iter().filter(|(_, d)| !*d).map(|(id, _)| id.clone()).collect();
    (dedicated, low)
}

/// A pool with one dedicated and two low-priority nodes: the provider is
/// asked for three; as they join, the first makes up the dedicated target
/// and the next two are low-priority.
#[tokio::test]
async fn each_target_gets_nodes_of_its_kind() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 1, "targetLowPriorityNodes": 2})).await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 3);
    join_pending(&w, &p, "p").await;
    let (dedicated, low) = kinds(&w, "p");
    assert_eq!((dedicated.len(), low.len()), (1, 2));
    assert_eq!(w.cluster.allocation_state("p", 3), "steady");

    // Low-priority only down to 0: the two low-priority nodes go, the dedicated one stays.
    resize(&w, "p", 1, 0, "requeue").await;
    w.cluster.reconcile_pools().await.unwrap();
    let mut removed = p.removed.lock().unwrap().clone();
    removed.sort();
    assert_eq!(removed, low);
    assert_eq!(kinds(&w, "p"), (dedicated.clone(), vec![]));

    // Low-priority up again: new nodes join as low-priority.
    resize(&w, "p", 1, 1, "requeue").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 4);
    join_pending(&w, &p, "p").await;
    let (d, l) = kinds(&w, "p");
    assert_eq!((d, l.len()), (dedicated, 1));
}

/// Swapping kinds (2 dedicated → 2 low-priority) removes the dedicated
/// nodes and adds low-priority ones; a node that joins from elsewhere is
/// dedicated and makes up the dedicated target first.
#[tokio::test]
async fn kinds_shrink_separately_and_remote_nodes_are_dedicated() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetDedicatedNodes": 2})).await;
    w.cluster.reconcile_pools().await.unwrap();
    join_pending(&w, &p, "p").await;
    assert_eq!(kinds(&w, "p").0.len(), 2);
    resize(&w, "p", 0, 2, "requeue").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.removed.lock().unwrap().len(), 2, "both dedicated nodes go");
    assert_eq!(p.added.lock().unwrap().len(), 4, "and two more are asked for in the same pass");
    join_pending(&w, &p, "p").await;
    let (d, l) = kinds(&w, "p");
    assert_eq!((d.len(), l.len()), (0, 2));

    // The pool wants 1 + 2 and a remote node joins: it is the dedicated
    // one, and the two low-priority nodes are already there.
    resize(&w, "p", 1, 2, "requeue").await;
    w.join("p", "remote-1").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 4, "nothing more to add");
    let (d, l) = kinds(&w, "p");
    assert_eq!((d, l.len()), (vec!["remote-1".to_string()], 2));
}

/// Preempting a node running a task: the node is `preempted`, the task is
/// killed there and back to `active` with requeueCount 1 and retryCount 0,
/// and the node takes nothing until it recovers. Dedicated nodes, and a
/// node preempted already, are refused.
#[tokio::test]
async fn preemption_requeues_running_tasks_and_takes_no_new_ones() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetLowPriorityNodes": 1})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let mut agents = join_pending(&w, &p, "p").await;
    let mut a = agents.remove(0);
    let node = a.id.clone();
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    w.round().await;
    let launch = a.launches().pop().expect("the task starts on the low-priority node");
    a.started(&w, launch.attempt);
    w.settle().await;
    assert_eq!(w.task_state("j", "t").await, TaskState::Running);

    let now = Instant::now();
    w.cluster.preempt_node("p", &node, None, now).await.unwrap();
    assert_eq!(w.node_state("p", &node), Some(ComputeNodeState::Preempted));
    assert!(a.kills().contains(&launch.attempt), "its process is killed");
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Active);
    assert_eq!((t.execution_info.requeue_count, t.execution_info.retry_count), (1, 0));

    // The agent reports the killed attempt; it is stale and changes nothing.
    a.finish(&w, launch.attempt, 137).await;
    w.round().await;
    assert!(a.launches().is_empty(), "a preempted node takes no task");
    assert_eq!(w.task_state("j", "t").await, TaskState::Active);

    // Preempted nodes still count as low-priority nodes: nothing is added.
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.added.lock().unwrap().len(), 1);

    let e = w.cluster.preempt_node("p", &node, None, now).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationNotValidOnNode, "already preempted");
    w.join("p", "remote-1").await;
    let e = w.cluster.preempt_node("p", "remote-1", None, now).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationNotValidOnNode, "a dedicated node");
    let e = w.cluster.preempt_node("p", "nope", None, now).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NodeNotFound);
}

/// A preemption with a delay recovers by itself once it has passed (the
/// reconciliation's time is a parameter): the node is reimaged, then idle,
/// and the requeued task runs there again and completes.
#[tokio::test]
async fn a_preempted_node_recovers_after_its_delay_and_the_task_completes() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetLowPriorityNodes": 1})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let mut a = join_pending(&w, &p, "p").await.remove(0);
    let node = a.id.clone();
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    w.round().await;
    let first = a.launches().pop().unwrap();
    a.started(&w, first.attempt);
    w.settle().await;

    let t0 = Instant::now();
    w.cluster.preempt_node("p", &node, Some(Duration::from_secs(30)), t0).await.unwrap();
    a.finish(&w, first.attempt, 137).await;
    a.messages();
    w.cluster.reconcile_pools_at(t0 + Duration::from_secs(10)).await.unwrap();
    assert_eq!(w.node_state("p", &node), Some(ComputeNodeState::Preempted), "not yet");
    w.cluster.reconcile_pools_at(t0 + Duration::from_secs(31)).await.unwrap();
    assert_eq!(w.node_state("p", &node), Some(ComputeNodeState::Reimaging));
    assert!(a.messages().iter().any(|m| matches!(m, ToAgent::Reset { wipe: true })), "the node is reimaged");
    w.cluster.on_report(&node, ToServer::ResetDone, || URL.to_string());
    w.settle().await;
    for _ in 0..50 {
        if w.node_state("p", &node) == Some(ComputeNodeState::Idle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.node_state("p", &node), Some(ComputeNodeState::Idle));

    w.round().await;
    let second = a.launches().pop().expect("the requeued task runs again");
    assert_eq!(second.task_id, "t");
    a.run(&w, second.attempt, 0).await;
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!((t.execution_info.requeue_count, t.execution_info.retry_count), (1, 0));
}

/// Without a delay a preempted node waits for the operator; recovering a
/// node that is not preempted is refused. A preempted node goes first when
/// its kind shrinks.
#[tokio::test]
async fn recovery_on_demand_and_preempted_nodes_go_first() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetLowPriorityNodes": 2})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let agents = join_pending(&w, &p, "p").await;
    let (x, y) = (agents[0].id.clone(), agents[1].id.clone());
    let now = Instant::now();
    assert_eq!(w.cluster.recover_node("p", &x).unwrap_err().code, ErrorCode::OperationNotValidOnNode);
    w.cluster.preempt_node("p", &x, None, now).await.unwrap();
    w.cluster.preempt_node("p", &y, None, now).await.unwrap();
    w.cluster.reconcile_pools_at(now + Duration::from_secs(86_400)).await.unwrap();
    assert_eq!(w.node_state("p", &x), Some(ComputeNodeState::Preempted), "no delay: it waits for the operator");
    w.cluster.recover_node("p", &x).unwrap();
    assert_eq!(w.node_state("p", &x), Some(ComputeNodeState::Reimaging));

    resize(&w, "p", 0, 1, "taskcompletion").await;
    w.cluster.reconcile_pools().await.unwrap();
    assert_eq!(p.removed.lock().unwrap().clone(), vec![y.clone()], "the preempted node goes, not the recovering one");
}

/// A job manager with `allowLowPriorityNode: false` waits for a dedicated
/// node; the job's other tasks run on low-priority ones.
#[tokio::test]
async fn a_job_manager_that_disallows_low_priority_nodes_runs_on_a_dedicated_one() {
    let (w, p) = world().await;
    w.pool_with("p", 1, "spread", json!({"targetLowPriorityNodes": 1})).await;
    w.cluster.reconcile_pools().await.unwrap();
    let mut low = join_pending(&w, &p, "p").await.remove(0);
    let mut m: JobManagerTask = serde_json::from_value(json!({"id": "jm", "commandLine": "/bin/true"})).unwrap();
    m.allow_low_priority_node = Some(false);
    m.run_exclusive = Some(false);
    w.add_job("j", "p", |j| j.job_manager_task = Some(m)).await;
    w.add_tasks("j", &["jm", "a"], |_| {}).await;
    w.round().await;
    let placed: Vec<String> = low.launches().into_iter().map(|l| l.task_id).collect();
    assert_eq!(placed, vec!["a".to_string()], "the manager is not placed on the low-priority node");
    assert_eq!(w.task_state("j", "jm").await, TaskState::Active);

    let mut dedicated = w.join("p", "remote-1").await;
    w.round().await;
    let placed: Vec<String> = dedicated.launches().into_iter().map(|l| l.task_id).collect();
    assert_eq!(placed, vec!["jm".to_string()]);
}
