//! Placement and the scheduling round, driven through the control plane's
//! entry points with fake agents: where tasks go (fill type, slots,
//! affinity, scheduling state), who goes first (priority, job manager), how
//! many (maxParallelTasks, node queues), and what follows an attempt's end
//! (freed slots, retries).

mod support;
use proto::{TaskLaunch, ToServer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use wire::enums::{ExecutionResult, JobState, TaskState};
use wire::models::{AffinityInformation, JobManagerTask};

/// The task ids of launches, in the order they were sent.
fn ids(l: &[TaskLaunch]) -> Vec<&str> {
    l.iter().map(|l| l.task_id.as_str()).collect()
}

/// The node the store says a task is on (nodeInfo.nodeId).
async fn node_of(w: &World, job: &str, task: &str) -> Option<String> {
    w.task(job, task).await.node_info.and_then(|i| i.node_id)
}

/// How many attempts the control plane counts as running on a node, and the
/// slots they hold.
fn load(w: &World, node: &str) -> (usize, u32) {
    let r = w.cluster.running_on(node);
    (r.len(), r.iter().map(|(_, s)| s.slots).sum())
}

/// A job manager task (runExclusive left to its default unless given).
fn manager(id: &str, run_exclusive: Option<bool>) -> JobManagerTask {
    let mut m: JobManagerTask = serde_json::from_value(json!({"id": id, "commandLine": "/bin/true"})).unwrap();
    m.run_exclusive = run_exclusive;
    m
}

/// Moves a job to `state` in the store (as the API's disable/terminate would).
async fn set_job_state(w: &World, id: &str, state: JobState) {
    w.store
        .update_job(id, Default::default(), move |_, j, now| {
            store::jobs::set_state(j, state, now);
            Ok(())
        })
        .await
        .unwrap();
}

/// `spread`: every node gets a task before any node gets a second one.
#[tokio::test]
async fn spread_puts_one_task_per_node_before_doubling_up() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    let mut a2 = w.join("p", "n2").await;
    w.add_tasks("j", &["t1", "t2"], |_| {}).await;
    assert_eq!(w.round().await, 2);
    assert_eq!(a1.launches().len(), 1, "n1 takes one task");
    assert_eq!(a2.launches().len(), 1, "n2 takes the other, not n1's second slot");
    let on = [node_of(&w, "j", "t1").await, node_of(&w, "j", "t2").await];
    assert!(on.contains(&Some("n1".into())) && on.contains(&Some("n2".into())), "{on:?}");
    // Two more: each node doubles up.
    w.add_tasks("j", &["t3", "t4"], |_| {}).await;
    assert_eq!(w.round().await, 2);
    assert_eq!((a1.launches().len(), a2.launches().len()), (1, 1));
    assert_eq!((load(&w, "n1"), load(&w, "n2")), ((2, 2), (2, 2)));
}

/// `pack`: a node's slots are filled before the next node gets a task.
#[tokio::test]
async fn pack_fills_a_node_before_the_next() {
    let w = World::new().await;
    w.pool("p", 3, "pack").await;
    w.add_job("j", "p", |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    let mut a2 = w.join("p", "n2").await;
    w.add_tasks("j", &["t1", "t2", "t3", "t4"], |_| {}).await;
    assert_eq!(w.round().await, 4);
    let (l1, l2) = (a1.launches(), a2.launches());
    assert_eq!(ids(&l1), ["t1", "t2", "t3"], "n1 is filled first");
    assert_eq!(ids(&l2), ["t4"], "n2 gets the task n1 has no slot for");
    assert_eq!(node_of(&w, "j", "t3").await.as_deref(), Some("n1"));
    assert_eq!(node_of(&w, "j", "t4").await.as_deref(), Some("n2"));
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(w.task_state("j", t).await, TaskState::Preparing, "{t} is assigned, not queued");
    }
}

/// taskSlotsPerNode bounds the tasks running on a node: the rest stay
/// `active` (queued on the node at most), and the pool's value is what the
/// node gets (the hello does not decide).
#[tokio::test]
async fn task_slots_per_node_bound_the_tasks_running_on_a_node() {
    let w = World::new().await;
    w.pool("p", 3, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let ids5 = ["t1", "t2", "t3", "t4", "t5"];
    w.add_tasks("j", &ids5, |_| {}).await;
    let _a = w.join("p", "n1").await;
    w.round().await;
    assert_eq!(load(&w, "n1"), (3, 3), "three slots, three running attempts");
    let mut states = Vec::new();
    for t in ids5 {
        states.push(w.task_state("j", t).await);
    }
    assert_eq!(states.iter().filter(|s| **s == TaskState::Preparing).count(), 3, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == TaskState::Active).count(), 2, "{states:?}");
    // Another round changes nothing while no slot frees.
    w.round().await;
    assert_eq!(load(&w, "n1"), (3, 3));
}

