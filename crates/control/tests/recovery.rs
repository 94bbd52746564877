//! Node queues, the order of attempt writes, node loss and reconnects: what
//! the control plane takes back, requeues, kills, keeps or adopts.

mod support;
use control::NODE_LOST_AFTER;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;
use wire::enums::{ComputeNodeState, ExecutionResult, JobState, TaskState};

/// Pool `p` (1 slot per node), job `j` with `tasks`, node `n1`: one round
/// gives the first task the slot and queues the others on the node. Returns
/// the attempt of each task.
async fn busy_node(tasks: &[&str]) -> (World, Agent, HashMap<String, u64>) {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", tasks, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, tasks.len(), "one placed, the others queued");
    let r = a.received();
    let attempts: HashMap<String, u64> = tasks.iter().map(|t| (t.to_string(), r.attempt_of(t).expect("launched"))).collect();
    assert_eq!(w.task_state("j", tasks[0]).await, TaskState::Preparing, "the first task has the slot");
    for t in &tasks[1..] {
        let doc = w.task("j", t).await;
        assert_eq!(doc.state, TaskState::Active, "a queued task stays active until the node takes it");
        assert!(doc.node_info.is_none());
    }
    (w, a, attempts)
}

/// The node reports the attempt started, and the report is written.
async fn start(w: &World, a: &Agent, attempt: u64) {
    a.started(w, attempt);
    w.settle().await;
}

fn node_of(t: &wire::models::CloudTask) -> Option<&str> {
    t.node_info.as_ref().and_then(|i| i.node_id.as_deref())
}

fn lost_time() -> Instant {
    Instant::now() + NODE_LOST_AFTER + Duration::from_secs(1)
}

// ---- node queues taken back ----

/// A job that ends takes back its queued attempts (Kill to the agent, no
/// grace); the running one is left to the job's termination; nothing is placed again.
#[tokio::test]
async fn retract_job_kills_the_jobs_queued_attempts() {
    let (w, mut a, at) = busy_node(&["a", "b", "c"]).await;
    assert!(w.store.end_job("j", "UserTerminate", |_, _| Ok(true)).await.unwrap());
    w.cluster.retract_job("j");
    let r = a.received();
    assert_eq!(r.killed(), {
        let mut v = vec![at["b"], at["c"]];
        v.sort_unstable();
        v
    });
    assert!(r.kills.iter().all(|(_, grace)| *grace == 0), "a queued attempt is dropped at once: {:?}", r.kills);
    for t in ["b", "c"] {
        let doc = w.task("j", t).await;
        assert_eq!(doc.state, TaskState::Active);
        assert!(doc.node_info.is_none(), "no assignment was ever written for {t}");
    }
    assert_eq!(w.round().await, 0, "a terminating job's tasks are not placed");
    assert!(a.received().launches.is_empty());
    assert_eq!(w.job("j").await.state, JobState::Terminating);
}

/// Taking back a job's queued attempts frees its tasks: while the job is
/// active, the next round places them again, with new attempt ids.
#[tokio::test]
async fn retracted_tasks_of_an_active_job_are_placed_again() {
    let (w, mut a, at) = busy_node(&["a", "b", "c"]).await;
    w.cluster.retract_job("j");
    assert_eq!(a.received().killed().len(), 2);
    // The agent had started b meanwhile: its report is not written (the Kill stops it).
    start(&w, &a, at["b"]).await;
    let b = w.task("j", "b").await;
    assert_eq!((b.state, b.attempt), (TaskState::Active, None));
    assert_eq!(w.round().await, 2, "both tasks are queued again");
    let r = a.received();
    for t in ["b", "c"] {
        let again = r.attempt_of(t).expect("placed again");
        assert_ne!(again, at[t], "a new attempt, not the one taken back");
        assert!(again > at["c"], "attempt ids only grow");
    }
    // The new attempt runs and completes; the old one is gone.
    let b2 = r.attempt_of("b").unwrap();
    a.finish(&w, at["a"], 0).await;
    a.run(&w, b2, 0).await;
    let b = w.task("j", "b").await;
    assert_eq!(b.state, TaskState::Completed);
    assert_eq!(node_of(&b), Some("n1"));
}

