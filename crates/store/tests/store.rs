//! The store against real databases — a SQLite file and a PostgreSQL
//! database, the same assertions on both: durability across reopen, group
//! commit under concurrency, counters, keyset paging and preconditions.

mod common;
use common::Db;

use store::tasks::NewTask;
use store::{ListQuery, Preconditions, Store};
use wire::enums::*;
use wire::models::*;
use wire::time::Duration;
use wire::ErrorCode;

/// Opens the store with the pool `p` the test jobs name.
async fn open(db: &Db) -> Store {
    let s = db.open().await;
    let doc = serde_json::json!({"id": "p", "vmSize": "standard_d2s_v3", "state": "active"});
    let _ = s.create_pool("p", doc.as_object().unwrap().clone()).await; // exists after a reopen
    s
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

async fn writes_survive_reopen_and_counters_follow(db: Db) {
    {
        let s = open(&db).await;
        s.create_job(job(&s, "Job1")).await.unwrap();
        let r = s.add_tasks("job1", vec![task(&s, "a"), task(&s, "B"), task(&s, "b")], |_| Ok(())).await.unwrap();
        assert!(r[0].is_ok() && r[1].is_ok());
        assert_eq!(r[2].as_ref().unwrap_err().code, ErrorCode::TaskExists, "ids are unique case-insensitively");
        assert_eq!(s.create_job(job(&s, "JOB1")).await.unwrap_err().code, ErrorCode::JobExists);
    }
    let s = open(&db).await;
    let got = s.get_task("JOB1", "b").await.unwrap();
    assert!(got.doc.contains("\"id\":\"B\""), "case kept: {}", got.doc);
    let (counts, _) = s.task_counts("job1").await.unwrap();
    assert_eq!(counts.task_counts.active, 2);
    assert_eq!(counts.task_slot_counts.active, 4);

    // A change moves the task between counters.
    s.update_task("job1", "a", Preconditions::default(), |_, t, now| {
        t.state = TaskState::Completed;
        t.state_transition_time = now;
        t.execution_info.result = Some(ExecutionResult::Failure);
        Ok(())
    })
    .await
    .unwrap();
    let (counts, _) = s.task_counts("job1").await.unwrap();
    assert_eq!((counts.task_counts.active, counts.task_counts.completed, counts.task_counts.failed), (1, 1, 1));
    s.delete_task("job1", "a", Preconditions::default(), |_, _| Ok(())).await.unwrap();
    let (counts, _) = s.task_counts("job1").await.unwrap();
    assert_eq!((counts.task_counts.active, counts.task_counts.completed), (1, 0));
    assert_eq!(s.get_task("job1", "a").await.unwrap_err().code, ErrorCode::TaskNotFound);
    assert_eq!(s.get_task("nojob", "a").await.unwrap_err().code, ErrorCode::JobNotFound);
}

async fn concurrent_writers_share_commits_and_lose_nothing(db: Db) {
    let s = open(&db).await;
    s.create_job(job(&s, "j")).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..20 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            for b in 0..5 {
                let batch: Vec<NewTask> = (0..50).map(|i| task(&s, &format!("t{w}-{b}-{i}"))).collect();
                let r = s.add_tasks("j", batch, |_| Ok(())).await.unwrap();
                assert!(r.iter().all(|r| r.is_ok()));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let (counts, _) = s.task_counts("j").await.unwrap();
    assert_eq!(counts.task_counts.active, 20 * 5 * 50);
    // Keyset paging visits every task exactly once, in key order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_tasks("j", ListQuery { filter: None, after: after.clone(), limit: 777 }).await.unwrap();
        for d in &page.docs {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            seen.push(v["id"].as_str().unwrap().to_ascii_lowercase());
        }
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5000);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen);
}