/// A task with requiredSlots > 1 holds that many slots of one node, and
/// the node takes no more than its slots hold.
#[tokio::test]
async fn required_slots_take_that_many_slots() {
    let w = World::new().await;
    w.pool("p", 4, "pack").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["a"], |t| t.required_slots = 3).await;
    w.add_tasks("j", &["b"], |t| t.required_slots = 2).await;
    let mut a1 = w.join("p", "n1").await;
    let mut a2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 2);
    let l = [a1.launches(), a2.launches()].concat();
    let a = l.iter().find(|l| l.task_id == "a").expect("a is sent");
    assert_eq!(a.slots, 3, "the launch carries the slots it holds");
    assert_eq!(l.iter().find(|l| l.task_id == "b").map(|l| l.slots), Some(2));
    // Pack would put b beside a, but 2 + 3 > 4: b goes to the other node.
    assert_ne!(node_of(&w, "j", "a").await, node_of(&w, "j", "b").await);
    assert_eq!(load(&w, "n1"), (1, 3));
    assert_eq!(load(&w, "n2"), (1, 2));
    // A one-slot task fills what is left (pack: the fuller n1 first).
    w.add_tasks("j", &["c"], |_| {}).await;
    w.round().await;
    assert_eq!(node_of(&w, "j", "c").await.as_deref(), Some("n1"));
    assert_eq!(load(&w, "n1"), (2, 4));
}

