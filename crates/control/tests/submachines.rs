//! The control plane's sub-machines, driven through its entry points with
//! fake agents: multi-instance runs, job preparation and release, the pool's
//! start task, and what a completed attempt sets off (the job manager ending
//! its job, exit conditions' job actions, the node's counters).

mod support;
use support::*;

use proto::{TaskLaunch, ToAgent, ToServer};
use serde_json::{json, Value};
use wire::enums::{ComputeNodeState, JobState, OnTaskFailure, TaskState};
use wire::models::{CloudJob, CloudTask};

/// A wire model from its JSON form (the models have no `Default`).
fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid model")
}

fn node_state(w: &World, pool: &str, node: &str) -> ComputeNodeState {
    w.cluster.node(pool, node, |n| n.state).expect("the node is registered")
}

/// The launch's value of an environment variable.
fn env<'a>(l: &'a TaskLaunch, name: &str) -> Option<&'a str> {
    l.env.get(name).map(String::as_str)
}

/// A task that runs on `numberOfInstances` nodes, coordinated by `coord`.
fn multi(n: i32, retries: i32) -> impl Fn(&mut CloudTask) {
    move |t: &mut CloudTask| {
        t.command_line = "app".into();
        t.multi_instance_settings = Some(from(json!({"numberOfInstances": n, "coordinationCommandLine": "coord"})));
        t.constraints.max_task_retry_count = Some(retries);
    }
}

/// The single launch an agent was sent since the last look.
fn one(a: &mut Agent) -> TaskLaunch {
    let mut ls = a.launches();
    assert_eq!(ls.len(), 1, "{} expected exactly one launch, got {:?}", a.id, ls.iter().map(|l| &l.command_line).collect::<Vec<_>>());
    ls.pop().unwrap()
}

/// The job's `jobpreparationandreleasetaskstatus` item for a node.
fn prep_status(w: &World, job: &str, node: &str) -> Option<Value> {
    w.cluster.prep_release_status(job, URL).into_iter().find(|i| i["nodeId"] == node)
}

// ---------------------------------------------------------------- multi-instance

/// A multi-instance task takes one slot on each of N distinct nodes: every
/// instance runs the coordination command first, the primary then runs the
/// task's command line as the task's attempt, and the task completes with
/// its subtasks recorded; subtasks hold their node until the primary ends.
#[tokio::test]
async fn multi_instance_runs_coordination_on_n_nodes_then_the_primary_runs_the_task() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["mpi"], multi(3, 0)).await;
    let mut agents = [w.join("p", "n1").await, w.join("p", "n2").await, w.join("p", "n3").await];
    assert_eq!(w.round().await, 1, "one task placed");
    let coord: Vec<TaskLaunch> = agents.iter_mut().map(one).collect();
    for l in &coord {
        assert_eq!(l.command_line, "coord");
        assert_eq!((l.job_id.as_str(), l.task_id.as_str()), ("j", "mpi"));
        assert!(l.background, "coordination commands run in the background");
    }
    let masters: Vec<usize> = (0..3).filter(|&i| env(&coord[i], "AZ_BATCH_IS_CURRENT_NODE_MASTER") == Some("true")).collect();
    assert_eq!(masters, vec![0], "exactly one primary, on the spread order's first node");
    let mut attempts: Vec<u64> = coord.iter().map(|l| l.attempt).collect();
    attempts.sort();
    attempts.dedup();
    assert_eq!(attempts.len(), 3, "each instance is an attempt of its own");
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Preparing);
    assert_eq!(t.node_info.as_ref().and_then(|i| i.node_id.as_deref()), Some("n1"), "the task is recorded on its primary");
    let task_attempt = t.attempt.expect("the task's attempt is written");
    assert!(!attempts.contains(&task_attempt), "the task's attempt is not an instance's");
    for n in ["n1", "n2", "n3"] {
        assert_eq!(node_state(&w, "p", n), ComputeNodeState::Running, "{n} holds an instance");
    }

    // The primary's coordination starting is the task running; a subtask's is not.
    agents[1].started(&w, coord[1].attempt);
    w.settle().await;
    assert_eq!(w.task_state("j", "mpi").await, TaskState::Preparing, "a subtask's start does not move the task");
    agents[0].started(&w, coord[0].attempt);
    w.settle().await;
    assert_eq!(w.task_state("j", "mpi").await, TaskState::Running);

    // Coordination ends on two nodes: nothing more yet.
    agents[0].finish(&w, coord[0].attempt, 0).await;
    agents[1].run(&w, coord[1].attempt, 0).await;
    assert!(agents.iter_mut().all(|a| a.launches().is_empty()), "the application waits for every instance");
    agents[2].run(&w, coord[2].attempt, 0).await;
    let app = one(&mut agents[0]);
    assert_eq!(app.command_line, "app", "the primary runs the task's command line");
    assert_eq!(app.attempt, task_attempt, "as the task's own attempt");
    assert_eq!(env(&app, "AZ_BATCH_IS_CURRENT_NODE_MASTER"), Some("true"));
    assert!(agents[1].launches().is_empty() && agents[2].launches().is_empty());
    for n in ["n2", "n3"] {
        assert_eq!(node_state(&w, "p", n), ComputeNodeState::Running, "a subtask keeps {n} until the primary ends");
    }

    agents[0].finish(&w, app.attempt, 0).await;
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.exit_code, Some(0));
    let subtasks = t.subtasks.expect("the subtasks are kept with the task");
    assert_eq!(subtasks.len(), 2, "instances 1..n-1 are subtasks");
    let mut nodes: Vec<&str> = subtasks.iter().map(|s| s["nodeInfo"]["nodeId"].as_str().unwrap()).collect();
    nodes.sort();
    assert_eq!(nodes, ["n2", "n3"]);
    for s in &subtasks {
        assert_eq!(s["state"], "completed");
        assert_eq!(s["result"], "success");
        assert_eq!(s["exitCode"], 0);
    }
    for n in ["n1", "n2", "n3"] {
        assert_eq!(node_state(&w, "p", n), ComputeNodeState::Idle, "{n}'s slot is free again");
    }
}