async fn refused_changes_roll_back_alone(db: Db) {
    let s = open(&db).await;
    s.create_job(job(&s, "j")).await.unwrap();
    let stale = s.get_job("j").await.unwrap().etag;
    s.update_job("j", Preconditions::default(), |_, j, _| {
        j.priority = 5;
        Ok(())
    })
    .await
    .unwrap();
    let pre = Preconditions { if_match: Some(vec![stale]), ..Default::default() };
    let e = s
        .update_job("j", pre, |_, j, _| {
            j.priority = 9;
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ConditionNotMet);
    let doc: serde_json::Value = serde_json::from_str(&s.get_job("j").await.unwrap().doc).unwrap();
    assert_eq!(doc["priority"], 5);

    // A closure that writes and then fails leaves no trace.
    let e = s.add_tasks("j", vec![task(&s, "x")], |_| Err(wire::Error::new(ErrorCode::JobCompleted))).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::JobCompleted);
    assert_eq!(s.get_task("j", "x").await.unwrap_err().code, ErrorCode::TaskNotFound);
}

async fn filters_run_in_sql(db: Db) {
    let s = open(&db).await;
    s.create_job(job(&s, "j")).await.unwrap();
    s.add_tasks("j", (0..10).map(|i| task(&s, &format!("t{i}"))).collect(), |_| Ok(())).await.unwrap();
    for id in ["t3", "t7"] {
        s.update_task("j", id, Preconditions::default(), |_, t, _| {
            t.state = TaskState::Completed;
            t.execution_info.exit_code = Some(3);
            t.execution_info.result = Some(ExecutionResult::Failure);
            Ok(())
        })
        .await
        .unwrap();
    }
    let q = |f: &str| ListQuery { filter: Some(wire::odata::parse_filter(f).unwrap()), after: None, limit: 100 };
    let ids = |p: store::Page| -> Vec<String> {
        p.docs.iter().map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(s.list_tasks("j", q("state eq 'completed'")).await.unwrap()), vec!["t3", "t7"]);
    assert_eq!(ids(s.list_tasks("j", q("executionInfo/exitCode eq 3 and id ne 't3'")).await.unwrap()), vec!["t7"]);
    assert_eq!(s.list_tasks("j", q("state eq 'active'")).await.unwrap().docs.len(), 8);
    let e = s.list_tasks("j", q("bogus eq 1")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidQueryParameterValue);
}

/// Completes a task (exit code `code`) through the scheduler's write path.
async fn complete(s: &Store, job: &str, id: &str, code: i32) {
    let change = move |_: &CloudJob, t: &mut CloudTask, _: wire::time::Timestamp| {
        t.state = TaskState::Completed;
        t.execution_info.exit_code = Some(code);
        t.execution_info.result = Some(if code == 0 { ExecutionResult::Success } else { ExecutionResult::Failure });
        if code != 0 {
            t.execution_info.failure_info = Some(FailureInformation {
                category: ErrorCategory::UserError,
                code: Some("FailureExitCode".into()),
                message: None,
                details: None,
            });
        }
        Ok(())
    };
    let r = s.update_tasks(vec![(job.to_string(), id.to_string(), change)], store::Durability::Synced).await.unwrap();
    r[0].as_ref().unwrap();
}

async fn ready(s: &Store, job: &str) -> Vec<String> {
    s.ready_tasks(job, 100, u32::MAX).await.unwrap().into_iter().map(|t| t.id).collect()
}

fn dependent(s: &Store, id: &str, ids: &[&str], ranges: &[(i32, i32)]) -> NewTask {
    let mut t = task(s, id);
    t.task.depends_on = Some(TaskDependencies {
        task_ids: Some(ids.iter().map(|i| i.to_string()).collect()),
        task_id_ranges: Some(ranges.iter().map(|&(start, end)| TaskIdRange { start, end }).collect()),
    });
    NewTask::new(t.task).unwrap()
}

