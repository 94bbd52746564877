//! The seam is real: a `Store` built over a backend other than SQLite
//! itself — here one defined outside the crate that counts calls, vets
//! some, watches the closures pass and delegates to SQLite — serves the
//! whole API, closures and signals included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use store::backend::{AddCheck, Assignment, DeleteCheck, DocChange, JobChange, JobInState, NodeTask, StoreFuture, TaskChange, TaskResults};
use store::pools::DocTable;
use store::sqlite::Sqlite;
use store::tasks::NewTask;
use store::{Backend, Durability, EtagClock, Lease, ListQuery, Page, Preconditions, Signals, Store, Stored};
use wire::enums::*;
use wire::models::*;
use wire::time::{Duration, Timestamp};
use wire::{Error, ErrorCode};

/// Counts every call, refuses to create the job `forbidden`, and counts
/// the task changes as they run; everything else goes to SQLite.
struct Counting {
    inner: Sqlite,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    changes_run: Arc<Mutex<Vec<String>>>,
}

impl Counting {
    fn hit(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }
    fn calls(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

impl Backend for Counting {
    fn etags(&self) -> &Arc<EtagClock> {
        self.inner.etags()
    }
    fn signals(&self) -> &Arc<Signals> {
        self.inner.signals()
    }
    fn create_job(&self, job: CloudJob) -> StoreFuture<'_, Stored> {
        self.hit("create_job");
        if job.id == "forbidden" {
            return Box::pin(async { Err(Error::new(ErrorCode::OperationInvalidForCurrentState)) });
        }
        self.inner.create_job(job)
    }
    fn get_job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Stored> {
        self.hit("get_job");
        self.inner.get_job(id)
    }
    fn update_job<'a>(&'a self, id: &'a str, pre: Preconditions, f: JobChange) -> StoreFuture<'a, Stored> {
        self.hit("update_job");
        self.inner.update_job(id, pre, f)
    }
    fn list_jobs(&self, q: ListQuery) -> StoreFuture<'_, Page> {
        self.hit("list_jobs");
        self.inner.list_jobs(q)
    }
    fn list_schedule_jobs<'a>(&'a self, schedule: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        self.hit("list_schedule_jobs");
        self.inner.list_schedule_jobs(schedule, q)
    }
    fn active_jobs_with_wall_clock(&self) -> StoreFuture<'_, Vec<CloudJob>> {
        self.hit("active_jobs_with_wall_clock");
        self.inner.active_jobs_with_wall_clock()
    }
    fn jobs_in_states<'a>(&'a self, states: &'a [JobState]) -> StoreFuture<'a, Vec<JobInState>> {
        self.hit("jobs_in_states");
        self.inner.jobs_in_states(states)
    }
    fn purge_job<'a>(&'a self, id: &'a str, chunk: usize) -> StoreFuture<'a, bool> {
        self.hit("purge_job");
        self.inner.purge_job(id, chunk)
    }
    fn add_tasks<'a>(&'a self, job_id: &'a str, tasks: Vec<NewTask>, check: AddCheck) -> StoreFuture<'a, Vec<Result<(), Error>>> {
        self.hit("add_tasks");
        self.inner.add_tasks(job_id, tasks, check)
    }
    fn get_task<'a>(&'a self, job_id: &'a str, task_id: &'a str) -> StoreFuture<'a, Stored> {
        self.hit("get_task");
        self.inner.get_task(job_id, task_id)
    }
    fn update_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, f: TaskChange) -> StoreFuture<'a, Stored> {
        self.hit("update_task");
        self.inner.update_task(job_id, task_id, pre, f)
    }
    fn delete_task<'a>(&'a self, job_id: &'a str, task_id: &'a str, pre: Preconditions, check: DeleteCheck) -> StoreFuture<'a, ()> {
        self.hit("delete_task");
        self.inner.delete_task(job_id, task_id, pre, check)
    }
    fn update_tasks(&self, changes: Vec<(String, String, TaskChange)>, durability: Durability) -> StoreFuture<'static, TaskResults> {
        self.hit("update_tasks");
        let changes = changes
            .into_iter()
            .map(|(job, task, f)| {
                let seen = self.changes_run.clone();
                let id = task.clone();
                let watched: TaskChange = Box::new(move |j, t, now| {
                    seen.lock().unwrap().push(id);
                    f(j, t, now)
                });
                (job, task, watched)
            })
            .collect();
        self.inner.update_tasks(changes, durability)
    }
    fn list_tasks<'a>(&'a self, job_id: &'a str, q: ListQuery) -> StoreFuture<'a, Page> {
        self.hit("list_tasks");
        self.inner.list_tasks(job_id, q)
    }
    fn task_counts<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, (TaskCountsResult, i64)> {
        self.hit("task_counts");
        self.inner.task_counts(job_id)
    }
    fn task_totals(&self) -> StoreFuture<'_, store::metrics::TaskTotals> {
        self.hit("task_totals");
        self.inner.task_totals()
    }
    fn job_task_stats<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<TaskStatistics>> {
        self.hit("job_task_stats");
        self.inner.job_task_stats(job_id)
    }
    fn pool_task_counts<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, store::PoolTaskCounts> {
        self.hit("pool_task_counts");
        self.inner.pool_task_counts(pool_id)
    }
    fn schedulable_jobs<'a>(&'a self, pool_id: &'a str) -> StoreFuture<'a, Vec<CloudJob>> {
        self.hit("schedulable_jobs");
        self.inner.schedulable_jobs(pool_id)
    }
    fn ready_tasks<'a>(&'a self, job_id: &'a str, limit: usize, max_slots: u32) -> StoreFuture<'a, Vec<CloudTask>> {
        self.hit("ready_tasks");
        self.inner.ready_tasks(job_id, limit, max_slots)
    }
    fn tasks_on_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, Vec<NodeTask>> {
        self.hit("tasks_on_node");
        self.inner.tasks_on_node(node_id)
    }
    fn assigned_tasks(&self) -> StoreFuture<'_, Vec<Assignment>> {
        self.hit("assigned_tasks");
        self.inner.assigned_tasks()
    }
    fn max_attempt(&self) -> StoreFuture<'_, u64> {
        self.hit("max_attempt");
        self.inner.max_attempt()
    }
    fn due_cleanups(&self, now: Timestamp, limit: usize) -> StoreFuture<'_, Vec<(String, String)>> {
        self.hit("due_cleanups");
        self.inner.due_cleanups(now, limit)
    }
    fn create_doc<'a>(
        &'a self,
        t: DocTable,
        id: &'a str,
        text: String,
        state: String,
        etag: String,
        lm: String,
    ) -> StoreFuture<'a, Stored> {
        self.hit("create_doc");
        self.inner.create_doc(t, id, text, state, etag, lm)
    }
    fn get_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, Stored> {
        self.hit("get_doc");
        self.inner.get_doc(t, id)
    }
    fn update_doc<'a>(&'a self, t: DocTable, id: &'a str, pre: Preconditions, f: DocChange) -> StoreFuture<'a, Stored> {
        self.hit("update_doc");
        self.inner.update_doc(t, id, pre, f)
    }
    fn list_docs(&self, t: DocTable, q: ListQuery) -> StoreFuture<'_, Page> {
        self.hit("list_docs");
        self.inner.list_docs(t, q)
    }
    fn all_docs(&self, t: DocTable) -> StoreFuture<'_, Vec<String>> {
        self.hit("all_docs");
        self.inner.all_docs(t)
    }
    fn remove_doc<'a>(&'a self, t: DocTable, id: &'a str) -> StoreFuture<'a, ()> {
        self.hit("remove_doc");
        self.inner.remove_doc(t, id)
    }
    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        self.hit("acquire_lease");
        self.inner.acquire_lease(name, holder, ttl, now)
    }
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        token: u64,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Lease>> {
        self.hit("renew_lease");
        self.inner.renew_lease(name, holder, token, ttl, now)
    }
    fn release_lease<'a>(&'a self, name: &'a str, holder: &'a str, token: u64) -> StoreFuture<'a, bool> {
        self.hit("release_lease");
        self.inner.release_lease(name, holder, token)
    }
    fn add_pool_usage(&self, usage: Vec<store::usage::PoolUsage>) -> StoreFuture<'_, ()> {
        self.hit("add_pool_usage");
        self.inner.add_pool_usage(usage)
    }
    fn pool_usage(&self, from: i64, to: i64) -> StoreFuture<'_, Vec<store::usage::PoolUsage>> {
        self.hit("pool_usage");
        self.inner.pool_usage(from, to)
    }
    fn latest_pool_usage(&self) -> StoreFuture<'_, Option<i64>> {
        self.hit("latest_pool_usage");
        self.inner.latest_pool_usage()
    }
}