/// A multi-instance task is not placed at all (no node hears of it) while
/// fewer than N nodes have a free slot — too few nodes, or one busy — and is
/// placed on all N as soon as they do.
#[tokio::test]
async fn multi_instance_waits_until_n_nodes_have_a_free_slot() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let mut n1 = w.join("p", "n1").await;
    let mut n2 = w.join("p", "n2").await;
    w.add_tasks("j", &["busy"], |_| {}).await;
    assert_eq!(w.round().await, 1);
    let busy = one(&mut n1);
    assert_eq!(busy.task_id, "busy");
    w.add_tasks("j", &["mpi"], multi(3, 0)).await;
    assert_eq!(w.round().await, 0, "two nodes for three instances");
    assert!(n1.launches().is_empty() && n2.launches().is_empty());
    let mut n3 = w.join("p", "n3").await;
    assert_eq!(w.round().await, 0, "three nodes, but n1 has no free slot");
    assert!(n1.launches().is_empty() && n2.launches().is_empty() && n3.launches().is_empty());
    assert_eq!(w.task_state("j", "mpi").await, TaskState::Active);
    assert_eq!(node_state(&w, "p", "n2"), ComputeNodeState::Idle, "no instance holds a slot while the task waits");

    n1.run(&w, busy.attempt, 0).await;
    assert_eq!(w.round().await, 1);
    for a in [&mut n1, &mut n2, &mut n3] {
        let l = one(a);
        assert_eq!((l.task_id.as_str(), l.command_line.as_str()), ("mpi", "coord"));
    }
    assert_eq!(w.task_state("j", "mpi").await, TaskState::Preparing);
}

/// When one instance fails, the others are killed, the whole attempt fails
/// with that instance's exit code, and (maxTaskRetryCount 1) the task runs
/// again on N nodes; late outcomes of the killed instances change nothing.
#[tokio::test]
async fn multi_instance_failure_kills_the_others_and_retries_the_whole_task() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["mpi"], multi(3, 1)).await;
    let mut agents = [w.join("p", "n1").await, w.join("p", "n2").await, w.join("p", "n3").await];
    assert_eq!(w.round().await, 1);
    let coord: Vec<TaskLaunch> = agents.iter_mut().map(one).collect();
    agents[0].started(&w, coord[0].attempt);
    agents[2].started(&w, coord[2].attempt);
    w.settle().await;

    agents[1].run(&w, coord[1].attempt, 7).await;
    assert_eq!(agents[0].kills(), vec![coord[0].attempt], "the primary's instance is killed");
    assert_eq!(agents[2].kills(), vec![coord[2].attempt], "the other subtask is killed");
    assert!(agents[1].kills().is_empty(), "the failed instance is not");
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Active, "retried");
    assert_eq!(t.execution_info.retry_count, 1);
    assert_eq!(t.execution_info.exit_code, Some(7), "the failing instance's exit code");
    assert_eq!(t.execution_info.failure_info.as_ref().and_then(|f| f.code.as_deref()), Some("FailureExitCode"));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(node_state(&w, "p", n), ComputeNodeState::Idle, "{n}'s slot is freed");
    }

    // The killed instances report late: nothing changes.
    agents[0].finish(&w, coord[0].attempt, 137).await;
    agents[2].finish(&w, coord[2].attempt, 137).await;
    let t = w.task("j", "mpi").await;
    assert_eq!((t.state, t.execution_info.retry_count), (TaskState::Active, 1));

    // The retry: new instances on all three nodes, and this time it succeeds.
    assert_eq!(w.round().await, 1);
    let again: Vec<TaskLaunch> = agents.iter_mut().map(one).collect();
    for (l, old) in again.iter().zip(&coord) {
        assert_eq!(l.command_line, "coord");
        assert_ne!(l.attempt, old.attempt, "a new attempt");
    }
    for (a, l) in agents.iter().zip(&again) {
        a.run(&w, l.attempt, 0).await;
    }
    let app = one(&mut agents[0]);
    assert_eq!(app.command_line, "app");
    agents[0].run(&w, app.attempt, 0).await;
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.retry_count, 1);
    assert_eq!(t.execution_info.result, Some(wire::enums::ExecutionResult::Success));
}