async fn dependencies_release_tasks_as_they_are_satisfied(db: Db) {
    let s = open(&db).await;
    let mut j = job(&s, "j");
    j.uses_task_dependencies = true;
    s.create_job(j).await.unwrap();
    // "x" waits for "A" (case-insensitive), for 1..3 — of which "3" does not
    // exist yet — and for "07", which is not in any range.
    let tasks = vec![task(&s, "a"), task(&s, "1"), task(&s, "2"), task(&s, "07"), dependent(&s, "x", &["A", "07"], &[(1, 3)])];
    s.add_tasks("j", tasks, |_| Ok(())).await.unwrap();
    assert_eq!(ready(&s, "j").await, vec!["07", "1", "2", "a"]);
    for id in ["a", "1", "2", "07"] {
        complete(&s, "j", id, 0).await;
    }
    assert!(ready(&s, "j").await.is_empty(), "3 is missing: x still waits");
    s.add_tasks("j", vec![task(&s, "3")], |_| Ok(())).await.unwrap();
    assert_eq!(ready(&s, "j").await, vec!["3"]);
    let g = s.generation();
    complete(&s, "j", "3", 0).await;
    assert_eq!(ready(&s, "j").await, vec!["x"], "the last dependency released it");
    assert_ne!(s.generation(), g, "the scheduler is told tasks became ready");

    // A failure blocks (the default); a task added after its dependencies
    // completed is ready at once.
    s.add_tasks("j", vec![task(&s, "bad"), dependent(&s, "y", &["bad"], &[])], |_| Ok(())).await.unwrap();
    complete(&s, "j", "bad", 3).await;
    s.add_tasks("j", vec![dependent(&s, "z", &["a"], &[(1, 2)])], |_| Ok(())).await.unwrap();
    let r = ready(&s, "j").await;
    assert!(r.contains(&"z".to_string()) && !r.contains(&"y".to_string()), "{r:?}");

    // Survives a reopen (the counts are stored).
    drop(s);
    let s = open(&db).await;
    let r = ready(&s, "j").await;
    assert!(r.contains(&"z".to_string()) && !r.contains(&"y".to_string()), "{r:?}");
}

async fn pool_documents_as_text_and_summaries(db: Db) {
    let s = open(&db).await;
    let text = r#"{"id":"Big","vmSize":"x","startTask":{"commandLine":"true","resourceFiles":[{"httpUrl":"http://a/b","filePath":"b"}]},"metadata":[{"name":"k","value":"v"}],"targetDedicatedNodes":3,"enableAutoScale":false,"displayName":null,"state":"active","eTag":"0x1","lastModified":"2026-01-01T00:00:00.0000000Z"}"#;
    let stored = s
        .create_doc_text(store::pools::POOLS, "Big", text.into(), "active".into(), "0x1".into(), "2026-01-01T00:00:00.0000000Z".into())
        .await
        .unwrap();
    assert_eq!(stored.etag, "0x1");
    assert_eq!(s.get_pool("big").await.unwrap().doc, text);
    let again = s.create_doc_text(store::pools::POOLS, "BIG", "{}".into(), "active".into(), "0x2".into(), String::new()).await;
    assert_eq!(again.unwrap_err().code, ErrorCode::PoolExists);
    let sums = s.pool_summaries().await.unwrap();
    let big = sums.iter().find(|m| m["id"] == "Big").unwrap();
    assert_eq!(big["targetDedicatedNodes"], 3);
    assert_eq!(big["enableAutoScale"], false);
    assert_eq!(big["state"], "active");
    assert!(big["displayName"].is_null());
    assert!(!big.contains_key("startTask") && !big.contains_key("metadata"));
    assert!(sums.iter().any(|m| m["id"] == "p"));
}