/// A terminated task's queued attempt is taken back (Kill), and only it:
/// another task queued on the node still starts there and is recorded.
#[tokio::test]
async fn retract_task_kills_only_that_tasks_queued_attempt() {
    let (w, mut a, at) = busy_node(&["a", "b", "c"]).await;
    w.end_task("j", "b").await;
    w.cluster.retract_task("j", "b");
    assert_eq!(a.received().killed(), vec![at["b"]]);
    assert_eq!(w.task_state("j", "b").await, TaskState::Completed);
    // c is still queued: when the slot frees it starts and is written.
    a.finish(&w, at["a"], 0).await;
    start(&w, &a, at["c"]).await;
    let c = w.task("j", "c").await;
    assert_eq!(c.state, TaskState::Running);
    assert_eq!(node_of(&c), Some("n1"));
    assert_eq!(c.attempt, Some(at["c"]));
    assert!(a.received().kills.is_empty(), "c was not taken back");
}

/// A deleted task's queued attempt is taken back (Kill); a late report of
/// that attempt is settled without recreating or changing anything.
#[tokio::test]
async fn retract_task_after_delete_kills_the_queued_attempt() {
    let (w, mut a, at) = busy_node(&["a", "b"]).await;
    w.store.delete_task("j", "b", Default::default(), |_, _| Ok(())).await.unwrap();
    w.cluster.retract_task("j", "b");
    assert_eq!(a.received().killed(), vec![at["b"]]);
    let (changed, settled) = w.cluster.finished("n1", outcome(at["b"], Some(0), None), URL.into()).await;
    assert!(changed.is_none() && settled, "a report of a retracted attempt is dropped (and acknowledged)");
    assert!(w.store.get_task("j", "b").await.is_err(), "the task stays deleted");
    assert_eq!(w.round().await, 0);
}

/// A job of higher priority that finds the pool full takes back the queued
/// attempts of a lower-priority job, and the next round queues its task first.
#[tokio::test]
async fn a_higher_priority_job_takes_back_lower_priority_queued_attempts() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("low", "p", |_| {}).await;
    let ids: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    w.add_tasks("low", &ids, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let placed = w.round().await;
    assert!(placed > 1 && placed < ids.len(), "one running and a full queue ({placed})");
    let first = a.received();
    let running: Vec<u64> = first.launches.iter().take(1).map(|l| l.attempt).collect();
    let mut queued: Vec<u64> = first.launches.iter().skip(1).map(|l| l.attempt).collect();
    queued.sort_unstable();

    w.add_job("high", "p", |j| j.priority = 100).await;
    w.add_tasks("high", &["h"], |_| {}).await;
    assert_eq!(w.round().await, 0, "the pool is full");
    let r = a.received();
    assert_eq!(r.killed(), queued, "every queued attempt of the lower job is taken back, the running one stays");
    assert!(!r.killed().contains(&running[0]));
    assert_eq!(w.round().await, placed - 1, "the queue fills again");
    let next = a.received();
    assert_eq!(next.launches[0].task_id, "h", "the higher-priority task is queued first");
    assert!(next.launches[1..].iter().all(|l| l.job_id == "low"));
    // When the slot frees, the node takes h: it runs.
    a.finish(&w, running[0], 0).await;
    let h = next.launches[0].attempt;
    start(&w, &a, h).await;
    assert_eq!(w.task_state("high", "h").await, TaskState::Running);
}