/// Without retries, a failing instance completes the task as failed; the
/// subtasks recorded say which instance failed and that the other ended.
#[tokio::test]
async fn multi_instance_failure_without_retries_completes_the_task_with_its_subtasks() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["mpi"], multi(3, 0)).await;
    let mut agents = [w.join("p", "n1").await, w.join("p", "n2").await, w.join("p", "n3").await];
    assert_eq!(w.round().await, 1);
    let coord: Vec<TaskLaunch> = agents.iter_mut().map(one).collect();
    agents[2].run(&w, coord[2].attempt, 3).await;
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(wire::enums::ExecutionResult::Failure));
    assert_eq!(t.execution_info.exit_code, Some(3));
    let subtasks = t.subtasks.expect("recorded");
    assert_eq!(subtasks.len(), 2);
    let on = |n: &str| subtasks.iter().find(|s| s["nodeInfo"]["nodeId"] == n).cloned().expect("a subtask on the node");
    assert_eq!(on("n3")["result"], "failure");
    assert_eq!(on("n3")["exitCode"], 3);
    assert_eq!(on("n3")["failureInfo"]["code"], "FailureExitCode");
    assert_eq!(on("n2")["state"], "completed", "the killed subtask ended too");
    assert!(on("n2").get("exitCode").is_none(), "it never reported an exit code");
    assert_eq!(on("n2")["result"], "failure", "a stopped subtask did not succeed");
    assert_eq!(on("n2")["failureInfo"]["code"], "TaskEnded");
    assert_eq!(w.round().await, 0, "nothing runs again");
    assert!(agents.iter_mut().all(|a| a.launches().is_empty()));
}

/// A node holding a subtask is lost (silent past `NODE_LOST_AFTER`): the
/// whole attempt is lost — the other instances are killed and the task is
/// requeued (requeueCount, not retryCount) — and it runs again once N nodes
/// are there.
#[tokio::test]
async fn a_lost_subtask_node_requeues_the_multi_instance_task() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["mpi"], multi(3, 0)).await;
    let mut agents = vec![w.join("p", "n1").await, w.join("p", "n2").await, w.join("p", "n3").await];
    assert_eq!(w.round().await, 1);
    let coord: Vec<TaskLaunch> = agents.iter_mut().map(one).collect();
    agents[0].started(&w, coord[0].attempt);
    // n3 goes silent; n1 and n2 are heard from later.
    w.cluster.heartbeat("n3");
    let silent_since = std::time::Instant::now();
    w.settle().await;
    w.cluster.heartbeat("n1");
    w.cluster.heartbeat("n2");
    w.cluster.check_liveness(silent_since + control::NODE_LOST_AFTER + std::time::Duration::from_millis(50)).await;
    w.settle().await;
    assert_eq!(node_state(&w, "p", "n3"), ComputeNodeState::Unknown);
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Idle, "n1 is heard from, its instance stopped");
    assert!(agents[0].kills().contains(&coord[0].attempt));
    assert_eq!(agents[1].kills(), vec![coord[1].attempt]);
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Active);
    assert_eq!((t.execution_info.requeue_count, t.execution_info.retry_count), (1, 0));
    assert_eq!(w.round().await, 0, "two nodes are left for three instances");

    let n3 = w.join("p", "n3").await;
    assert_eq!(w.round().await, 1);
    agents.push(n3); // n3's new agent (its first one, agents[2], is gone)
    for i in [0, 1, 3] {
        assert_eq!(one(&mut agents[i]).command_line, "coord");
    }
}

/// A subtask's agent reconnects (same boot) without the instance: the
/// attempt is lost as with a lost node — the task is requeued and the other
/// instances freed — rather than waiting for an outcome that never comes.
#[tokio::test]
async fn a_subtask_node_that_reconnects_without_its_instance_requeues_the_task() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["mpi"], multi(2, 0)).await;
    let mut n1 = w.join("p", "n1").await;
    let n2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 1);
    let c1 = one(&mut n1);
    n1.run(&w, c1.attempt, 0).await;
    n2.disconnect(&w);
    let mut n2 = w.join("p", "n2").await;
    w.settle().await;
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Active, "requeued");
    assert_eq!(t.execution_info.requeue_count, 1);
    assert!(n1.kills().contains(&c1.attempt), "the primary's instance is stopped");
    assert_eq!(w.round().await, 1, "both nodes are free again");
    assert_eq!(one(&mut n1).command_line, "coord");
    assert_eq!(one(&mut n2).command_line, "coord");
}

/// A subtask's agent reconnects still running its instance: the run is not
/// left half-aborted — the task is requeued and runs again on both nodes.
#[tokio::test]
async fn a_subtask_node_that_reconnects_with_its_instance_running_does_not_strand_the_task() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["mpi"], multi(2, 0)).await;
    let mut n1 = w.join("p", "n1").await;
    let mut n2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 1);
    let (c1, c2) = (one(&mut n1), one(&mut n2));
    n1.started(&w, c1.attempt);
    n2.started(&w, c2.attempt);
    w.settle().await;
    n2.disconnect(&w);
    let mut h = hello("p", "n2");
    h.running = vec![c2.attempt];
    let mut n2 = w.join_with(h).await;
    w.settle().await;
    assert!(n2.kills().contains(&c2.attempt), "the instance is stopped");
    // Its outcome, and the primary's, follow the kill: nothing is recorded.
    n2.finish(&w, c2.attempt, 137).await;
    n1.finish(&w, c1.attempt, 137).await;
    let t = w.task("j", "mpi").await;
    assert_eq!(t.state, TaskState::Active, "requeued, not stuck");
    assert_eq!((t.execution_info.requeue_count, t.execution_info.retry_count), (1, 0));
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut n1).command_line, "coord");
    assert_eq!(one(&mut n2).command_line, "coord");
}