/// A wide task that does not fit in a node's last free slot does not keep
/// that slot from a smaller task: the smaller one is placed there, and the
/// wide one queues only once every slot is taken. (Regression: the wide
/// task was queued on the node with the free slot, and the small one queued
/// behind it, leaving the slot idle.)
#[tokio::test]
async fn a_wide_task_does_not_keep_a_free_slot_from_smaller_ones() {
    let w = World::new().await;
    w.pool("p", 4, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["big"], |t| t.required_slots = 3).await;
    w.add_tasks("j", &["mid"], |t| t.required_slots = 2).await;
    w.add_tasks("j", &["one"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    assert_eq!(w.task_state("j", "big").await, TaskState::Preparing);
    assert_eq!(w.task_state("j", "one").await, TaskState::Preparing, "the free slot runs the one-slot task");
    assert_eq!(load(&w, "n1"), (2, 4), "big (3) + one (1): the node is full");
    let l = a.launches();
    assert_eq!(ids(&l), ["big", "one"], "mid is not sent while a slot is free");
    // Now the node is full: mid waits in its queue.
    w.round().await;
    let q = a.launches();
    assert_eq!(ids(&q), ["mid"]);
    assert_eq!(q[0].slots, 2);
    assert_eq!(w.task_state("j", "mid").await, TaskState::Active);
    a.run(&w, l[0].attempt, 0).await;
    a.started(&w, q[0].attempt);
    w.settle().await;
    assert_eq!(w.task_state("j", "mid").await, TaskState::Running);
    assert_eq!(load(&w, "n1"), (2, 3));
}

/// A task needing more slots than any node of the pool has waits (never
/// sent, still `active`) and does not hold up the job's other tasks.
#[tokio::test]
async fn a_task_wider_than_every_node_waits_without_blocking_the_job() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["a-huge"], |t| t.required_slots = 3).await;
    w.add_tasks("j", &["b", "c"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 2);
    let mut sent = ids(&a.launches()).into_iter().map(str::to_string).collect::<Vec<_>>();
    sent.sort();
    assert_eq!(sent, ["b", "c"]);
    assert_eq!(w.task_state("j", "a-huge").await, TaskState::Active);
    // Still waiting once the node is idle again.
    for (att, _) in w.cluster.running_on("n1") {
        a.run(&w, att, 0).await;
    }
    assert_eq!(w.round().await, 0);
    assert!(a.launches().is_empty(), "the wide task is never sent");
    assert_eq!(w.task_state("j", "a-huge").await, TaskState::Active);
}

/// With one free slot and two jobs, the higher-priority job's task takes the
/// slot (even when created later); the other only waits in the node's queue.
#[tokio::test]
async fn the_higher_priority_job_gets_the_free_slot() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("low", "p", |j| j.priority = 10).await;
    w.add_job("high", "p", |j| j.priority = 500).await;
    w.add_tasks("low", &["l"], |_| {}).await;
    w.add_tasks("high", &["h"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let l = a.launches();
    assert_eq!(l.first().map(|l| (l.job_id.as_str(), l.task_id.as_str())), Some(("high", "h")), "sent first");
    assert_eq!(w.task_state("high", "h").await, TaskState::Preparing);
    assert_eq!(node_of(&w, "high", "h").await.as_deref(), Some("n1"));
    assert_eq!(w.task_state("low", "l").await, TaskState::Active, "the low-priority task only queues");
    assert_eq!(load(&w, "n1"), (1, 1));
    assert_eq!(w.cluster.running_on("n1")[0].1.job_id, "high");
}

/// A higher-priority job finding every slot and queue place taken by a
/// lower-priority job's queued tasks takes those places: they are taken back
/// (the agent told to drop them) and the next round queues the high job first.
#[tokio::test]
async fn a_higher_priority_job_takes_the_queue_places_of_a_lower_one() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("low", "p", |j| j.priority = 0).await;
    w.add_tasks("low", &["l1", "l2", "l3", "l4", "l5", "l6"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 5, "one placed, four queued (the queue is full)");
    let queued: Vec<u64> = a.launches().iter().skip(1).map(|l| l.attempt).collect();
    assert_eq!(queued.len(), 4);
    w.add_job("high", "p", |j| j.priority = 100).await;
    w.add_tasks("high", &["h"], |_| {}).await;
    w.round().await;
    let mut killed = a.kills();
    killed.sort();
    assert_eq!(killed, queued, "the low job's queued attempts are taken back");
    w.round().await;
    let l = a.launches();
    assert_eq!(l.first().map(|l| l.job_id.as_str()), Some("high"), "the high job queues first");
    assert_eq!(l.len(), 4, "then the low job fills the queue again");
    assert_eq!(w.task_state("high", "h").await, TaskState::Active, "queued: not assigned yet");
}

/// maxParallelTasks caps the job's running (and queued) tasks; a task that
/// ends lets the next one in.
#[tokio::test]
async fn max_parallel_tasks_caps_running_tasks() {
    let w = World::new().await;
    w.pool("p", 4, "spread").await;
    w.add_job("j", "p", |j| j.max_parallel_tasks = 2).await;
    w.add_tasks("j", &["t1", "t2", "t3", "t4", "t5"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 2);
    let l = a.launches();
    assert_eq!(ids(&l), ["t1", "t2"]);
    assert_eq!(w.round().await, 0, "two free slots stay free under the cap");
    assert!(a.launches().is_empty());
    a.run(&w, l[0].attempt, 0).await;
    assert_eq!(w.task_state("j", "t1").await, TaskState::Completed);
    assert_eq!(w.round().await, 1, "the finished task lets one more in");
    assert_eq!(ids(&a.launches()), ["t3"]);
    assert_eq!(load(&w, "n1"), (2, 2));
}

/// A node with scheduling disabled takes no tasks (even the one spread would
/// pick); enabled again, it does.
#[tokio::test]
async fn a_node_with_scheduling_disabled_takes_no_tasks() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    let mut a2 = w.join("p", "n2").await;
    w.cluster.set_scheduling("p", "n1", false).unwrap();
    w.add_tasks("j", &["t1"], |_| {}).await;
    assert_eq!(w.round().await, 1);
    assert!(a1.launches().is_empty(), "n1 (first by id) is disabled");
    assert_eq!(ids(&a2.launches()), ["t1"]);
    assert_eq!(node_of(&w, "j", "t1").await.as_deref(), Some("n2"));
    // More tasks: n2's queue, never n1.
    w.add_tasks("j", &["t2"], |_| {}).await;
    w.round().await;
    assert!(a1.launches().is_empty());
    assert_eq!(w.task_state("j", "t2").await, TaskState::Active, "queued on n2");
    w.cluster.set_scheduling("p", "n1", true).unwrap();
    w.add_tasks("j", &["t3"], |_| {}).await;
    w.round().await;
    assert_eq!(ids(&a1.launches()), ["t3"], "enabled again, n1 takes the next task");
    assert_eq!(node_of(&w, "j", "t3").await.as_deref(), Some("n1"));
    assert_eq!(w.task_state("j", "t3").await, TaskState::Preparing);
}

/// Disabling scheduling on a node takes back the attempts queued on it: the
/// agent is told to drop them and their tasks stay `active` for another node.
#[tokio::test]
async fn disabling_scheduling_takes_back_the_nodes_queue() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1", "t2", "t3"], |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    w.round().await;
    let l = a1.launches();
    assert_eq!(ids(&l), ["t1", "t2", "t3"], "one placed, two queued");
    w.cluster.set_scheduling("p", "n1", false).unwrap();
    let mut killed = a1.kills();
    killed.sort();
    assert_eq!(killed, [l[1].attempt, l[2].attempt], "the queued attempts are dropped, the running one stays");
    assert_eq!(load(&w, "n1"), (1, 1));
    let mut a2 = w.join("p", "n2").await;
    w.round().await;
    assert_eq!(ids(&a2.launches()), ["t2", "t3"], "n2 takes them");
    assert_eq!(node_of(&w, "j", "t2").await.as_deref(), Some("n2"));
    assert!(a1.launches().is_empty());
}

/// affinityInfo (`TVM:<node>`) sends a task to that node while it has room,
/// against the fill type; a full affinity node does not hold the task back.
#[tokio::test]
async fn affinity_prefers_its_node_while_it_has_room() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    let mut a2 = w.join("p", "n2").await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    w.round().await;
    assert_eq!(node_of(&w, "j", "t1").await.as_deref(), Some("n1"), "spread's tie goes to the lowest id");
    // Spread would pick the idle n2; affinity says n1.
    let to_n1 = |t: &mut wire::models::CloudTask| t.affinity_info = Some(AffinityInformation { affinity_id: "TVM:n1".into() });
    w.add_tasks("j", &["t2"], to_n1).await;
    w.round().await;
    assert_eq!(node_of(&w, "j", "t2").await.as_deref(), Some("n1"));
    assert_eq!(load(&w, "n1"), (2, 2));
    // n1 is full now: the next task with the same affinity runs on n2.
    w.add_tasks("j", &["t3"], to_n1).await;
    w.round().await;
    assert_eq!(node_of(&w, "j", "t3").await.as_deref(), Some("n2"));
    assert_eq!(w.task_state("j", "t3").await, TaskState::Preparing);
    assert_eq!(ids(&a1.launches()), ["t1", "t2"]);
    assert_eq!(ids(&a2.launches()), ["t3"]);
}