/// Queues are rearranged for higher-priority work at most once every
/// `RETRACT_EVERY` per pool (the scheduler's clock is a parameter, so the
/// test moves time instead of waiting).
#[tokio::test]
async fn queues_are_taken_back_at_most_once_per_retract_interval() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("low", "p", |_| {}).await;
    let ids: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    w.add_tasks("low", &ids, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let t0 = std::time::Instant::now();
    assert!(w.round_at(t0).await > 1);
    a.received();
    w.add_job("high", "p", |j| j.priority = 100).await;
    w.add_tasks("high", &["h"], |_| {}).await;
    assert_eq!(w.round_at(t0).await, 0, "the pool is full");
    assert!(!a.received().killed().is_empty(), "the first yield takes the low job's queue back");
    assert!(w.round_at(t0).await > 0, "the queue fills again, h first");
    a.received();
    // Another, higher job: within the interval the queues stay as they are.
    w.add_job("higher", "p", |j| j.priority = 200).await;
    w.add_tasks("higher", &["x"], |_| {}).await;
    let soon = t0 + control::config::RETRACT_EVERY / 2;
    assert_eq!(w.round_at(soon).await, 0);
    assert!(a.received().killed().is_empty(), "no second rearrangement within RETRACT_EVERY");
    let later = t0 + control::config::RETRACT_EVERY + std::time::Duration::from_millis(1);
    assert_eq!(w.round_at(later).await, 0);
    assert!(!a.received().killed().is_empty(), "after the interval the queues yield again");
}

/// A job of the same priority waits behind the queued attempts: nothing is
/// taken back.
#[tokio::test]
async fn an_equal_priority_job_does_not_take_back_queued_attempts() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("first", "p", |_| {}).await;
    let ids: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    w.add_tasks("first", &ids, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert!(w.round().await > 1);
    a.received();
    w.add_job("second", "p", |_| {}).await;
    w.add_tasks("second", &["s"], |_| {}).await;
    for _ in 0..2 {
        assert_eq!(w.round().await, 0);
        let r = a.received();
        assert!(r.kills.is_empty() && r.launches.is_empty(), "{r:?}");
    }
    assert_eq!(w.task_state("second", "s").await, TaskState::Active);
}

/// A node of the pool with a free slot takes an attempt queued on a busy
/// node: the last one queued there is taken back (Kill) and placed on the free node.
#[tokio::test]
async fn a_free_node_takes_a_queued_attempt_from_a_busy_node() {
    let (w, mut a1, at) = busy_node(&["a", "b", "c"]).await;
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 0, "the queued tasks are held, not placed twice");
    assert_eq!(a1.received().killed(), vec![at["c"]], "the last queued attempt moves; b still starts first on n1");
    assert_eq!(w.task_state("j", "c").await, TaskState::Active);
    assert_eq!(w.round().await, 1);
    let r = a2.received();
    assert_eq!(r.launches.len(), 1);
    assert_eq!(r.launches[0].task_id, "c");
    let c = w.task("j", "c").await;
    assert_eq!(c.state, TaskState::Preparing, "placed on a free slot: assigned at once");
    assert_eq!(node_of(&c), Some("n2"));
    assert_eq!(c.attempt, Some(r.launches[0].attempt));
    assert!(a1.received().kills.is_empty(), "b stays queued on n1");
}

/// Disabling scheduling on a node takes its queue back (Kill); its running
/// task runs on; the queued tasks go to another node.
#[tokio::test]
async fn disabling_scheduling_takes_back_the_nodes_queue() {
    let (w, mut a1, at) = busy_node(&["a", "b", "c"]).await;
    let running = w.cluster.set_scheduling("p", "n1", false).unwrap();
    assert_eq!(running.iter().map(|(x, _)| *x).collect::<Vec<_>>(), vec![at["a"]]);
    let mut queued = vec![at["b"], at["c"]];
    queued.sort_unstable();
    assert_eq!(a1.received().killed(), queued);
    assert!(w.cluster.set_scheduling("p", "nowhere", false).is_err(), "an unknown node is an error");
    assert_eq!(w.round().await, 0, "n1 takes no tasks");
    assert!(a1.received().launches.is_empty());
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 2);
    let r = a2.received();
    assert!(r.attempt_of("b").is_some() && r.attempt_of("c").is_some());
    a1.run(&w, at["a"], 0).await;
    assert_eq!(w.task_state("j", "a").await, TaskState::Completed, "the running task ran on");
}

// ---- assignment writes before outcomes ----