// ---------------------------------------------------------------- job preparation and release

fn with_prep(j: &mut CloudJob) {
    j.job_preparation_task = Some(from(json!({"commandLine": "prep"})));
    j.job_release_task = Some(from(json!({"commandLine": "release"})));
}

/// The job's preparation task runs on a node before the job's first task
/// there, and the task goes to the node only once preparation succeeded.
#[tokio::test]
async fn job_preparation_runs_before_the_first_task_on_a_node() {
    let w = World::new().await;
    w.pool("p", 2, "spread").await;
    w.add_job("j", "p", with_prep).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 0, "the task waits for the preparation");
    let prep = one(&mut a);
    assert_eq!((prep.task_id.as_str(), prep.command_line.as_str()), ("jobpreparation", "prep"));
    assert_eq!(w.task_state("j", "t1").await, TaskState::Active);
    assert_eq!(prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"]["state"], "running");

    assert_eq!(w.round().await, 0, "still preparing");
    assert!(a.launches().is_empty(), "the preparation is not started twice, the task not sent");

    a.run(&w, prep.attempt, 0).await;
    let info = prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"].clone();
    assert_eq!((info["state"].as_str(), info["result"].as_str()), (Some("completed"), Some("success")));
    assert_eq!(w.task_state("j", "t1").await, TaskState::Active, "a preparation's outcome is not a task's");
    assert_eq!(w.round().await, 1);
    let t1 = one(&mut a);
    assert_eq!(t1.task_id, "t1");
    assert!(env(&t1, "AZ_BATCH_JOB_PREP_DIR").is_some_and(|d| d.ends_with("/jobpreparation")));
    assert_eq!(w.task_state("j", "t1").await, TaskState::Preparing);
}

/// A node that ran the job's preparation does not run it again for the
/// job's next task.
#[tokio::test]
async fn a_prepared_node_takes_the_jobs_next_task_without_preparing_again() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", with_prep).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let prep = one(&mut a);
    a.run(&w, prep.attempt, 0).await;
    w.round().await;
    let t1 = one(&mut a);
    a.run(&w, t1.attempt, 0).await;
    assert_eq!(w.task_state("j", "t1").await, TaskState::Completed);

    w.add_tasks("j", &["t2"], |_| {}).await;
    assert_eq!(w.round().await, 1);
    let t2 = one(&mut a);
    assert_eq!(t2.task_id, "t2", "no preparation first");
    let info = prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"].clone();
    assert_eq!(info["retryCount"], 0);
    assert_eq!(info["result"], "success");
}

/// A failed preparation (waitForSuccess by default, no retries) keeps the
/// job's tasks off that node; a node where it succeeded takes them all.
#[tokio::test]
async fn failed_job_preparation_keeps_the_jobs_tasks_off_the_node() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", with_prep).await;
    w.add_tasks("j", &["t1", "t2"], |_| {}).await;
    let mut n1 = w.join("p", "n1").await;
    let mut n2 = w.join("p", "n2").await;
    assert_eq!(w.round().await, 0);
    let (p1, p2) = (one(&mut n1), one(&mut n2));
    assert_eq!((p1.task_id.as_str(), p2.task_id.as_str()), ("jobpreparation", "jobpreparation"));

    n1.run(&w, p1.attempt, 1).await;
    assert!(n1.launches().is_empty(), "no retry without maxTaskRetryCount");
    let info = prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"].clone();
    assert_eq!(info["result"], "failure");
    assert_eq!(info["failureInfo"]["code"], "FailureExitCode");
    assert_eq!(w.round().await, 0, "n1 failed, n2 still prepares");
    assert!(n1.launches().is_empty());

    n2.run(&w, p2.attempt, 0).await;
    assert_eq!(w.round().await, 2, "both tasks go to n2 (one runs, one waits in its queue)");
    let mut on_n2: Vec<String> = n2.launches().into_iter().map(|l| l.task_id).collect();
    on_n2.sort();
    assert_eq!(on_n2, ["t1", "t2"]);
    assert!(n1.launches().is_empty(), "the node whose preparation failed gets none of the job's tasks");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Idle, "the node itself is fine");
    assert_eq!(w.round().await, 0);
    assert!(n1.launches().is_empty());
}

/// A failed preparation runs again while its maxTaskRetryCount allows, and
/// the node takes the job's tasks once a retry succeeded.
#[tokio::test]
async fn failed_job_preparation_is_retried_within_its_retry_count() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |j| {
        j.job_preparation_task = Some(from(json!({"commandLine": "prep", "constraints": {"maxTaskRetryCount": 1}})));
    })
    .await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let first = one(&mut a);
    a.run(&w, first.attempt, 1).await;
    let retry = one(&mut a);
    assert_eq!((retry.task_id.as_str(), retry.command_line.as_str()), ("jobpreparation", "prep"));
    assert_ne!(retry.attempt, first.attempt);
    assert_eq!(prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"]["retryCount"], 1);
    assert_eq!(w.round().await, 0, "not while the retry runs");
    assert!(a.launches().is_empty());
    a.run(&w, retry.attempt, 0).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
}

