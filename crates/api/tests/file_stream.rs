//! Node files read through the API, with a stand-in agent: small reads come
//! back inline, large ones through the agent's data connection, piped to
//! the client only as fast as the client reads (the server buffers nothing
//! to speak of).

use api::{ApiConfig, App};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request};
use base64::Engine;
use futures_util::StreamExt;
use proto::{FileEntry, FileOp, FileReply, ToAgent};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

const ACCOUNT: &str = "testacct";
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const V: &str = "api-version=2025-06-01";

fn app(dir: &std::path::Path) -> Arc<App> {
    let store = store::Store::open(dir).unwrap();
    App::new(
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
            agent_token: "tok".into(),
            nodes_dir: dir.join("nodes"),
            applications_dir: dir.join("applications"),
            auto_storage: None,
            agent_program: None,
        },
    )
}

fn signed(method: Method, target: &str, body: &str) -> Request<Body> {
    signed_with(method, target, body, &[])
}

fn signed_with(method: Method, target: &str, body: &str, extra: &[(&'static str, &'static str)]) -> Request<Body> {
    let mut headers = HeaderMap::new();
    for (k, v) in extra {
        headers.insert(*k, HeaderValue::from_static(v));
    }
    headers.insert("host", HeaderValue::from_static("127.0.0.1:9"));
    headers.insert("ocp-date", HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())).unwrap());
    if !body.is_empty() {
        headers.insert("content-length", HeaderValue::from_str(&body.len().to_string()).unwrap());
        headers.insert("content-type", HeaderValue::from_static("application/json; odata=minimalmetadata"));
    }
    let auth = api::sharedkey::sign(ACCOUNT, KEY, &method, target, &headers);
    headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let mut req = Request::builder().method(method).uri(target).body(Body::from(body.to_string())).unwrap();
    *req.headers_mut() = headers;
    req
}

fn agent_post(key: &str, token: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("{}/{key}", proto::FILE_STREAM_PATH))
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .unwrap()
}

fn entry(size: u64) -> FileEntry {
    FileEntry { path: "big.bin".into(), is_dir: false, size, modified_ms: 1_700_000_000_000, created_ms: 1_700_000_000_000, mode: 0o100644 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_reads_are_piped_at_the_clients_pace() {
    const SIZE: u64 = 64 * 1024 * 1024 + 12345;
    const CHUNK: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let router = api::router(app.clone());
    let r = router.clone().oneshot(signed(Method::POST, &format!("/pools?{V}"), r#"{"id":"p","vmSize":"standard_d2s_v3"}"#)).await.unwrap();
    assert_eq!(r.status(), 201);
    // A stand-in agent joins the pool.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hello = proto::Hello {
        version: proto::VERSION,
        pool_id: "p".into(),
        node_id: None,
        hostname: "h".into(),
        ip_address: "127.0.0.1".into(),
        agent_version: "test".into(),
        running: vec![],
        root_dir: "/n".into(),
        is_root: false,
        boot_id: "b".into(),
        finished: vec![],
        held: vec![],
        leftovers: 0,
        ssh_port: None,
        cores: None,
    };
    let pool = control::pool::PoolSpec::from_doc(&serde_json::from_str(r#"{"id":"p"}"#).unwrap());
    // (As `serve` does before agents may join.)
    app.cluster.init_attempts().await.unwrap();
    let node = app.cluster.join(&hello, &pool, tx, "http://127.0.0.1:9").await.unwrap();

    // The agent: an inline reply for the first read, a stream for the second.
    let produced = Arc::new(AtomicU64::new(0));
    let agent = {
        let (app, router, produced) = (app.clone(), router.clone(), produced.clone());
        tokio::spawn(async move {
            let mut posted = None;
            while let Some(msg) = rx.recv().await {
                let ToAgent::File(req) = msg else { continue };
                let FileOp::Read { start, end, stream } = req.op else { panic!("not a read") };
                assert!(stream.len() >= 32, "a random stream key");
                if end.is_some() {
                    let data = base64::engine::general_purpose::STANDARD.encode(b"abc");
                    let reply = FileReply {
                        id: req.id,
                        error: None,
                        entries: vec![entry(SIZE)],
                        data: Some(data),
                        size: Some(SIZE),
                        stream: false,
                        length: Some(3),
                    };
                    app.cluster.file_reply(reply);
                    assert_eq!((start, end), (5, Some(8)));
                    continue;
                }
                // Wrong token, unknown key: refused.
                let r = router.clone().oneshot(agent_post(&stream, "nope", Body::empty())).await.unwrap();
                assert_eq!(r.status(), 403);
                let r = router.clone().oneshot(agent_post("unknown", "tok", Body::empty())).await.unwrap();
                assert_eq!(r.status(), 404);
                app.cluster.file_reply(FileReply {
                    id: req.id,
                    error: None,
                    entries: vec![entry(SIZE)],
                    data: None,
                    size: Some(SIZE),
                    stream: true,
                    length: Some(SIZE),
                });
                // The body is produced only when asked for.
                let produced = produced.clone();
                let body = futures_util::stream::unfold(0u64, move |sent| {
                    let produced = produced.clone();
                    async move {
                        if sent >= SIZE {
                            return None;
                        }
                        let n = (SIZE - sent).min(CHUNK as u64);
                        produced.fetch_add(n, Ordering::SeqCst);
                        let chunk = vec![(sent / CHUNK as u64) as u8; n as usize];
                        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), sent + n))
                    }
                });
                posted = Some(router.clone().oneshot(agent_post(&stream, "tok", Body::from_stream(body))).await.unwrap());
                break;
            }
            posted.unwrap().status()
        })
    };

    let target = format!("/pools/p/nodes/{node}/files/big.bin?{V}");
    let small = signed_with(Method::GET, &target, "", &[("ocp-range", "bytes=5-7")]);
    let r = router.clone().oneshot(small).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "3");
    assert_eq!(&axum::body::to_bytes(r.into_body(), 10).await.unwrap()[..], b"abc");

    let r = router.clone().oneshot(signed(Method::GET, &target, "")).await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-length"], SIZE.to_string().as_str());
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["ocp-batch-file-isdirectory"], "false");
    assert_eq!(h["ocp-batch-file-mode"], "0o100644");
    assert!(h["ocp-batch-file-url"].to_str().unwrap().ends_with(&format!("/pools/p/nodes/{node}/files/big.bin")));
    assert!(h.contains_key("last-modified") && h.contains_key("ocp-creation-time"));
    let mut body = r.into_body().into_data_stream();
    let mut consumed = body.next().await.unwrap().unwrap().len() as u64;
    // A client that stops reading stops the agent's producing.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ahead = produced.load(Ordering::SeqCst) - consumed;
    assert!(ahead <= 1024 * 1024, "{ahead} bytes produced ahead of a client that stopped reading");
    let mut chunks = 1u64;
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        assert!(c.iter().all(|b| *b == c[0]));
        consumed += c.len() as u64;
        chunks += 1;
        let ahead = produced.load(Ordering::SeqCst) - consumed;
        assert!(ahead <= 1024 * 1024, "{ahead} bytes ahead");
    }
    assert_eq!(consumed, SIZE);
    assert!(chunks > 100, "streamed, not in one piece");
    // The agent's upload is answered once the client has the whole file.
    assert_eq!(agent.await.unwrap(), 200);
}