/// The job manager task starts before the job's other tasks, whatever its id.
#[tokio::test]
async fn the_job_manager_starts_before_the_other_tasks() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |j| j.job_manager_task = Some(manager("zz-manager", Some(false)))).await;
    w.add_tasks("j", &["a", "b", "zz-manager"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let l = a.launches();
    assert_eq!(l.first().map(|l| l.task_id.as_str()), Some("zz-manager"));
    assert_eq!(w.task_state("j", "zz-manager").await, TaskState::Preparing, "it holds the only slot");
    assert_eq!(w.task_state("j", "a").await, TaskState::Active);
    assert_eq!(w.task_state("j", "b").await, TaskState::Active);
}

/// An exclusive job manager (runExclusive's default) holds a whole node: the
/// job's other tasks run elsewhere.
#[tokio::test]
async fn an_exclusive_job_manager_takes_a_whole_node() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("j", "p", |j| j.job_manager_task = Some(manager("jm", None))).await;
    w.add_tasks("j", &["a", "b", "jm"], |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    let mut a2 = w.join("p", "n2").await;
    w.round().await;
    let (l1, l2) = (a1.launches(), a2.launches());
    let jm = l1.iter().chain(&l2).find(|l| l.task_id == "jm").expect("the manager is sent");
    assert_eq!(jm.slots, 2, "every slot of its node");
    let jm_node = node_of(&w, "j", "jm").await.expect("assigned");
    let other = if jm_node == "n1" { "n2" } else { "n1" };
    assert_eq!(w.cluster.running_on(&jm_node).len(), 1, "nothing else runs beside the manager");
    assert_eq!(load(&w, &jm_node), (1, 2));
    assert_eq!(node_of(&w, "j", "a").await.as_deref(), Some(other));
    assert_eq!(node_of(&w, "j", "b").await.as_deref(), Some(other));
}

/// With every slot taken, further tasks go to the node's queue — at most
/// QUEUE_PER_SLOT (4) per slot — sent to the agent but not assigned (still
/// `active`, no nodeInfo) until the agent reports Started or Preparing.
#[tokio::test]
async fn full_nodes_queue_tasks_unassigned_until_the_agent_takes_them() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let all = ["t0", "t1", "t2", "t3", "t4", "t5", "t6"];
    w.add_tasks("j", &all, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 5, "one placed, four queued");
    let l = a.launches();
    assert_eq!(ids(&l), ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(w.task_state("j", "t0").await, TaskState::Preparing);
    for t in &all[1..] {
        let task = w.task("j", t).await;
        assert_eq!(task.state, TaskState::Active, "{t} is not assigned yet");
        assert!(task.node_info.is_none(), "{t} has no nodeInfo yet");
    }
    assert_eq!(w.round().await, 0, "the queue is full: nothing more is sent");
    assert!(a.launches().is_empty());
    // The running task ends; the agent starts the next queued one by itself.
    a.run(&w, l[0].attempt, 0).await;
    a.started(&w, l[1].attempt);
    w.settle().await;
    let t1 = w.task("j", "t1").await;
    assert_eq!(t1.state, TaskState::Running, "Started writes the assignment and the state");
    assert_eq!(t1.node_info.and_then(|i| i.node_id).as_deref(), Some("n1"));
    // A queued task whose files are fetched first is `preparing` at once.
    w.cluster.on_report(&a.id, ToServer::Preparing { attempt: l[2].attempt }, || URL.to_string());
    w.settle().await;
    let t2 = w.task("j", "t2").await;
    assert_eq!(t2.state, TaskState::Preparing);
    assert_eq!(t2.node_info.and_then(|i| i.node_id).as_deref(), Some("n1"));
    assert_eq!(w.task_state("j", "t3").await, TaskState::Active, "still queued");
}

/// The queue's depth grows with the node's slots (QUEUE_PER_SLOT per slot).
#[tokio::test]
async fn queue_depth_is_four_per_slot() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let names: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    w.add_tasks("j", &refs, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 10, "2 placed + 2 × 4 queued");
    assert_eq!(a.launches().len(), 10);
    let mut preparing = 0;
    for t in &refs {
        if w.task_state("j", t).await == TaskState::Preparing {
            preparing += 1;
        }
    }
    assert_eq!(preparing, 2, "only the two placed are assigned");
}