/// When the job ends, its release task runs once on each node that ran its
/// preparation task, and on no other node.
#[tokio::test]
async fn job_release_runs_once_on_each_node_that_prepared_the_job() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", with_prep).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut n1 = w.join("p", "n1").await;
    let mut n2 = w.join("p", "n2").await;
    w.round().await;
    let (p1, p2) = (one(&mut n1), one(&mut n2));
    n1.run(&w, p1.attempt, 0).await;
    n2.run(&w, p2.attempt, 0).await;
    assert_eq!(w.round().await, 1);
    let t1 = n1.launches().into_iter().chain(n2.launches()).find(|l| l.task_id == "t1").expect("t1 runs");
    let runs_on = w.task("j", "t1").await.node_info.and_then(|i| i.node_id).unwrap();
    let runner = if runs_on == "n1" { &n1 } else { &n2 };
    runner.run(&w, t1.attempt, 0).await;
    // A node that joins once the job has nothing left to run never prepares it.
    let mut n3 = w.join("p", "n3").await;
    assert_eq!(w.round().await, 0);
    assert!(n3.launches().is_empty());

    w.cluster.release_job(&w.job("j").await).await;
    let (r1, r2) = (one(&mut n1), one(&mut n2));
    for r in [&r1, &r2] {
        assert_eq!((r.task_id.as_str(), r.command_line.as_str()), ("jobrelease", "release"));
    }
    assert!(n3.launches().is_empty(), "n3 did not prepare the job");
    assert!(prep_status(&w, "j", "n3").is_none());
    w.cluster.release_job(&w.job("j").await).await;
    assert!(n1.launches().is_empty() && n2.launches().is_empty(), "release runs once per node");

    n1.run(&w, r1.attempt, 0).await;
    n2.run(&w, r2.attempt, 2).await;
    let rel = |n: &str| prep_status(&w, "j", n).unwrap()["jobReleaseTaskExecutionInfo"].clone();
    assert_eq!((rel("n1")["state"].as_str(), rel("n1")["result"].as_str()), (Some("completed"), Some("success")));
    assert_eq!((rel("n2")["result"].as_str(), rel("n2")["exitCode"].as_i64()), (Some("failure"), Some(2)));
    assert_eq!(
        prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"]["result"],
        "success",
        "the preparation's record stays"
    );
}

/// With waitForSuccess false the job's tasks go to a node while its
/// preparation runs (sent after it), and even after it failed.
#[tokio::test]
async fn job_preparation_without_wait_for_success_lets_tasks_run_meanwhile() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |j| j.job_preparation_task = Some(from(json!({"commandLine": "prep", "waitForSuccess": false})))).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 1);
    let ls = a.launches();
    let ids: Vec<&str> = ls.iter().map(|l| l.task_id.as_str()).collect();
    assert_eq!(ids, ["jobpreparation", "t1"], "the preparation first, the task at once");
    a.run(&w, ls[0].attempt, 1).await;
    a.run(&w, ls[1].attempt, 0).await;
    w.add_tasks("j", &["t2"], |_| {}).await;
    assert_eq!(w.round().await, 1, "a failed preparation does not hold the job's tasks back");
    assert_eq!(one(&mut a).task_id, "t2");
}

/// A preparation task still running when its node's agent reconnects
/// (same agent) runs on: it is not killed as an unknown attempt, and its
/// success lets the job's tasks onto the node.
#[tokio::test]
async fn a_job_preparation_running_across_a_reconnect_is_not_killed() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", with_prep).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let prep = one(&mut a);
    a.started(&w, prep.attempt);
    a.disconnect(&w);
    let mut h = hello("p", "n1");
    h.running = vec![prep.attempt];
    let mut a = w.join_with(h).await;
    w.settle().await;
    assert!(a.kills().is_empty(), "the preparation runs on");
    a.finish(&w, prep.attempt, 0).await;
    assert_eq!(prep_status(&w, "j", "n1").unwrap()["jobPreparationTaskExecutionInfo"]["result"], "success");
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
}

/// A preparation task lost with its agent (a new agent process, which does
/// not run it) runs again before the job's tasks go to the node, instead of
/// counting as running forever.
#[tokio::test]
async fn a_job_preparation_lost_with_its_agent_runs_again() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", with_prep).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let prep = one(&mut a);
    a.started(&w, prep.attempt);
    a.disconnect(&w);
    let mut h = hello("p", "n1");
    h.boot_id = "boot-n1-again".into();
    let mut a = w.join_with(h).await;
    assert_eq!(w.round().await, 0);
    let again = one(&mut a);
    assert_eq!(again.task_id, "jobpreparation", "the preparation runs again");
    assert_ne!(again.attempt, prep.attempt);
    a.run(&w, again.attempt, 0).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
}

// ---------------------------------------------------------------- start task

/// A joining node of a pool with a start task (waitForSuccess by default) is
/// `waitingforstarttask` and takes no task until the start task succeeds;
/// then it is `idle` and takes tasks.
#[tokio::test]
async fn start_task_holds_the_node_until_it_succeeds() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup"}})).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let st = one(&mut a);
    assert!(st.is_start_task);
    assert_eq!(st.command_line, "setup");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::WaitingForStartTask);
    assert_eq!(w.round().await, 0);
    assert!(a.launches().is_empty(), "no task while the start task runs");

    a.run(&w, st.attempt, 0).await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Idle);
    let info = w.cluster.node("p", "n1", |n| n.start_task_info.clone()).flatten().expect("start task info");
    assert_eq!((info["state"].as_str(), info["result"].as_str()), (Some("completed"), Some("success")));
    assert_eq!(w.task_state("j", "t1").await, TaskState::Active, "the start task's outcome is not a task's");
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Running);
}