/// Certificates: documents keyed by thumbprint (any case), their secret
/// members kept, filters on state and thumbprint, keyset pages, the
/// certificate error codes, and a reopen.
async fn certificate_documents(db: Db) {
    use store::pools::CERTIFICATES;
    let s = open(&db).await;
    let doc = |tp: &str, state: &str| {
        serde_json::json!({"thumbprint": tp, "thumbprintAlgorithm": "sha1", "state": state, "eTag": "0x1",
            "lastModified": "2026-01-01T00:00:00.0000000Z", "_data": "AAEC", "_password": "pw"})
    };
    let mk = |tp: &str| doc(tp, "active").as_object().unwrap().clone();
    for tp in ["AB12", "cd34", "EF56"] {
        s.create_doc(CERTIFICATES, tp, mk(tp)).await.unwrap();
    }
    assert_eq!(s.create_doc(CERTIFICATES, "ab12", mk("ab12")).await.unwrap_err().code, ErrorCode::CertificateExists);
    let got: serde_json::Value = serde_json::from_str(&s.get_doc(CERTIFICATES, "ab12").await.unwrap().doc).unwrap();
    assert_eq!((got["thumbprint"].as_str(), got["_data"].as_str(), got["_password"].as_str()), (Some("AB12"), Some("AAEC"), Some("pw")));
    let e = s.get_doc(CERTIFICATES, "0000").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::CertificateNotFound);
    assert_eq!(e.values, vec![("Thumbprint".to_string(), "0000".to_string())]);
    s.update_doc(CERTIFICATES, "CD34", Preconditions::default(), |d, _| {
        d.insert("state".into(), "deleting".into());
        Ok(())
    })
    .await
    .unwrap();
    // Adding a certificate that is being deleted is refused as such.
    assert_eq!(s.create_doc(CERTIFICATES, "cd34", mk("cd34")).await.unwrap_err().code, ErrorCode::CertificateBeingDeleted);
    let q = |f: Option<&str>, after: Option<String>, limit| ListQuery {
        filter: f.map(|f| wire::odata::parse_filter(f).unwrap()),
        after,
        limit,
    };
    let tps = |p: &store::Page| -> Vec<String> {
        p.docs.iter().map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["thumbprint"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(tps(&s.list_certificates(q(Some("state eq 'deleting'"), None, 10)).await.unwrap()), vec!["cd34"]);
    assert_eq!(tps(&s.list_certificates(q(Some("state eq 'Active'"), None, 10)).await.unwrap()), vec!["AB12", "EF56"]);
    assert_eq!(tps(&s.list_certificates(q(Some("thumbprint eq 'EF56'"), None, 10)).await.unwrap()), vec!["EF56"]);
    assert_eq!(
        tps(&s.list_certificates(q(Some("thumbprintAlgorithm eq 'sha1' and state ne 'active'"), None, 10)).await.unwrap()),
        vec!["cd34"]
    );
    assert_eq!(s.list_certificates(q(Some("data eq 'AAEC'"), None, 10)).await.unwrap_err().code, ErrorCode::InvalidQueryParameterValue);
    let first = s.list_certificates(q(None, None, 2)).await.unwrap();
    assert_eq!(tps(&first), vec!["AB12", "cd34"]);
    let rest = s.list_certificates(q(None, first.next.clone(), 2)).await.unwrap();
    assert_eq!((tps(&rest), rest.next), (vec!["EF56".to_string()], None));
    s.remove_doc(CERTIFICATES, "cd34").await.unwrap();
    drop(s);
    let s = open(&db).await;
    assert_eq!(tps(&s.list_certificates(q(None, None, 10)).await.unwrap()), vec!["AB12", "EF56"]);
    assert_eq!(s.get_doc(CERTIFICATES, "CD34").await.unwrap_err().code, ErrorCode::CertificateNotFound);
}

both!(writes_survive_reopen_and_counters_follow);
both!(certificate_documents);
both!(concurrent_writers_share_commits_and_lose_nothing);
both!(refused_changes_roll_back_alone);
both!(filters_run_in_sql);
both!(dependencies_release_tasks_as_they_are_satisfied);
both!(pool_documents_as_text_and_summaries);
both!(pool_task_counts_for_autoscale);

/// Ids of a page's documents.
fn page_ids(p: &store::Page) -> Vec<String> {
    p.docs.iter().map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["id"].as_str().unwrap().to_string()).collect()
}