/// A queued task does not wait behind a busy node while another node has a
/// free slot: it is taken back from the busy node and placed on the free one.
#[tokio::test]
async fn queued_tasks_move_to_a_node_with_a_free_slot() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1", "t2"], |_| {}).await;
    let mut a1 = w.join("p", "n1").await;
    w.round().await;
    let l = a1.launches();
    assert_eq!(ids(&l), ["t1", "t2"], "t2 queued on n1");
    let mut a2 = w.join("p", "n2").await;
    w.round().await;
    assert_eq!(a1.kills(), [l[1].attempt], "t2 is taken back from n1");
    assert_eq!(w.task_state("j", "t2").await, TaskState::Active);
    w.round().await;
    assert_eq!(ids(&a2.launches()), ["t2"]);
    assert_eq!(node_of(&w, "j", "t2").await.as_deref(), Some("n2"));
    assert_eq!(w.task_state("j", "t2").await, TaskState::Preparing);
}

/// A job on another pool gets nothing from a node, however idle.
#[tokio::test]
async fn a_job_of_another_pool_gets_no_slot() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.pool("q", 2, "spread").await;
    w.add_job("jq", "q", |_| {}).await;
    w.add_tasks("jq", &["t"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 0);
    assert!(a.launches().is_empty());
    assert_eq!(w.task_state("jq", "t").await, TaskState::Active);
    // A node of its own pool runs it.
    let mut b = w.join("q", "m1").await;
    assert_eq!(w.round().await, 1);
    assert_eq!(ids(&b.launches()), ["t"]);
    assert!(a.launches().is_empty());
}

/// Tasks of a disabled or terminated (completed) job are not placed; the
/// active job beside them is.
#[tokio::test]
async fn tasks_of_disabled_or_ended_jobs_are_not_placed() {
    let w = World::new().await;
    w.pool("p", 4, "spread").await;
    for j in ["off", "done", "on"] {
        w.add_job(j, "p", |_| {}).await;
        w.add_tasks(j, &["t"], |_| {}).await;
    }
    set_job_state(&w, "off", JobState::Disabled).await;
    set_job_state(&w, "done", JobState::Completed).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 1);
    let l = a.launches();
    assert_eq!(l.iter().map(|l| l.job_id.as_str()).collect::<Vec<_>>(), ["on"]);
    assert_eq!(w.task_state("off", "t").await, TaskState::Active);
    assert_eq!(w.task_state("done", "t").await, TaskState::Active);
    // Enabled again, its task runs.
    set_job_state(&w, "off", JobState::Active).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(a.launches().iter().map(|l| l.job_id.as_str()).collect::<Vec<_>>(), ["off"]);
    assert_eq!(w.task_state("off", "t").await, TaskState::Preparing);
}