/// A failed start task runs again while maxTaskRetryCount allows (the node
/// still waits); once its retries are spent the node is `starttaskfailed`
/// and takes no tasks.
#[tokio::test]
async fn failed_start_task_is_retried_then_the_node_is_starttaskfailed() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup", "maxTaskRetryCount": 1}})).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let first = one(&mut a);
    a.run(&w, first.attempt, 1).await;
    let retry = one(&mut a);
    assert!(retry.is_start_task);
    assert_ne!(retry.attempt, first.attempt);
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::WaitingForStartTask);
    let info = w.cluster.node("p", "n1", |n| n.start_task_info.clone()).flatten().unwrap();
    assert_eq!((info["state"].as_str(), info["retryCount"].as_i64()), (Some("running"), Some(1)));
    assert_eq!(w.round().await, 0);
    assert!(a.launches().is_empty());

    a.run(&w, retry.attempt, 1).await;
    assert!(a.launches().is_empty(), "no retry left");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::StartTaskFailed);
    let info = w.cluster.node("p", "n1", |n| n.start_task_info.clone()).flatten().unwrap();
    assert_eq!((info["state"].as_str(), info["result"].as_str()), (Some("completed"), Some("failure")));
    assert_eq!(info["failureInfo"]["code"], "FailureExitCode");
    assert_eq!(w.round().await, 0, "a node whose start task failed takes no tasks");
    assert!(a.launches().is_empty());
    assert_eq!(w.task_state("j", "t1").await, TaskState::Active);
}

/// With waitForSuccess false the node takes tasks while its start task runs,
/// and keeps taking them when it fails.
#[tokio::test]
async fn start_task_without_wait_for_success_lets_tasks_run_meanwhile() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup", "waitForSuccess": false}})).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let st = one(&mut a);
    assert!(st.is_start_task);
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Idle);
    assert_eq!(w.round().await, 1, "a task runs beside the start task");
    let t1 = one(&mut a);
    assert_eq!(t1.task_id, "t1");
    a.run(&w, st.attempt, 1).await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Running, "nothing waits for its success: t1 runs on");
    a.run(&w, t1.attempt, 0).await;
    assert_eq!(w.task_state("j", "t1").await, TaskState::Completed);
    w.add_tasks("j", &["t2"], |_| {}).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t2");
}

// ---------------------------------------------------------------- completion effects

fn manager(kill_job: Option<bool>) -> impl FnOnce(&mut CloudJob) {
    move |j: &mut CloudJob| {
        j.job_manager_task = Some(from(json!({"id": "jm", "commandLine": "manage", "killJobOnCompletion": kill_job})));
    }
}