/// Fills a store with jobs and tasks of varied properties (cases, nulls,
/// numbers, booleans, enums, nested paths).
async fn varied(s: &Store) {
    let names = [Some("Hello"), Some("apple"), Some("Banana"), None, Some("zeta"), Some("Ärger")];
    for (i, name) in names.iter().enumerate() {
        let mut j = job(s, &format!("{}job{i}", if i % 2 == 0 { "J" } else { "j" }));
        j.display_name = name.map(String::from);
        j.priority = [0, 100, -5, 7, 100, 3][i];
        j.uses_task_dependencies = i % 3 == 0;
        j.on_all_tasks_complete = if i % 2 == 0 { OnAllTasksComplete::TerminateJob } else { OnAllTasksComplete::NoAction };
        s.create_job(j).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut t = task(s, &format!("{}{i}", if i % 3 == 0 { "T" } else { "t" })).task;
        t.display_name = names[i % names.len()].map(String::from);
        t.required_slots = 1 + (i as i32 % 3);
        t.command_line = if i % 4 == 0 { "/bin/false".into() } else { "/bin/true".into() };
        if i % 5 == 0 {
            t.constraints.max_task_retry_count = Some(i as i32);
        }
        tasks.push(NewTask::new(t).unwrap());
    }
    s.add_tasks("Jjob0", tasks, |_| Ok(())).await.unwrap();
    for i in (0..24).step_by(2) {
        let id = format!("{}{i}", if i % 3 == 0 { "T" } else { "t" });
        s.update_task("jjob0", &id, Preconditions::default(), move |_, t, now| {
            t.state = if i % 4 == 0 { TaskState::Completed } else { TaskState::Running };
            t.state_transition_time = now;
            t.execution_info.retry_count = (i % 3) as i32;
            if i % 4 == 0 {
                t.execution_info.exit_code = Some([0, 3, -1][i % 3]);
                t.execution_info.result = Some(if i % 3 == 0 { ExecutionResult::Success } else { ExecutionResult::Failure });
                if i % 3 != 0 {
                    t.execution_info.failure_info = Some(FailureInformation {
                        category: ErrorCategory::UserError,
                        code: Some("FailureExitCode".into()),
                        message: None,
                        details: None,
                    });
                }
            }
            Ok(())
        })
        .await
        .unwrap();
    }
}

const TASK_FILTERS: &[&str] = &[
    "state eq 'completed'",
    "state ne 'Active'",
    "state eq 'running' or state eq 'completed'",
    "executionInfo/exitCode eq 3",
    "executionInfo/exitCode gt 0 or id eq 't1'",
    "executionInfo/exitCode lt 0",
    "executionInfo/exitCode ge -1 and executionInfo/exitCode le 0",
    "not (executionInfo/exitCode eq 3)",
    "executionInfo/exitCode eq null",
    "executionInfo/exitCode ne null",
    "executionInfo/exitCode ne 3",
    "startswith(id,'t1')",
    "startswith(id,'T')",
    "startswith(displayName,'B')",
    "not startswith(displayName,'H')",
    "displayName eq 'Hello'",
    "displayName ge 'a'",
    "displayName lt 'b'",
    "displayName gt 'z'",
    "displayName eq null",
    "displayName ne 'apple'",
    "requiredSlots ge 2",
    "requiredSlots lt 2.5",
    "executionInfo/retryCount eq 0",
    "executionInfo/retryCount gt 0 and state eq 'running'",
    "executionInfo/result eq 'Failure'",
    "executionInfo/result eq null",
    "creationTime gt datetime'2000-01-01T00:00:00Z'",
    "creationTime lt 2000-01-01T00:00:00Z",
    "commandLine eq '/bin/true'",
    "constraints/maxTaskRetryCount eq null",
    "constraints/maxTaskRetryCount ge 10",
    "executionInfo/failureInfo/code eq 'FailureExitCode'",
    "executionInfo/failureInfo/category eq 'usererror'",
    "executionInfo/failureInfo/category eq 'userError'",
    "id eq 'T3' or id eq 't3'",
    "id gt 't2'",
    "eTag ne 'x' and lastModified ge 2000-01-01T00:00:00Z",
];

const JOB_FILTERS: &[&str] = &[
    "usesTaskDependencies",
    "usesTaskDependencies eq false",
    "not usesTaskDependencies",
    "priority gt 5",
    "priority eq 100",
    "priority le -5 or priority eq 3",
    "displayName eq null",
    "displayName lt 'a'",
    "onAllTasksComplete eq 'terminatejob'",
    "state eq 'active' and priority ge 0",
    "id ge 'J'",
    "id lt 'j'",
    "startswith(id,'j')",
    "poolInfo/poolId eq 'p'",
    "maxParallelTasks eq -1",
];