/// A queued attempt that ends before any other report (no Started) is
/// written with its assignment and its outcome in one change; the agent gets its Ack.
#[tokio::test]
async fn a_queued_attempt_finished_without_started_is_recorded_with_its_assignment() {
    let (w, mut a, at) = busy_node(&["a", "b"]).await;
    a.finish(&w, at["a"], 0).await;
    a.received();
    w.cluster.on_report(&a.id, proto::ToServer::Finished(Box::new(outcome(at["b"], Some(0), None))), || URL.to_string());
    w.settle().await;
    let b = w.task("j", "b").await;
    assert_eq!(b.state, TaskState::Completed, "the outcome applied: the assignment preceded it");
    assert_eq!(b.previous_state, Some(TaskState::Running));
    assert_eq!(node_of(&b), Some("n1"), "the assignment's node info is written");
    assert_eq!(b.execution_info.exit_code, Some(0));
    assert_eq!(b.execution_info.result, Some(ExecutionResult::Success));
    assert_eq!(a.received().acks, vec![at["b"]]);
}

/// A queued attempt that the node takes and prepares (`Preparing`) has its
/// assignment written at once, before it starts.
#[tokio::test]
async fn a_preparing_report_writes_a_queued_attempts_assignment_at_once() {
    let (w, a, at) = busy_node(&["a", "b"]).await;
    a.finish(&w, at["a"], 0).await;
    assert_eq!(w.task_state("j", "b").await, TaskState::Active);
    a.preparing(&w, at["b"]);
    w.settle().await;
    let b = w.task("j", "b").await;
    assert_eq!(b.state, TaskState::Preparing);
    assert_eq!(node_of(&b), Some("n1"));
    assert_eq!(b.attempt, Some(at["b"]));
    start(&w, &a, at["b"]).await;
    assert_eq!(w.task_state("j", "b").await, TaskState::Running);
    a.finish(&w, at["b"], 0).await;
    assert_eq!(w.task_state("j", "b").await, TaskState::Completed);
}

/// A queued attempt whose task ended before the node took it is refused
/// when it starts (its assignment no longer applies): the agent is told to kill it.
#[tokio::test]
async fn a_queued_attempt_of_an_ended_task_is_killed_when_it_starts() {
    let (w, mut a, at) = busy_node(&["a", "b"]).await;
    w.end_task("j", "b").await; // (not taken back: the report races it)
    a.finish(&w, at["a"], 0).await;
    a.received();
    start(&w, &a, at["b"]).await;
    assert_eq!(a.received().killed(), vec![at["b"]]);
    let b = w.task("j", "b").await;
    assert_eq!(b.state, TaskState::Completed, "the ended task is not reopened");
    assert!(node_of(&b).is_none());
}

// ---- node loss ----

/// A node silent past NODE_LOST_AFTER is `unknown`: its running task goes
/// back to active (requeueCount + 1, retryCount unchanged, even with no
/// retries allowed), its queued task is simply taken back, and both run elsewhere.
#[tokio::test]
async fn a_silent_node_is_lost_and_its_tasks_requeued() {
    let (w, ag, at) = busy_node(&["a", "b"]).await;
    start(&w, &ag, at["a"]).await;
    assert_eq!(w.task_state("j", "a").await, TaskState::Running);
    w.cluster.check_liveness(Instant::now()).await;
    assert_eq!(w.node_state("p", "n1"), Some(ComputeNodeState::Running), "not silent yet");
    assert_eq!(w.task_state("j", "a").await, TaskState::Running);

    w.cluster.check_liveness(lost_time()).await;
    w.settle().await;
    assert_eq!(w.node_state("p", "n1"), Some(ComputeNodeState::Unknown));
    let a = w.task("j", "a").await;
    assert_eq!(a.state, TaskState::Active);
    assert_eq!(a.execution_info.requeue_count, 1);
    assert_eq!(a.execution_info.retry_count, 0);
    assert!(a.attempt.is_none() && a.node.is_none());
    let b = w.task("j", "b").await;
    assert_eq!(b.state, TaskState::Active);
    assert_eq!(b.execution_info.requeue_count, 0, "never assigned: nothing to requeue");

    assert_eq!(w.round().await, 0, "an unknown node takes nothing");
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 2);
    let r = a2.received();
    assert!(r.attempt_of("a").is_some_and(|x| x != at["a"]));
    assert!(r.attempt_of("b").is_some_and(|x| x != at["b"]));
}