fn job(store: &Store, id: &str) -> CloudJob {
    let (now, etag) = store.etags.next();
    CloudJob {
        id: id.into(),
        display_name: None,
        uses_task_dependencies: false,
        e_tag: etag,
        last_modified: now,
        creation_time: now,
        state: JobState::Active,
        state_transition_time: now,
        previous_state: None,
        previous_state_transition_time: None,
        priority: 0,
        allow_task_preemption: false,
        max_parallel_tasks: -1,
        constraints: JobConstraints { max_wall_clock_time: Some(Duration::INFINITE), max_task_retry_count: Some(0) },
        job_manager_task: None,
        job_preparation_task: None,
        job_release_task: None,
        common_environment_settings: None,
        pool_info: PoolInformation { pool_id: Some("p".into()), auto_pool_specification: None },
        on_all_tasks_complete: OnAllTasksComplete::NoAction,
        on_task_failure: OnTaskFailure::NoAction,
        network_configuration: None,
        metadata: None,
        execution_info: JobExecutionInformation {
            start_time: now,
            end_time: None,
            pool_id: None,
            scheduling_error: None,
            terminate_reason: None,
        },
        pending_disable: None,
    }
}

fn task(store: &Store, id: &str) -> NewTask {
    let (now, etag) = store.etags.next();
    NewTask::new(CloudTask {
        id: id.into(),
        display_name: None,
        e_tag: etag,
        last_modified: now,
        creation_time: now,
        exit_conditions: None,
        state: TaskState::Active,
        state_transition_time: now,
        previous_state: None,
        previous_state_transition_time: None,
        command_line: "/bin/true".into(),
        container_settings: None,
        resource_files: None,
        output_files: None,
        environment_settings: None,
        affinity_info: None,
        constraints: TaskConstraints::default(),
        required_slots: 2,
        user_identity: UserIdentity { username: None, auto_user: None },
        execution_info: TaskExecutionInformation::default(),
        node_info: None,
        multi_instance_settings: None,
        stats: None,
        depends_on: None,
        application_package_references: None,
        authentication_token_settings: None,
        attempt: None,
        node: None,
        cleanup_at: None,
        files_cleaned: false,
        subtasks: None,
    })
    .unwrap()
}