/// A finished task frees its slot, and the next round gives it to a waiting
/// task (assigned at once, not queued).
#[tokio::test]
async fn a_finished_task_frees_its_slot_for_the_next_round() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let first = a.launches();
    assert_eq!(load(&w, "n1"), (1, 1));
    a.run(&w, first[0].attempt, 0).await;
    assert_eq!(w.task_state("j", "t1").await, TaskState::Completed);
    assert_eq!(load(&w, "n1"), (0, 0), "the slot is free");
    w.add_tasks("j", &["t2"], |_| {}).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(ids(&a.launches()), ["t2"]);
    assert_eq!(w.task_state("j", "t2").await, TaskState::Preparing, "placed in the freed slot, not queued");
    assert_eq!(load(&w, "n1"), (1, 1));
}

/// maxTaskRetryCount 1: a non-zero exit sends the task back to `active`
/// (retryCount 1) and it is placed again with a new attempt; the second
/// failure completes it with failure.
#[tokio::test]
async fn a_failed_task_is_retried_then_completes_with_failure() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t"], |t| t.constraints.max_task_retry_count = Some(1)).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let first = a.launches();
    assert_eq!(ids(&first), ["t"]);
    a.run(&w, first[0].attempt, 3).await;
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Active, "back for a retry");
    assert_eq!(t.execution_info.retry_count, 1);
    assert_eq!(t.execution_info.requeue_count, 0, "a retry is not a requeue");
    assert_eq!(load(&w, "n1"), (0, 0));
    assert_eq!(w.round().await, 1, "placed again");
    let second = a.launches();
    assert_eq!(ids(&second), ["t"]);
    assert_ne!(second[0].attempt, first[0].attempt, "a new attempt");
    assert_eq!(w.task_state("j", "t").await, TaskState::Preparing);
    a.run(&w, second[0].attempt, 3).await;
    let t = w.task("j", "t").await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.retry_count, 1);
    assert_eq!(t.execution_info.exit_code, Some(3));
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    assert_eq!(t.execution_info.failure_info.and_then(|f| f.code).as_deref(), Some("FailureExitCode"));
    assert_eq!(w.round().await, 0, "not placed a third time");
}

/// A task taken back by `retract_task` (terminated or deleted while queued)
/// is dropped by the agent and never assigned.
#[tokio::test]
async fn retract_task_takes_back_a_queued_attempt() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1", "t2", "t3"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let l = a.launches();
    assert_eq!(ids(&l), ["t1", "t2", "t3"]);
    w.cluster.retract_task("j", "T2");
    assert_eq!(a.kills(), [l[1].attempt], "only t2's attempt (ids match case-insensitively)");
    // A late Started of the dropped attempt assigns nothing.
    a.started(&w, l[1].attempt);
    w.settle().await;
    let t2 = w.task("j", "t2").await;
    assert_eq!(t2.state, TaskState::Active);
    assert!(t2.node_info.is_none());
    // t3 is still queued: it runs when the agent starts it.
    a.run(&w, l[0].attempt, 0).await;
    a.started(&w, l[2].attempt);
    w.settle().await;
    assert_eq!(w.task_state("j", "t3").await, TaskState::Running);
}

/// `jobDefaultOrder: creationtime`: tasks of equal-priority jobs start in
/// the order their jobs were created (not by id): the older job's tasks
/// take the slot and the queue before the newer job's.
#[tokio::test]
async fn creationtime_starts_the_older_jobs_tasks_first() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"taskSchedulingPolicy": {"nodeFillType": "spread", "jobDefaultOrder": "creationtime"}})).await;
    w.add_job("older", "p", |_| {}).await;
    w.add_job("a-newer", "p", |_| {}).await;
    w.add_tasks("a-newer", &["n1", "n2", "n3"], |_| {}).await;
    w.add_tasks("older", &["o1", "o2", "o3"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 5, "one slot and a queue of four");
    let l = a.launches();
    let order: Vec<(&str, &str)> = l.iter().map(|l| (l.job_id.as_str(), l.task_id.as_str())).collect();
    assert_eq!(order, [("older", "o1"), ("older", "o2"), ("older", "o3"), ("a-newer", "n1"), ("a-newer", "n2")]);
    assert_eq!(w.cluster.running_on("n1")[0].1.job_id, "older");
    // As slots free, the older job's queued tasks go on before the newer job's.
    a.run(&w, l[0].attempt, 0).await;
    a.started(&w, l[1].attempt);
    w.settle().await;
    assert_eq!(w.task_state("older", "o2").await, TaskState::Running);
    assert_eq!(w.task_state("a-newer", "n1").await, TaskState::Active);
}