/// A node whose connection ended and that never comes back is lost: its
/// running task is requeued and its queued attempt taken back, and another
/// node runs both.
#[tokio::test]
async fn a_disconnected_node_that_stays_away_is_lost_with_its_queue() {
    let (w, a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    a1.disconnect(&w);
    w.cluster.check_liveness(lost_time()).await;
    assert_eq!(w.node_state("p", "n1"), Some(ComputeNodeState::Unknown));
    let a = w.task("j", "a").await;
    assert_eq!((a.state, a.execution_info.requeue_count), (TaskState::Active, 1));
    assert_eq!(w.task("j", "b").await.execution_info.requeue_count, 0);
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 2);
    let r = a2.received();
    assert!(r.attempt_of("a").is_some() && r.attempt_of("b").is_some());
}

/// A node whose connection ended keeps its queued attempts (it may have
/// started them): no other node gets them; when it rejoins running them,
/// they are written as running there, without a requeue.
#[tokio::test]
async fn a_disconnected_node_keeps_its_queued_attempts_until_it_rejoins() {
    let (w, a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    a1.disconnect(&w);
    assert_eq!(w.node_state("p", "n1"), Some(ComputeNodeState::Offline));
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 0, "b is still n1's");
    assert!(a2.received().launches.is_empty());
    assert_eq!(w.task_state("j", "b").await, TaskState::Active);

    // Meanwhile a ended and n1 took b (the reports were lost with the connection).
    let mut h = hello_running("p", "n1", &[at["b"]], &[]);
    h.finished = vec![proto::Finished { outcome: outcome(at["a"], Some(0), None), task: None }];
    let mut back = w.join_with(h).await;
    // (The transport applies the outcomes the Hello carried.)
    back.finish(&w, at["a"], 0).await;
    w.settle().await;
    assert!(back.received().kills.is_empty());
    let b = w.task("j", "b").await;
    assert_eq!(b.state, TaskState::Running, "assignment and start written on rejoin");
    assert_eq!(node_of(&b), Some("n1"));
    assert_eq!(b.execution_info.requeue_count, 0);
    assert_eq!(w.task_state("j", "a").await, TaskState::Completed);
    back.finish(&w, at["b"], 0).await;
    assert_eq!(w.task_state("j", "b").await, TaskState::Completed);
}

/// On rejoin, an attempt the database assigns to the node that the agent
/// no longer runs is requeued (requeueCount + 1), and a queued attempt it
/// never took is placed again.
#[tokio::test]
async fn a_rejoining_node_that_lost_its_attempts_gets_them_requeued() {
    let (w, a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    a1.disconnect(&w);
    let mut back = w.join("p", "n1").await; // a fresh agent: nothing running
    w.settle().await;
    let a = w.task("j", "a").await;
    assert_eq!(a.state, TaskState::Active);
    assert_eq!(a.execution_info.requeue_count, 1);
    assert_eq!(a.execution_info.retry_count, 0);
    assert_eq!(w.task("j", "b").await.execution_info.requeue_count, 0);
    assert_eq!(w.round().await, 2);
    let r = back.received();
    assert!(r.attempt_of("a").is_some_and(|x| x > at["b"]));
    assert!(r.attempt_of("b").is_some_and(|x| x > at["b"]));
}

/// A node that rejoins still running its attempt keeps it: no Kill, no
/// requeue, the task stays running and completes with its outcome.
#[tokio::test]
async fn a_rejoining_node_keeps_an_attempt_it_still_runs() {
    let (w, a1, at) = busy_node(&["a"]).await;
    start(&w, &a1, at["a"]).await;
    a1.disconnect(&w);
    let mut back = w.join_with(hello_running("p", "n1", &[at["a"]], &[])).await;
    w.settle().await;
    assert!(back.received().kills.is_empty());
    assert_eq!(w.node_state("p", "n1"), Some(ComputeNodeState::Running));
    assert_eq!(w.cluster.running_on("n1").iter().map(|(x, _)| *x).collect::<Vec<_>>(), vec![at["a"]]);
    let a = w.task("j", "a").await;
    assert_eq!((a.state, a.execution_info.requeue_count), (TaskState::Running, 0));
    assert_eq!(w.round().await, 0, "its slot is still taken");
    back.finish(&w, at["a"], 0).await;
    assert_eq!(w.task_state("j", "a").await, TaskState::Completed);
}

/// After a requeue, a late outcome of the lost attempt is dropped: the task
/// keeps its new attempt on the new node.
#[tokio::test]
async fn a_stale_finished_report_after_a_requeue_changes_nothing() {
    let (w, a1, at) = busy_node(&["a"]).await;
    start(&w, &a1, at["a"]).await;
    w.cluster.check_liveness(lost_time()).await;
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 1);
    let again = a2.received().attempt_of("a").unwrap();
    let before = w.task("j", "a").await;
    let (changed, settled) = w.cluster.finished("n1", outcome(at["a"], Some(1), None), URL.into()).await;
    w.settle().await;
    assert!(changed.is_none() && settled);
    let t = w.task("j", "a").await;
    assert_eq!(t.state, TaskState::Preparing);
    assert_eq!(t.attempt, Some(again));
    assert_eq!(node_of(&t), Some("n2"));
    assert_eq!(t.execution_info.exit_code, None);
    assert_eq!(t.e_tag, before.e_tag, "not written at all");
    a2.run(&w, again, 0).await;
    assert_eq!(w.task("j", "a").await.execution_info.exit_code, Some(0));
}