/// Every filter answers the same on SQLite and PostgreSQL (and the set is
/// not trivial: most select some rows but not all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_agree_between_backends() {
    let Some(pg) = common::postgres().await else { return };
    let lite = common::sqlite();
    let (a, b) = (open(&lite).await, open(&pg).await);
    varied(&a).await;
    varied(&b).await;
    let q = |f: &str| ListQuery { filter: Some(wire::odata::parse_filter(f).unwrap()), after: None, limit: 1000 };
    let mut partial = 0;
    for f in TASK_FILTERS {
        let (x, y) = (a.list_tasks("jjob0", q(f)).await.unwrap(), b.list_tasks("jjob0", q(f)).await.unwrap());
        assert_eq!(page_ids(&x), page_ids(&y), "tasks: {f}");
        partial += usize::from(!x.docs.is_empty() && x.docs.len() < 24);
    }
    assert!(partial >= TASK_FILTERS.len() * 2 / 3, "{partial} of {} task filters select some rows", TASK_FILTERS.len());
    let mut partial = 0;
    for f in JOB_FILTERS {
        let (x, y) = (a.list_jobs(q(f)).await.unwrap(), b.list_jobs(q(f)).await.unwrap());
        assert_eq!(page_ids(&x), page_ids(&y), "jobs: {f}");
        partial += usize::from(!x.docs.is_empty() && x.docs.len() < 6);
    }
    assert!(partial >= JOB_FILTERS.len() * 2 / 3, "{partial} of {} job filters select some rows", JOB_FILTERS.len());
    // Paging in key order (bytes of the lower-cased id) is the same too.
    for s in [&a, &b] {
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let p = s.list_tasks("jjob0", ListQuery { filter: None, after: after.clone(), limit: 5 }).await.unwrap();
            seen.extend(page_ids(&p));
            match p.next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort_by_key(|i| i.to_ascii_lowercase());
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 24);
    }
    // Counts agree.
    assert_eq!(format!("{:?}", a.task_counts("jjob0").await.unwrap()), format!("{:?}", b.task_counts("jjob0").await.unwrap()));
}

/// Autoscale's counts of a pool: ready active tasks only (a dependent that
/// waits is not counted), instances of a multi-instance task, running, and
/// completed by result; jobs of other pools and jobs not active do not count.
async fn pool_task_counts_for_autoscale(db: Db) {
    let s = open(&db).await;
    let mut j = job(&s, "j");
    j.uses_task_dependencies = true;
    s.create_job(j).await.unwrap();
    let mut multi = task(&s, "m");
    multi.task.multi_instance_settings =
        Some(MultiInstanceSettings { number_of_instances: Some(3), coordination_command_line: "true".into(), common_resource_files: None });
    let multi = NewTask::new(multi.task).unwrap();
    let tasks = vec![task(&s, "a"), task(&s, "b"), task(&s, "c"), task(&s, "d"), multi, dependent(&s, "w", &["a"], &[])];
    s.add_tasks("j", tasks, |_| Ok(())).await.unwrap();
    let q = serde_json::json!({"id": "q", "vmSize": "standard_d2s_v3", "state": "active"});
    s.create_pool("q", q.as_object().unwrap().clone()).await.unwrap();
    let mut other = job(&s, "elsewhere");
    other.pool_info.pool_id = Some("q".into());
    s.create_job(other).await.unwrap();
    s.add_tasks("elsewhere", vec![task(&s, "x")], |_| Ok(())).await.unwrap();
    let c = s.pool_task_counts("P").await.unwrap();
    assert_eq!(c, store::PoolTaskCounts { active: 4 + 3, running: 0, succeeded: 0, failed: 0 });

    let run = |_: &CloudJob, t: &mut CloudTask, _: wire::time::Timestamp| {
        t.state = TaskState::Running;
        Ok(())
    };
    let r = s.update_tasks(vec![("j".to_string(), "b".to_string(), run)], store::Durability::Synced).await.unwrap();
    r[0].as_ref().unwrap();
    complete(&s, "j", "c", 0).await;
    complete(&s, "j", "d", 1).await;
    assert_eq!(s.pool_task_counts("p").await.unwrap(), store::PoolTaskCounts { active: 1 + 3, running: 1, succeeded: 1, failed: 1 });
    complete(&s, "j", "a", 0).await;
    assert_eq!(s.pool_task_counts("p").await.unwrap().active, 3 + 1, "w is ready now that a succeeded");

    s.update_job("j", Default::default(), |_: &dyn store::Txn, j: &mut CloudJob, _| {
        j.state = JobState::Disabled;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(s.pool_task_counts("p").await.unwrap(), store::PoolTaskCounts::default(), "only active jobs count");
}
