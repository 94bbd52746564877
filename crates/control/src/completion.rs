//! What follows an attempt's outcome: the task's record, the node's
//! counters, the job's end (job manager) and exit conditions' job actions.

use crate::cluster::Cluster;
use crate::execution;
use crate::state::node::Slot;
use proto::TaskOutcome;
use serde_json::{json, Value};
use std::sync::Arc;
use wire::encode_segment;
use wire::enums::{DisableJobOption, JobAction, JobState, OnTaskFailure, TaskState};
use wire::models::CloudJob;
use wire::{Error, ErrorCode};

impl Cluster {
    /// Records how the task's attempt `o.attempt` ended (it ran on `node_id`
    /// in `slot`), and what follows: the node's counters, the job's end when
    /// the task is its manager, the exit conditions' job action.
    pub(crate) async fn complete_attempt(
        self: &Arc<Self>,
        node_id: &str,
        slot: Slot,
        o: TaskOutcome,
        base_url: String,
        subtasks: Option<Vec<Value>>,
    ) -> (Option<(String, bool)>, bool) {
        let attempt = o.attempt;
        let stats_url = format!("{base_url}/jobs/{}/tasks/{}/stats", encode_segment(&slot.job_id), encode_segment(&slot.task_id));
        // Work waits on some completions: dependent tasks, a retry, the end
        // of the job (its manager, an exit condition's job action).
        let failed = o.exit_code != Some(0) || o.failure_code.is_some();
        let durability = if failed || self.awaited_completion(&slot.job_id, &slot.task_id) {
            store::Durability::Prompt
        } else {
            store::Durability::Relaxed
        };
        let r = self
            .write_attempt(
                &slot.job_id,
                &slot.task_id,
                attempt,
                durability,
                Some(Box::new(move |_, t, now| {
                    if t.attempt != Some(attempt) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    execution::apply_outcome(t, &o, stats_url, now);
                    if subtasks.is_some() {
                        t.subtasks = subtasks;
                    }
                    Ok(())
                })),
            )
            .await;
        let mut result = None;
        // A store failure leaves the outcome unsettled; a refused change
        // (the task moved on: terminated, deleted, requeued) settles it.
        let settled = !matches!(&r, Err(e) if e.code == ErrorCode::InternalError || e.code == ErrorCode::ServerBusy);
        if let Ok(t) = r {
            if t.state == TaskState::Active {
                self.readied(&slot.job_id, &t.id);
            }
            {
                let completed = t.state == TaskState::Completed;
                let success = t.execution_info.result == Some(wire::enums::ExecutionResult::Success);
                if let Some(n) = self.core().nodes.get_mut(node_id) {
                    if let Some(c) = t.cleanup_at {
                        n.retained_until = Some(n.retained_until.map_or(c, |r| r.max(c)));
                    }
                    n.total_run += 1;
                    if success {
                        n.total_succeeded += 1;
                    }
                    n.recent.push_back(json!({
                        "taskUrl": format!("{base_url}/jobs/{}/tasks/{}", encode_segment(&slot.job_id), encode_segment(&slot.task_id)),
                        "jobId": slot.job_id, "taskId": slot.task_id, "taskState": t.state.as_str(),
                        "executionInfo": t.execution_info,
                    }));
                    while n.recent.len() > 5 {
                        n.recent.pop_front();
                    }
                }
                if completed {
                    result = Some((slot.job_id.clone(), true));
                    if self.ends_job(&slot.job_id, &t.id) {
                        let me = self.clone();
                        let job = slot.job_id.clone();
                        tokio::spawn(async move { me.end_job(&job, "JMComplete").await });
                    }
                    if let Some(o) = wire::workflow::outcome(&t) {
                        if o.job_action != JobAction::None {
                            let me = self.clone();
                            let job = slot.job_id.clone();
                            tokio::spawn(async move { me.job_action(&job, o.job_action).await });
                        }
                    }
                }
            }
        }
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            n.refresh_busy_state();
        }
        self.drain_if_done(node_id).await;
        (result, settled)
    }

    /// Whether work may wait on the task's completion whatever its outcome:
    /// its job's tasks may depend on each other, or it is the job's manager
    /// (true when the job is not cached: the cautious answer).
    pub(crate) fn awaited_completion(&self, job_id: &str, task_id: &str) -> bool {
        self.with_cached_job(job_id, |job| job.is_none_or(|j| j.uses_task_dependencies || execution::manager_of(j, task_id).is_some()))
    }

    /// Whether the task is its job's manager with `killJobOnCompletion`
    /// (the default), from the scheduler's cached job list.
    pub(crate) fn ends_job(&self, job_id: &str, task_id: &str) -> bool {
        self.with_cached_job(job_id, |job| {
            job.and_then(|j| execution::manager_of(j, task_id)).is_some_and(|m| m.kill_job_on_completion != Some(false))
        })
    }

    /// Terminates an active job for the service's own reason (running tasks are killed).
    pub(crate) async fn end_job(&self, job_id: &str, reason: &'static str) {
        let ended = self.store.end_job(job_id, reason, |_, job| {
            Ok(matches!(job.state, JobState::Active | JobState::Disabled | JobState::Disabling | JobState::Enabling))
        });
        if matches!(ended.await, Ok(true)) {
            self.lifecycle.wake();
        }
    }

    /// Applies a completed task's `jobAction` to its job, when the job asks
    /// for that (`onTaskFailure: performexitoptionsjobaction`) and is active:
    /// terminate (reason `TaskFailed`) or disable (running tasks requeued).
    pub(crate) async fn job_action(&self, job_id: &str, action: JobAction) {
        let acts = |job: &CloudJob| job.state == JobState::Active && job.on_task_failure == OnTaskFailure::PerformExitOptionsJobAction;
        let done = match action {
            JobAction::Terminate => self.store.end_job(job_id, "TaskFailed", move |_, job| Ok(acts(job))).await.unwrap_or(false),
            JobAction::Disable => self
                .store
                .update_job(job_id, Default::default(), move |_, job, now| {
                    if !acts(job) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    job.pending_disable = Some(DisableJobOption::Requeue);
                    store::jobs::set_state(job, JobState::Disabling, now);
                    Ok(())
                })
                .await
                .is_ok(),
            JobAction::None => false,
        };
        if done {
            self.lifecycle.wake();
        }
    }
}