/// A node that rejoins still running an attempt the database no longer
/// assigns to it (its task was requeued and placed elsewhere) is told to
/// kill it — held or not, this server's attempts are never adopted.
#[tokio::test]
async fn a_rejoining_node_is_told_to_kill_attempts_no_longer_assigned_to_it() {
    let (w, a1, at) = busy_node(&["a"]).await;
    start(&w, &a1, at["a"]).await;
    w.cluster.check_liveness(lost_time()).await;
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 1);
    let again = a2.received().attempt_of("a").unwrap();
    let mut back = w.join_with(hello_running("p", "n1", &[at["a"]], &[(at["a"], "j", "a")])).await;
    w.settle().await;
    assert_eq!(back.received().killed(), vec![at["a"]]);
    assert_eq!(w.node_state("p", "n1"), Some(ComputeNodeState::Idle), "back, and running nothing");
    let t = w.task("j", "a").await;
    assert_eq!((t.state, t.attempt, node_of(&t)), (TaskState::Preparing, Some(again), Some("n2")));
}

/// Removing a node with requeue sends its running task back to active
/// (requeueCount + 1), takes back its queue, and shuts its agent down.
#[tokio::test]
async fn removing_a_node_requeues_its_tasks() {
    let (w, mut a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    w.cluster.remove_node("n1", true).await;
    w.settle().await;
    assert!(a1.received().shutdown);
    assert_eq!(w.node_state("p", "n1"), None);
    let a = w.task("j", "a").await;
    assert_eq!((a.state, a.execution_info.requeue_count, a.execution_info.retry_count), (TaskState::Active, 1, 0));
    let b = w.task("j", "b").await;
    assert_eq!((b.state, b.execution_info.requeue_count), (TaskState::Active, 0));
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 2);
    let r = a2.received();
    assert!(r.attempt_of("a").is_some() && r.attempt_of("b").is_some());
}

// ---- attempt ids and adoption across a restart ----

/// A restarted server issues attempt ids above every id the store has seen
/// (even one from a clock ahead of its own) and above the last server's.
#[tokio::test]
async fn a_restarted_server_never_repeats_an_attempt_id() {
    let (w, _a, at) = busy_node(&["a", "b"]).await;
    // An earlier server whose clock ran an hour ahead left this id.
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    let ahead = now_us + 3_600_000_000;
    w.pool("q", 1, "spread").await;
    w.add_job("old", "q", |_| {}).await;
    w.add_tasks("old", &["x"], |t| t.attempt = Some(ahead)).await;
    assert_eq!(w.task("old", "x").await.attempt, Some(ahead));

    let w2 = w.restarted().await;
    w2.pool("p2", 1, "spread").await;
    w2.add_job("k", "p2", |_| {}).await;
    w2.add_tasks("k", &["c"], |_| {}).await;
    let mut n = w2.join("p2", "n9").await;
    assert_eq!(w2.round().await, 1);
    let issued = n.received().launches[0].attempt;
    assert!(issued > ahead, "{issued} must exceed {ahead}");
    assert!(at.values().all(|a| issued > *a));
}