/// `jobDefaultOrder: none` (the default): the service schedules "uniformly
/// from all equal-priority jobs": a round shares the free slots (and queue
/// places) evenly between them, and a job with fewer tasks in the pool is
/// offered a freed slot first. A higher priority still goes first.
#[tokio::test]
async fn none_shares_the_pool_evenly_between_equal_priority_jobs() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("first", "p", |_| {}).await;
    w.add_job("second", "p", |_| {}).await;
    w.add_tasks("first", &["f1", "f2", "f3", "f4", "f5", "f6"], |_| {}).await;
    w.add_tasks("second", &["s1", "s2", "s3", "s4", "s5", "s6"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let mut b = w.join("p", "n2").await;
    // Two nodes of two slots: four slots and sixteen queue places.
    assert_eq!(w.round().await, 12, "every ready task is placed or queued");
    let running: Vec<String> = ["n1", "n2"].iter().flat_map(|n| w.cluster.running_on(n)).map(|(_, s)| s.job_id).collect();
    assert_eq!(running.iter().filter(|j| *j == "first").count(), 2, "{running:?}");
    assert_eq!(running.iter().filter(|j| *j == "second").count(), 2, "{running:?}");
    let (la, lb) = (a.launches(), b.launches());
    assert_eq!(la.len() + lb.len(), 12);

    // With one slot to give, the job with fewer tasks in the pool gets it.
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("first", "p", |_| {}).await;
    w.add_job("second", "p", |_| {}).await;
    w.add_job("urgent", "p", |j| j.priority = 10).await;
    w.add_tasks("first", &["f1", "f2"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 2);
    let l = a.launches();
    a.started(&w, l[0].attempt);
    a.started(&w, l[1].attempt); // (the queued one ran too: slot use is the agent's)
    w.add_tasks("first", &["f3", "f4"], |_| {}).await;
    w.add_tasks("second", &["s1"], |_| {}).await;
    w.add_tasks("urgent", &["u1"], |_| {}).await;
    assert_eq!(w.round().await, 4, "the queue's four places");
    let order: Vec<String> = a.launches().iter().map(|l| l.task_id.clone()).collect();
    // The higher priority first; then `second` (nothing in the pool) before
    // `first` (two tasks running), though `first` is older.
    assert_eq!(order, ["u1", "s1", "f3", "f4"]);
}

/// The order of a round's offers (`job_order`), without a cluster.
#[test]
fn job_order_with_and_without_creationtime() {
    let mk = |id: &str, priority: i32| {
        let mut j = job(id, "p");
        j.priority = priority;
        j
    };
    let jobs = vec![mk("hi", 5), mk("a", 0), mk("b", 0), mk("c", 0)];
    let running: std::collections::HashMap<String, usize> = [("a".to_string(), 3), ("b".to_string(), 1)].into();
    let ids = |o: Vec<(&wire::models::CloudJob, usize)>| o.into_iter().map(|(j, s)| (j.id.clone(), s)).collect::<Vec<_>>();
    let by_creation = ids(control::scheduler::job_order(&jobs, true, 6, &running));
    assert_eq!(by_creation.iter().map(|(j, _)| j.as_str()).collect::<Vec<_>>(), ["hi", "a", "b", "c"]);
    assert!(by_creation.iter().all(|(_, s)| *s == usize::MAX));
    let even = ids(control::scheduler::job_order(&jobs, false, 6, &running));
    let expect: Vec<(String, usize)> =
        [("hi", usize::MAX), ("c", 2), ("b", 2), ("a", 2), ("c", usize::MAX), ("b", usize::MAX), ("a", usize::MAX)]
            .iter()
            .map(|(j, s)| (j.to_string(), *s))
            .collect();
    assert_eq!(even, expect);
}

/// A job may name a pool that does not exist yet: it is stored, its tasks
/// wait, and once a pool of that id exists and a node joins, they run.
#[tokio::test]
async fn a_job_on_a_pool_that_does_not_exist_yet_runs_once_it_does() {
    let w = World::new().await;
    w.add_job("j", "later", |_| {}).await;
    w.add_tasks("j", &["t"], |_| {}).await;
    w.pool("p", 1, "spread").await;
    let mut other = w.join("p", "n0").await;
    assert_eq!(w.round().await, 0, "a node of another pool takes nothing");
    assert!(other.launches().is_empty());
    w.pool("later", 1, "spread").await;
    let mut a = w.join("later", "n1").await;
    assert_eq!(w.round().await, 1);
    assert_eq!(ids(&a.launches()), ["t"]);
    assert_eq!(node_of(&w, "j", "t").await.as_deref(), Some("n1"));
}

/// `onAllTasksComplete: terminatejob` on a job with no tasks: all its tasks
/// count as complete, so it ends at once (`AllTasksComplete`), as the
/// service documents; one with a job manager task waits for that task.
#[tokio::test]
async fn an_empty_terminatejob_job_completes_at_once() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    let mut j = job("empty", "p");
    j.on_all_tasks_complete = wire::enums::OnAllTasksComplete::TerminateJob;
    control::jobs::add(&w.cluster, j).await.unwrap();
    let mut m = job("managed", "p");
    m.on_all_tasks_complete = wire::enums::OnAllTasksComplete::TerminateJob;
    m.job_manager_task = Some(manager("jm", None));
    control::jobs::add(&w.cluster, m).await.unwrap();
    let mut n = job("noaction", "p");
    n.on_all_tasks_complete = wire::enums::OnAllTasksComplete::NoAction;
    control::jobs::add(&w.cluster, n).await.unwrap();
    control::transitions::step(&w.cluster, std::time::Duration::ZERO, false).await.unwrap();
    let e = w.job("empty").await;
    assert_eq!(e.state, JobState::Terminating);
    assert_eq!(e.execution_info.terminate_reason.as_deref(), Some("AllTasksComplete"));
    control::transitions::step(&w.cluster, std::time::Duration::ZERO, true).await.unwrap();
    assert_eq!(w.job("empty").await.state, JobState::Completed);
    assert_eq!(w.job("managed").await.state, JobState::Active, "its job manager task is not complete");
    assert_eq!(w.job("noaction").await.state, JobState::Active);
}

/// Holds the store's answers to one kind of call back until released, and
/// records the order in which calls were answered.
#[derive(Clone, Default)]
struct Gate {
    armed: Arc<std::sync::Mutex<Option<&'static str>>>,
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    answered: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl Gate {
    fn hook(&self) -> store::hooked::Hook {
        let g = self.clone();
        Arc::new(move |name: &'static str| {
            let g = g.clone();
            Box::pin(async move {
                g.answered.lock().unwrap().push(name);
                let hold = {
                    let mut armed = g.armed.lock().unwrap();
                    let hit = *armed == Some(name);
                    if hit {
                        *armed = None; // once
                    }
                    hit
                };
                if hold {
                    g.reached.notify_one();
                    g.release.notified().await;
                }
            })
        })
    }
}

/// A read-ahead that read the job's tasks while an assignment was still
/// being written saw that task as `active`; if it is answered only after
/// the assignment committed (and the task left the in-flight set), the
/// task must still not start a second time.
#[tokio::test]
async fn a_read_that_saw_a_task_before_its_assignment_committed_does_not_start_it_again() {
    for _ in 0..5 {
        let gate = Gate::default();
        let w = World::with_hook(gate.hook()).await;
        w.pool("p", 2, "spread").await;
        w.add_job("j", "p", |_| {}).await;
        // `a` takes one of the node's two slots; `b` needs both, so it waits
        // (in the read-ahead) and leaves a slot free for a second start.
        w.add_tasks("j", &["a"], |_| {}).await;
        w.add_tasks("j", &["b"], |t| t.required_slots = 2).await;
        let mut agent = w.join("p", "n1").await;
        gate.answered.lock().unwrap().clear();
        // Round 1 places `a`; its assignment is queued (relaxed: it lingers
        // for company before committing).
        assert_eq!(w.cluster.schedule(URL, std::time::Instant::now()).await.unwrap(), 1);
        // Round 2 must read again (the generation moved) while that write is
        // in flight; its answer is held until the write has committed.
        *gate.armed.lock().unwrap() = Some("ready_tasks");
        w.store.bump_tasks();
        let c = w.cluster.clone();
        let round2 = tokio::spawn(async move { c.schedule(URL, std::time::Instant::now()).await.unwrap() });
        gate.reached.notified().await;
        for _ in 0..100 {
            if w.task_state("j", "a").await == TaskState::Preparing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.settle().await; // the round's own bookkeeping after the commit
        gate.release.notify_one();
        let started_again = round2.await.unwrap();
        w.settle().await;
        // Valid only if the read was answered before the assignment's write.
        let order = gate.answered.lock().unwrap().clone();
        let read = order.iter().position(|n| *n == "ready_tasks");
        let write = order.iter().position(|n| *n == "update_tasks");
        if !matches!((read, write), (Some(r), Some(u)) if r < u) {
            continue; // the write committed first this time: no race to check
        }
        let starts: Vec<String> = agent.launches().into_iter().map(|l| l.task_id).collect();
        assert_eq!(starts, vec!["a".to_string()], "a starts once; b does not fit");
        assert_eq!(started_again, 0);
        return;
    }
    panic!("the read never overtook the assignment's write");
}