/// A job manager task that completes ends its job (killJobOnCompletion by
/// default): the job is `terminating` with reason `JMComplete`.
#[tokio::test]
async fn a_completed_job_manager_ends_its_job() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", manager(None)).await;
    // The API adds the manager as the job's task; it starts before the others.
    w.add_tasks("j", &["a-task", "jm"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let ls = a.launches();
    assert_eq!(ls.first().map(|l| l.task_id.as_str()), Some("jm"), "the manager starts first");
    let jm = ls[0].clone();
    a.run(&w, jm.attempt, 0).await;
    assert_eq!(w.task_state("j", "jm").await, TaskState::Completed);
    let j = w.job("j").await;
    assert_eq!(j.state, JobState::Terminating);
    assert_eq!(j.execution_info.terminate_reason.as_deref(), Some("JMComplete"));
}

/// A job manager with killJobOnCompletion false leaves its job active.
#[tokio::test]
async fn a_job_manager_with_kill_job_on_completion_false_leaves_the_job_active() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", manager(Some(false))).await;
    w.add_tasks("j", &["jm"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.round().await;
    let jm = one(&mut a);
    a.run(&w, jm.attempt, 0).await;
    assert_eq!(w.task_state("j", "jm").await, TaskState::Completed);
    let j = w.job("j").await;
    assert_eq!(j.state, JobState::Active);
    assert!(j.execution_info.terminate_reason.is_none());
}

/// An exit condition's jobAction applies when the job asks for it
/// (onTaskFailure performexitoptionsjobaction): terminate ends the job with
/// reason `TaskFailed`, disable disables it; a job with onTaskFailure
/// noaction is left active.
#[tokio::test]
async fn exit_condition_job_actions_apply_to_jobs_that_ask_for_them() {
    let w = World::new().await;
    w.pool("p", 3, "spread").await;
    let acts = |j: &mut CloudJob| j.on_task_failure = OnTaskFailure::PerformExitOptionsJobAction;
    w.add_job("term", "p", acts).await;
    w.add_job("dis", "p", acts).await;
    w.add_job("quiet", "p", |_| {}).await;
    let conditions = |t: &mut CloudTask| {
        t.exit_conditions = Some(from(json!({"exitCodes": [
            {"code": 3, "exitOptions": {"jobAction": "terminate"}},
            {"code": 4, "exitOptions": {"jobAction": "disable"}},
        ]})));
    };
    for j in ["term", "dis", "quiet"] {
        w.add_tasks(j, &["t"], conditions).await;
    }
    let mut a = w.join("p", "n1").await;
    assert_eq!(w.round().await, 3);
    for l in a.launches() {
        let exit = if l.job_id == "dis" { 4 } else { 3 };
        a.run(&w, l.attempt, exit).await;
    }
    for j in ["term", "dis", "quiet"] {
        assert_eq!(w.task_state(j, "t").await, TaskState::Completed, "{j}'s task");
    }
    let term = w.job("term").await;
    assert_eq!(term.state, JobState::Terminating);
    assert_eq!(term.execution_info.terminate_reason.as_deref(), Some("TaskFailed"));
    let dis = w.job("dis").await;
    assert_eq!(dis.state, JobState::Disabling);
    assert_eq!(dis.pending_disable, Some(wire::enums::DisableJobOption::Requeue));
    let quiet = w.job("quiet").await;
    assert_eq!(quiet.state, JobState::Active, "onTaskFailure noaction: the exit condition's action is not taken");
}

/// Every recorded outcome counts in the node's totalTasksRun, successes in
/// totalTasksSucceeded, and recentTasks keeps the last five, newest last.
#[tokio::test]
async fn node_counters_and_recent_tasks_follow_outcomes() {
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6", "t7"];
    w.add_tasks("j", &ids, |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let mut order = Vec::new();
    loop {
        w.round().await;
        let ls = a.launches();
        if ls.is_empty() {
            break;
        }
        for l in ls {
            let exit = if l.task_id == "t3" { 1 } else { 0 };
            a.run(&w, l.attempt, exit).await;
            order.push(l.task_id);
        }
    }
    assert_eq!(order.len(), 7, "every task ran once: {order:?}");
    let (run, ok, recent) = w.cluster.node("p", "n1", |n| (n.total_run, n.total_succeeded, n.recent.clone())).unwrap();
    assert_eq!((run, ok), (7, 6));
    assert_eq!(recent.len(), 5, "recentTasks keeps five");
    let recent_ids: Vec<&str> = recent.iter().map(|r| r["taskId"].as_str().unwrap()).collect();
    assert_eq!(recent_ids, order[2..].iter().map(String::as_str).collect::<Vec<_>>(), "the last five, in order");
    for r in &recent {
        assert_eq!(r["jobId"], "j");
        assert_eq!(r["taskState"], "completed");
    }
    let failed = recent.iter().find(|r| r["taskId"] == "t3").expect("t3 is among the last five");
    assert_eq!(failed["executionInfo"]["result"], "failure");
    assert_eq!(failed["executionInfo"]["exitCode"], 1);
}

/// A node whose start task failed stays `starttaskfailed` (and takes no
/// tasks) when its agent reconnects without a reboot; a node still waiting
/// for its start task still waits, and is freed by that start task's outcome.
#[tokio::test]
async fn a_reconnect_without_reboot_keeps_the_start_task_state() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup"}})).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut n1 = w.join("p", "n1").await;
    let mut n2 = w.join("p", "n2").await;
    let (s1, s2) = (one(&mut n1), one(&mut n2));
    n1.run(&w, s1.attempt, 1).await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::StartTaskFailed);
    n2.started(&w, s2.attempt);

    for a in [&n1, &n2] {
        a.disconnect(&w);
    }
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Offline);
    let mut n1 = w.join("p", "n1").await;
    let mut n2 = w.join("p", "n2").await;
    assert!(n1.launches().is_empty() && n2.launches().is_empty(), "the same boot: the start task does not run again");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::StartTaskFailed);
    assert_eq!(node_state(&w, "p", "n2"), ComputeNodeState::WaitingForStartTask);
    assert_eq!(w.round().await, 0);
    assert!(n1.launches().is_empty() && n2.launches().is_empty());

    n2.finish(&w, s2.attempt, 0).await;
    assert_eq!(node_state(&w, "p", "n2"), ComputeNodeState::Idle);
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut n2).task_id, "t1");
    assert!(n1.launches().is_empty());
}

/// A start task still running when the agent reconnects (same agent) runs
/// on: it is not killed as an unknown attempt, the node keeps waiting for
/// it, and its success frees the node.
#[tokio::test]
async fn a_start_task_running_across_a_reconnect_is_not_killed() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup"}})).await;
    w.add_job("j", "p", |_| {}).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let st = one(&mut a);
    a.started(&w, st.attempt);
    a.disconnect(&w);
    let mut h = hello("p", "n1");
    h.running = vec![st.attempt];
    let mut a = w.join_with(h).await;
    w.settle().await;
    assert!(a.kills().is_empty(), "the start task runs on");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::WaitingForStartTask);
    a.finish(&w, st.attempt, 0).await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Idle);
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
}