/// A rejoining agent's attempt from an earlier server (below this server's
/// first id) whose task still waits is adopted: assignment written, task
/// running there, completed by its outcome — not killed and run again.
#[tokio::test]
async fn a_restarted_server_adopts_an_earlier_servers_attempt() {
    let (w, a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    a1.finish(&w, at["a"], 0).await;
    // The node started b from its queue; the server died before the report.
    let w2 = w.restarted().await;
    let mut back = w2.join_with(hello_running("p", "n1", &[at["b"]], &[(at["b"], "j", "b")])).await;
    w2.settle().await;
    assert!(back.received().kills.is_empty(), "adopted, not killed");
    let b = w2.task("j", "b").await;
    assert_eq!(b.state, TaskState::Running);
    assert_eq!(b.attempt, Some(at["b"]));
    assert_eq!(node_of(&b), Some("n1"));
    assert_eq!(w2.round().await, 0, "not placed a second time");
    back.finish(&w2, at["b"], 0).await;
    let b = w2.task("j", "b").await;
    assert_eq!((b.state, b.execution_info.exit_code), (TaskState::Completed, Some(0)));
}

/// An earlier server's attempt is not adopted when its task moved on
/// (completed): the agent is told to kill it, the task is left as it is.
#[tokio::test]
async fn an_earlier_servers_attempt_of_an_ended_task_is_killed() {
    let (w, a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    a1.finish(&w, at["a"], 0).await;
    w.end_task("j", "b").await;
    let w2 = w.restarted().await;
    let mut back = w2.join_with(hello_running("p", "n1", &[at["b"]], &[(at["b"], "j", "b")])).await;
    w2.settle().await;
    assert_eq!(back.received().killed(), vec![at["b"]]);
    let b = w2.task("j", "b").await;
    assert_eq!(b.state, TaskState::Completed);
    assert!(node_of(&b).is_none());
}

/// An attempt id this server could have issued (at or above its first id)
/// that it does not know is killed even when held for a waiting task: only
/// an earlier server's attempts are adopted. The task is placed normally.
#[tokio::test]
async fn an_unknown_attempt_of_this_server_is_killed_not_adopted() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    let bogus = u64::MAX / 2;
    let mut a = w.join_with(hello_running("p", "n1", &[bogus], &[(bogus, "j", "t")])).await;
    w.settle().await;
    assert_eq!(a.received().killed(), vec![bogus]);
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Active);
    assert!(node_of(&t).is_none());
    assert_eq!(w.round().await, 1);
    assert!(a.received().attempt_of("t").is_some_and(|x| x != bogus));
}

/// An outcome that a rejoining agent still holds for an earlier server's
/// attempt (the task still waits) is adopted: the assignment is written, then
/// the outcome completes the task on that node.
#[tokio::test]
async fn an_earlier_servers_finished_attempt_is_adopted_with_its_outcome() {
    let (w, a1, at) = busy_node(&["a", "b"]).await;
    start(&w, &a1, at["a"]).await;
    a1.finish(&w, at["a"], 0).await;
    // The node ran b from its queue; the server died before any report of it.
    let w2 = w.restarted().await;
    let mut h = hello("p", "n1");
    h.finished = vec![proto::Finished {
        outcome: outcome(at["b"], Some(0), None),
        task: Some(proto::AttemptOf { job_id: "j".into(), task_id: "b".into(), slots: 1 }),
    }];
    let mut back = w2.join_with(h).await;
    w2.settle().await;
    assert!(back.received().kills.is_empty());
    let b = w2.task("j", "b").await;
    assert_eq!((b.state, b.attempt, node_of(&b)), (TaskState::Preparing, Some(at["b"]), Some("n1")), "assigned, not run again");
    assert_eq!(w2.round().await, 0);
    // (The transport then applies the outcome the Hello carried.)
    back.finish(&w2, at["b"], 0).await;
    let b = w2.task("j", "b").await;
    assert_eq!((b.state, b.execution_info.exit_code, node_of(&b)), (TaskState::Completed, Some(0), Some("n1")));
}
