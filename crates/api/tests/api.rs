//! The HTTP layer in-process: signed requests through the router, against a
//! real store in a temporary directory.

use api::{ApiConfig, App};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const ACCOUNT: &str = "testacct";
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Harness {
    app: Arc<App>,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(dir.path()).unwrap();
        let app = App::new(
            store,
            ApiConfig {
                strict_limits: false,
                autoscale_sample_interval: std::time::Duration::from_secs(30),
                file_roots: None,
                metrics: Default::default(),
                providers: Vec::new(),
                account: ACCOUNT.into(),
                keys: vec![KEY.to_vec()],
                public_url: None,
                transition_delay: std::time::Duration::from_millis(50),
                agent_token: String::new(),
                nodes_dir: dir.path().join("nodes"),
                applications_dir: dir.path().join("applications"),
                auto_storage: None,
                agent_program: None,
            },
        );
        api::start_background(app.clone(), None);
        Harness { app, _dir: dir }
    }

    /// A pool with no nodes, for jobs to name.
    async fn pool(&self, id: &str) {
        let r = self.call(Method::POST, &format!("/pools?{V}"), Some(json!({"id": id, "vmSize": "standard_d2s_v3"}))).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    async fn send(&self, method: Method, target: &str, body: Option<Value>, extra: &[(&str, &str)], sign: bool) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:9"));
        headers.insert("ocp-date", HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())).unwrap());
        headers.insert("client-request-id", HeaderValue::from_static("cid-1"));
        if !body.is_empty() || method == Method::POST {
            headers.insert("content-length", HeaderValue::from_str(&body.len().to_string()).unwrap());
        }
        if !body.is_empty() {
            headers.insert("content-type", HeaderValue::from_static("application/json; odata=minimalmetadata"));
        }
        for (k, v) in extra {
            headers.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        if sign {
            let auth = api::sharedkey::sign(ACCOUNT, KEY, &method, target, &headers);
            headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        }
        let mut req = Request::builder().method(method).uri(target).body(Body::from(body)).unwrap();
        *req.headers_mut() = headers;
        let resp = api::router(self.app.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Resp { status, headers, body }
    }

    async fn call(&self, method: Method, target: &str, body: Option<Value>) -> Resp {
        self.send(method, target, body, &[], true).await
    }
}

