//! The harness itself: a task placed on a fake node runs and completes.

mod support;
use support::*;
use wire::enums::TaskState;

/// One task on one idle node: placed, launched, recorded as it runs and ends.
#[tokio::test]
async fn a_task_runs_on_a_fake_node_and_completes() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 1);
    let l = a.launches();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].job_id.as_str(), l[0].task_id.as_str()), ("j", "t"));
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Preparing);
    assert_eq!(t.node_info.and_then(|i| i.node_id).as_deref(), Some("n1"));
    a.started(&w, l[0].attempt);
    w.settle().await;
    assert_eq!(w.task_state("j", "t").await, TaskState::Running, "the Started report is written");
    a.finish(&w, l[0].attempt, 0).await;
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.exit_code, Some(0));
}