fn ids(p: Page) -> Vec<String> {
    p.docs.iter().map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_another_backend_goes_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        Arc::new(Counting { inner: Sqlite::open(dir.path()).unwrap(), calls: Default::default(), changes_run: Default::default() });
    let s = Store::new(backend.clone());

    // Documents.
    let doc = serde_json::json!({"id": "p", "vmSize": "standard_d2s_v3", "state": "active", "eTag": "0x1"});
    s.create_pool("p", doc.as_object().unwrap().clone()).await.unwrap();
    s.update_pool("p", Preconditions::default(), |d, _| {
        d.insert("targetDedicatedNodes".into(), 2.into());
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(s.pool_summaries().await.unwrap()[0]["targetDedicatedNodes"], 2);
    assert_eq!(ids(s.list_pools(ListQuery { limit: 10, ..Default::default() }).await.unwrap()), vec!["p"]);
    assert_eq!(backend.calls("create_doc"), 1);
    assert_eq!(backend.calls("update_doc"), 1);
    assert_eq!(backend.calls("all_docs"), 1);
    assert_eq!(backend.calls("list_docs"), 1);

    // The backend decides: a job it refuses is not created.
    let e = s.create_job(job(&s, "forbidden")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationInvalidForCurrentState);
    assert_eq!(s.get_job("forbidden").await.unwrap_err().code, ErrorCode::JobNotFound);
    assert_eq!((backend.calls("create_job"), backend.calls("get_job")), (1, 1));

    // Tasks, and the generation the backend's signals carry.
    s.create_job(job(&s, "j")).await.unwrap();
    let (jobs_before, tasks_before) = s.generation();
    assert!(jobs_before > 0, "creating a job moved the job generation");
    let r = s.add_tasks("j", vec![task(&s, "a"), task(&s, "b"), task(&s, "c")], |j| {
        assert_eq!(j.id, "j");
        Ok(())
    });
    assert!(r.await.unwrap().iter().all(Result::is_ok));
    assert!(s.task_generation() > tasks_before);
    let ready: Vec<String> = s.ready_tasks("j", 10, u32::MAX).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ready, vec!["a", "b", "c"]);

    // A batch of changes: a plain closure and an already boxed one, both run
    // through the backend's wrapper and are applied.
    let complete = |t: &mut CloudTask, now| {
        t.state = TaskState::Completed;
        t.state_transition_time = now;
        t.execution_info.result = Some(ExecutionResult::Success);
    };
    let plain = move |_: &CloudJob, t: &mut CloudTask, now| {
        complete(t, now);
        Ok(())
    };
    let r = s.update_tasks(vec![("j".to_string(), "a".to_string(), plain)], Durability::Synced).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap().state, TaskState::Completed);
    let boxed: TaskChange = Box::new(move |_, t, now| {
        complete(t, now);
        Ok(())
    });
    let r = s.update_tasks(vec![("j".to_string(), "b".to_string(), boxed)], Durability::Relaxed).await.unwrap();
    assert!(r[0].is_ok());
    assert_eq!(*backend.changes_run.lock().unwrap(), vec!["a", "b"]);
    let got: CloudTask = serde_json::from_str(&s.get_task("j", "b").await.unwrap().doc).unwrap();
    assert_eq!(got.state, TaskState::Completed);
    let (counts, _) = s.task_counts("j").await.unwrap();
    assert_eq!((counts.task_counts.active, counts.task_counts.succeeded), (1, 2));

    // A job change reads inside its transaction through the backend's `Txn`.
    let e = s.update_job("j", Preconditions::default(), |tx, _, _| store::jobs::check_pool(tx, "nopool")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PoolNotFound);
    s.update_job("j", Preconditions::default(), |tx, _, _| store::jobs::check_pool(tx, "P")).await.unwrap();
    let ended =
        s.end_job("j", "AllTasksComplete", |tx, job| Ok(store::tasks::counts(tx, &job.id)?.0.task_counts.active == 0)).await.unwrap();
    assert!(!ended, "c is still active");
    assert_eq!(backend.calls("update_job"), 3);

    // Leases go through it too.
    let lease = s.acquire_lease("leader", "me", std::time::Duration::from_secs(5), Timestamp::now()).await.unwrap().unwrap();
    assert!(s.release_lease(&lease).await.unwrap());

    for (method, n) in [
        ("add_tasks", 1),
        ("ready_tasks", 1),
        ("update_tasks", 2),
        ("get_task", 1),
        ("task_counts", 1),
        ("acquire_lease", 1),
        ("release_lease", 1),
        ("delete_task", 0),
    ] {
        assert_eq!(backend.calls(method), n, "{method}");
    }
}