const V: &str = "api-version=2025-06-01";

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.body);
    assert_eq!(r.body["code"], code, "body: {}", r.body);
    let msg = r.body["message"]["value"].as_str().unwrap();
    assert!(msg.contains("\nRequestId:") && msg.contains("\nTime:"), "{msg}");
    assert_eq!(r.body["message"]["lang"], "en-US");
    assert!(r.headers.contains_key("request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_and_task_round_trip() {
    let h = Harness::new();
    // A job may name a pool that does not exist yet.
    let r = h.call(Method::POST, &format!("/jobs?{V}"), Some(json!({"id": "Job0", "poolInfo": {"poolId": "later"}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    h.pool("p").await;
    let r = h.call(Method::POST, &format!("/jobs?{V}"), Some(json!({"id": "Job1", "poolInfo": {"poolId": "p"}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["dataserviceid"], "http://127.0.0.1:9/jobs/Job1");
    assert_eq!(r.headers["client-request-id"], "cid-1");
    assert!(r.headers["etag"].to_str().unwrap().starts_with("0x"));

    let r = h.call(Method::POST, &format!("/jobs/job1/tasks?{V}"), Some(json!({"id": "t1", "commandLine": "/bin/true"}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = h.call(Method::GET, &format!("/jobs/job1/tasks/T1?{V}"), None).await;
    assert_eq!(r.status, 200);
    let t = &r.body;
    assert_eq!(t["id"], "t1");
    assert_eq!(t["url"], "http://127.0.0.1:9/jobs/job1/tasks/t1");
    assert_eq!(t["state"], "active");
    assert_eq!(t["requiredSlots"], 1);
    assert_eq!(t["constraints"]["maxWallClockTime"], "P10675199DT2H48M5.4775807S");
    assert_eq!(t["constraints"]["retentionTime"], "P7D");
    assert_eq!(t["constraints"]["maxTaskRetryCount"], 0);
    assert_eq!(t["userIdentity"]["autoUser"]["scope"], "pool");
    assert_eq!(t["executionInfo"]["retryCount"], 0);
    assert_eq!(t["executionInfo"]["requeueCount"], 0);
    assert_eq!(t["eTag"], r.headers["etag"].to_str().unwrap());
    assert!(t.get("stats").is_none());

    // Conditional GET and stale If-Match.
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let quoted = format!("\"{etag}\"");
    let r = h.send(Method::GET, &format!("/jobs/job1/tasks/t1?{V}"), None, &[("if-none-match", &quoted)], true).await;
    assert_eq!(r.status, 304);
    let r = h
        .send(
            Method::PUT,
            &format!("/jobs/job1/tasks/t1?{V}"),
            Some(json!({"constraints": {"maxTaskRetryCount": 3}})),
            &[("if-match", &etag)],
            true,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = h.send(Method::PUT, &format!("/jobs/job1/tasks/t1?{V}"), Some(json!({"constraints": {}})), &[("if-match", &etag)], true).await;
    assert_error(&r, 412, "ConditionNotMet");

    // Duplicate id, case-insensitively.
    let r = h.call(Method::POST, &format!("/jobs/job1/tasks?{V}"), Some(json!({"id": "T1", "commandLine": "x"}))).await;
    assert_error(&r, 409, "TaskExists");
    // Dependencies need usesTaskDependencies.
    let r = h
        .call(
            Method::POST,
            &format!("/jobs/job1/tasks?{V}"),
            Some(json!({"id": "t2", "commandLine": "x", "dependsOn": {"taskIds": ["t1"]}})),
        )
        .await;
    assert_error(&r, 400, "TaskDependenciesNotSpecifiedOnJob");

    // Terminate, then reactivate.
    let r = h.call(Method::POST, &format!("/jobs/job1/tasks/t1/terminate?{V}"), None).await;
    assert_eq!(r.status, 204);
    let r = h.call(Method::GET, &format!("/jobs/job1/tasks/t1?{V}"), None).await;
    assert_eq!(r.body["state"], "completed");
    assert_eq!(r.body["executionInfo"]["result"], "failure");
    assert_eq!(r.body["executionInfo"]["failureInfo"]["code"], "TaskEnded");
    let r = h.call(Method::POST, &format!("/jobs/job1/tasks/t1/terminate?{V}"), None).await;
    assert_error(&r, 409, "TaskCompleted");
    let r = h.call(Method::GET, &format!("/jobs/job1/taskcounts?{V}"), None).await;
    assert_eq!(r.body["taskCounts"], json!({"active": 0, "running": 0, "completed": 1, "succeeded": 0, "failed": 1}));
    let r = h.call(Method::POST, &format!("/jobs/job1/tasks/t1/reactivate?{V}"), None).await;
    assert_eq!(r.status, 204);
    let r = h.call(Method::GET, &format!("/jobs/job1/tasks/t1?{V}"), None).await;
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["previousState"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_paging_and_filters() {
    let h = Harness::new();
    h.pool("p").await;
    h.call(Method::POST, &format!("/jobs?{V}"), Some(json!({"id": "j", "poolInfo": {"poolId": "p"}}))).await;
    let tasks: Vec<Value> = (0..100).map(|i| json!({"id": format!("t{i:03}"), "commandLine": "x"})).collect();
    let r = h.call(Method::POST, &format!("/jobs/j/addtaskcollection?{V}"), Some(json!({"value": tasks}))).await;
    assert_eq!(r.status, 200);
    let results = r.body["value"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    assert!(results.iter().all(|x| x["status"] == "success" && x["location"].as_str().unwrap().ends_with(x["taskId"].as_str().unwrap())));

    // Mixed: a duplicate and an invalid task fail alone.
    let r = h
        .call(Method::POST, &format!("/jobs/j/addtaskcollection?{V}"), Some(json!({"value": [{"id": "t000", "commandLine": "x"}, {"id": "bad id", "commandLine": "x"}, {"id": "new", "commandLine": "x"}]})))
        .await;
    let v = r.body["value"].as_array().unwrap();
    assert_eq!(v[0]["status"], "clienterror");
    assert_eq!(v[0]["error"]["code"], "TaskExists");
    assert_eq!(v[1]["error"]["code"], "InvalidPropertyValue");
    assert_eq!(v[2]["status"], "success");

    let too_many: Vec<Value> = (0..101).map(|i| json!({"id": format!("x{i}"), "commandLine": "x"})).collect();
    let r = h.call(Method::POST, &format!("/jobs/j/addtaskcollection?{V}"), Some(json!({"value": too_many}))).await;
    assert_error(&r, 413, "RequestBodyTooLarge");

    // Follow nextLink verbatim, as 14.x does.
    let mut target = format!("/jobs/j/tasks?{V}&maxresults=30&$select=id,state");
    let mut ids = Vec::new();
    loop {
        let r = h.call(Method::GET, &target, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for t in r.body["value"].as_array().unwrap() {
            assert_eq!(t.as_object().unwrap().len(), 2, "select keeps id and state: {t}");
            ids.push(t["id"].as_str().unwrap().to_string());
        }
        match r.body.get("odata.nextLink").and_then(Value::as_str) {
            Some(link) => {
                assert!(link.starts_with("http://127.0.0.1:9/jobs/j/tasks?api-version=2025-06-01&maxresults=30&$select="), "{link}");
                target = link.trim_start_matches("http://127.0.0.1:9").to_string();
            }
            None => break,
        }
    }
    assert_eq!(ids.len(), 101);

    let r = h.call(Method::GET, &format!("/jobs/j/tasks?{V}&$filter=startswith(id,'t09')"), None).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 10, "{}", r.body);
    let r = h.call(Method::GET, &format!("/jobs/j/tasks?{V}&maxresults=0"), None).await;
    assert_error(&r, 400, "OutOfRangeQueryParameterValue");
    let r = h.call(Method::GET, &format!("/jobs/j/tasks?{V}&$filter=state%20eq"), None).await;
    assert_error(&r, 400, "InvalidQueryParameterValue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_auth_and_versions() {
    let h = Harness::new();
    let r = h.send(Method::GET, &format!("/jobs?{V}"), None, &[], false).await;
    assert_error(&r, 401, "InvalidAuthenticationInfo");
    let r = h.send(Method::GET, &format!("/jobs?{V}"), None, &[("authorization", "SharedKey testacct:AAAA")], false).await;
    assert_error(&r, 403, "AuthenticationFailed");
    assert_eq!(r.body["values"][0]["key"], "AuthenticationErrorDetail");
    let r = h.call(Method::GET, "/jobs?api-version=2099-01-01", None).await;
    assert_error(&r, 400, "UnsupportedRequestVersion");
    for v in api::API_VERSIONS {
        let r = h.call(Method::GET, &format!("/jobs?api-version={v}"), None).await;
        assert_eq!(r.status, 200, "{v}");
    }
    let r = h.call(Method::GET, "/jobs", None).await;
    assert_error(&r, 400, "MissingRequiredQueryParameter");
    let r = h.call(Method::GET, &format!("/nowhere?{V}"), None).await;
    assert_error(&r, 400, "InvalidUri");
    // Certificates are operations of the api-versions up to 2024-07-01.20.0 only.
    let r = h.call(Method::GET, "/certificates?api-version=2025-06-01", None).await;
    assert_error(&r, 400, "InvalidUri");
    let r = h.call(Method::GET, "/certificates(thumbprintAlgorithm=sha1,thumbprint=ab)?api-version=2024-07-01.20.0", None).await;
    assert_error(&r, 404, "CertificateNotFound");
    let r = h.call(Method::GET, &format!("/jobs/nojob?{V}"), None).await;
    assert_error(&r, 404, "JobNotFound");
    let r = h.call(Method::POST, &format!("/jobs?{V}"), Some(json!({"id": "j"}))).await;
    assert_error(&r, 400, "MissingRequiredProperty");
    assert_eq!(r.body["values"][0]["value"], "poolInfo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_transitions_are_visible_then_complete() {
    let h = Harness::new();
    h.pool("p").await;
    h.call(Method::POST, &format!("/jobs?{V}"), Some(json!({"id": "j", "poolInfo": {"poolId": "p"}}))).await;
    h.call(Method::POST, &format!("/jobs/j/tasks?{V}"), Some(json!({"id": "t", "commandLine": "x"}))).await;
    let r = h.call(Method::POST, &format!("/jobs/j/terminate?{V}"), Some(json!({"terminateReason": "because"}))).await;
    assert_eq!(r.status, 202);
    let r = h.call(Method::GET, &format!("/jobs/j?{V}"), None).await;
    assert_eq!(r.body["state"], "terminating");
    let mut state = String::new();
    for _ in 0..100 {
        let r = h.call(Method::GET, &format!("/jobs/j?{V}"), None).await;
        state = r.body["state"].as_str().unwrap().to_string();
        if state == "completed" {
            assert_eq!(r.body["executionInfo"]["terminateReason"], "because");
            assert!(r.body["executionInfo"]["endTime"].is_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state, "completed");
    let r = h.call(Method::POST, &format!("/jobs/j/tasks?{V}"), Some(json!({"id": "t2", "commandLine": "x"}))).await;
    assert_error(&r, 409, "JobCompleted");

    let r = h.call(Method::DELETE, &format!("/jobs/j?{V}"), None).await;
    assert_eq!(r.status, 202);
    let r = h.call(Method::GET, &format!("/jobs/j?{V}"), None).await;
    assert_eq!(r.body["state"], "deleting");
    let mut gone = false;
    for _ in 0..100 {
        let r = h.call(Method::GET, &format!("/jobs/j?{V}"), None).await;
        if r.status == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone);
    let r = h.call(Method::GET, &format!("/jobs/j/tasks/t?{V}"), None).await;
    assert_error(&r, 404, "JobNotFound");
}

/// The dashboard's files: served without a signature, with their content
/// types and revalidation; `/ui` redirects; the API beside them still wants a
/// signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_files_are_served_unsigned() {
    let h = Harness::new();
    let get = |path: &'static str, extra: Option<(&'static str, String)>, method: Method| {
        let app = h.app.clone();
        async move {
            let mut req = Request::builder().method(method).uri(path);
            if let Some((k, v)) = extra {
                req = req.header(k, v);
            }
            let resp = api::router(app).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            (status, headers, bytes)
        }
    };
    let (status, headers, _) = get("/ui", None, Method::GET).await;
    assert_eq!((status, headers.get("location").unwrap().to_str().unwrap()), (StatusCode::PERMANENT_REDIRECT, "/ui/"));
    let (status, headers, body) = get("/ui/", None, Method::GET).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(String::from_utf8_lossy(&body).contains("<script type=\"module\" src=\"./app.js\">"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, body) = get("/ui/index.html", Some(("if-none-match", etag)), Method::GET).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    for (path, ty) in [("/ui/app.js", "text/javascript"), ("/ui/sharedkey.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let (status, headers, body) = get(path, None, Method::GET).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with(ty), "{path}");
        assert_eq!(headers["content-length"].to_str().unwrap(), body.len().to_string());
    }
    let (status, headers, body) = get("/ui/app.js", None, Method::HEAD).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_ne!(headers["content-length"], "0");
    assert_eq!(get("/ui/../jobs", None, Method::GET).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get("/ui/missing.js", None, Method::GET).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get("/ui/app.js", None, Method::POST).await.0, StatusCode::METHOD_NOT_ALLOWED);
    // Only /ui and below: a pool called "ui-x" or the API are not the dashboard.
    let (status, _, _) = get("/uix", None, Method::GET).await;
    assert_ne!(status, StatusCode::OK);
    let r = h.send(Method::GET, &format!("/pools?{V}"), None, &[], false).await;
    assert_eq!(r.status, 401);
}