/// Reboot: the node shows `rebooting` and takes no task until its agent
/// reports the reset done; then it is `idle`, its start task runs again, and
/// it takes tasks once that succeeds.
#[tokio::test]
async fn a_rebooting_node_waits_for_its_agent_then_runs_its_start_task_again() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup"}})).await;
    w.add_job("j", "p", |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let st = one(&mut a);
    a.run(&w, st.attempt, 0).await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Idle);

    w.cluster.set_node_state("n1", ComputeNodeState::Rebooting);
    w.cluster.reset_node("n1", false);
    assert!(a.messages().iter().any(|m| matches!(m, ToAgent::Reset { wipe: false })), "the agent is told to reset");
    w.add_tasks("j", &["t1"], |_| {}).await;
    assert_eq!(w.round().await, 0, "no task while the node reboots");
    w.settle().await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Rebooting, "it stays rebooting until the agent is done");

    w.cluster.on_report("n1", ToServer::ResetDone, || URL.to_string());
    w.settle().await;
    let again = one(&mut a);
    assert!(again.is_start_task && again.attempt != st.attempt, "the start task runs again after the reboot");
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::WaitingForStartTask);
    assert_eq!(w.round().await, 0);
    a.run(&w, again.attempt, 0).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
}

/// Deallocate with `requeue`: the node shows `deallocating` before its
/// running task is requeued (so the task cannot come back to it), stops
/// every attempt, and once its agent is done it is `deallocated`: no running
/// attempt left, no start task, no task. Start: `starting` until the agent
/// has restarted, then its start task runs again and it takes tasks.
#[tokio::test]
async fn a_deallocated_node_runs_nothing_until_it_is_started() {
    let w = World::new().await;
    w.pool_with("p", 1, "spread", json!({"startTask": {"commandLine": "setup"}})).await;
    w.add_job("j", "p", |_| {}).await;
    let mut a = w.join("p", "n1").await;
    let st = one(&mut a);
    a.run(&w, st.attempt, 0).await;
    w.add_tasks("j", &["t1"], |_| {}).await;
    assert_eq!(w.round().await, 1);
    let t1 = one(&mut a);
    a.started(&w, t1.attempt);
    w.settle().await;

    w.cluster.deallocate_node("p", "n1", false).await.unwrap();
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Deallocating);
    w.cluster.requeue_attempt("j", "t1", t1.attempt).await;
    w.cluster.stop_node("n1");
    assert!(a.messages().iter().any(|m| matches!(m, ToAgent::Reset { wipe: false })), "the agent is told to stop everything");
    assert_eq!(w.round().await, 0, "the requeued task does not come back to a deallocating node");
    assert_eq!(w.task_state("j", "t1").await, TaskState::Active);

    // The agent stops the attempt without an outcome, then reports.
    w.cluster.on_report("n1", ToServer::ResetDone, || URL.to_string());
    w.settle().await;
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Deallocated);
    assert_eq!(w.cluster.node("p", "n1", |n| n.running.len()), Some(0), "no attempt is left on the node");
    assert!(a.launches().is_empty(), "no start task while deallocated");
    assert_eq!(w.round().await, 0, "no task while deallocated");
    let refused = w.cluster.deallocate_node("p", "n1", false).await.unwrap_err();
    assert_eq!(refused.code, wire::ErrorCode::OperationInvalidForCurrentState);

    w.cluster.start_node("p", "n1").unwrap();
    assert_eq!(node_state(&w, "p", "n1"), ComputeNodeState::Starting);
    assert!(w.cluster.start_node("p", "n1").is_err(), "a starting node cannot be started");
    assert!(a.messages().iter().any(|m| matches!(m, ToAgent::Reset { wipe: false })));
    w.cluster.on_report("n1", ToServer::ResetDone, || URL.to_string());
    w.settle().await;
    let again = one(&mut a);
    assert!(again.is_start_task && again.attempt != st.attempt, "the start task runs again after a start");
    a.run(&w, again.attempt, 0).await;
    assert_eq!(w.round().await, 1);
    assert_eq!(one(&mut a).task_id, "t1");
}

/// Leaving with `retaineddata`: once its running task is done, the node
/// still stays (taking no task) until the retention of the tasks that ran
/// on it has passed; `taskcompletion` would leave at once.
#[tokio::test]
async fn a_node_leaving_with_retaineddata_waits_for_task_retention() {
    use wire::time::{Duration, Timestamp};
    let w = World::new().await;
    w.pool("p", 1, "spread").await;
    w.add_job("j", "p", |_| {}).await;
    let mut a = w.join("p", "n1").await;
    w.add_tasks("j", &["t1"], |t| t.constraints.retention_time = Some(Duration::from_secs(3600))).await;
    assert_eq!(w.round().await, 1);
    let t1 = one(&mut a);
    a.started(&w, t1.attempt);

    w.cluster.drain_leaving("n1", true).await;
    w.add_tasks("j", &["t2"], |_| {}).await;
    assert_eq!(w.round().await, 0, "a leaving node takes no new task");
    a.finish(&w, t1.attempt, 0).await;
    w.settle().await;
    let cleanup = w.task("j", "t1").await.cleanup_at.expect("t1's files are retained");
    assert!(w.cluster.node_exists("p", "n1"), "its task's files are still retained");

    w.cluster.leave_after_retention(Timestamp(cleanup.0 - chrono::TimeDelta::seconds(1))).await;
    assert!(w.cluster.node_exists("p", "n1"), "not before the retention ends");
    w.cluster.leave_after_retention(cleanup).await;
    assert!(!w.cluster.node_exists("p", "n1"), "it leaves once the retention has ended");
    assert!(a.messages().iter().any(|m| matches!(m, ToAgent::Shutdown)));
}
