//! The connection layer over real sockets: time limits on heads, bodies and
//! idle connections, authentication before the body, bounded bodies, the
//! connection cap, WebSockets after the upgrade, graceful shutdown.

use api::server::{Limits, ServeOptions};
use api::{ApiConfig, App};
use axum::http::{HeaderMap, HeaderValue, Method};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACCOUNT: &str = "testacct";
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const AGENT_TOKEN: &str = "agent-token-for-tests";
const V: &str = "api-version=2025-06-01";

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: Limits) -> Server {
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
                transition_delay: Duration::from_millis(50),
                agent_token: AGENT_TOKEN.into(),
                nodes_dir: dir.path().join("nodes"),
                applications_dir: dir.path().join("applications"),
                auto_storage: None,
                agent_program: None,
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = ServeOptions { limits, ..Default::default() };
        let done = tokio::spawn(api::serve(app, listener, opts, async move {
            let _ = rx.await;
        }));
        Server { addr, stop: Some(tx), done, _dir: dir }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

fn limits(header: u64, body: u64, idle: u64) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header),
        body_timeout: Duration::from_millis(body),
        idle_timeout: Duration::from_millis(idle),
        max_connections: 10_000,
    }
}

/// A request head, signed with `key` (None: no Authorization header).
fn head(method: &str, path: &str, length: Option<usize>, key: Option<&[u8]>, extra: &[(&str, &str)]) -> Vec<u8> {
    let target = format!("{path}?{V}");
    let method: Method = method.parse().unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1"));
    h.insert("ocp-date", HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())).unwrap());
    if let Some(n) = length {
        h.insert("content-length", HeaderValue::from_str(&n.to_string()).unwrap());
        h.insert("content-type", HeaderValue::from_static("application/json; odata=minimalmetadata"));
    }
    for (k, v) in extra {
        h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    if let Some(key) = key {
        let auth = api::sharedkey::sign(ACCOUNT, key, &method, &target, &h);
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    }
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &h {
        out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// Reads one response (Content-Length framed, as all of ours are).
async fn read_reply(s: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.expect("a response in time").unwrap();
        assert!(n > 0, "the connection closed before a response head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let headers = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = headers[9..12].parse().unwrap();
    let length: usize = headers
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    while buf.len() < end + length {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Reply { status, headers, body: String::from_utf8_lossy(&buf[end..end + length]).to_string() }
}

/// Waits until the server closes the connection (EOF or reset); how long it took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut chunk)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

fn code(r: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    v["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_cut_off() {
    let srv = Server::start(limits(800, 5_000, 30_000)).await;
    let mut s = srv.connect().await;
    s.write_all(b"GET /jobs?api-version=2025-06-01 HTTP/1.1\r\n").await.unwrap();
    let t = Instant::now();
    // One byte of a header every 100 ms: never a complete head.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"x").await.is_err() {
                return t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(10) {
                panic!("a trickling head was not cut off");
            }
        }
    };
    let cut = trickle.await;
    assert!(cut >= Duration::from_millis(700) && cut < Duration::from_millis(3_000), "cut after {cut:?}");
    // A head that arrives at once is served on a new connection.
    let mut s = srv.connect().await;
    s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
    assert_eq!(read_reply(&mut s).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let srv = Server::start(limits(30_000, 5_000, 700)).await;
    // Kept alive after a request, then idle.
    let mut s = srv.connect().await;
    s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.headers.to_ascii_lowercase().contains("connection: close"));
    let idle = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(idle >= Duration::from_millis(600), "closed after {idle:?}");
    // Never a byte.
    let mut s = srv.connect().await;
    let idle = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(idle >= Duration::from_millis(600), "closed after {idle:?}");
    // A connection in use is not idle: requests 300 ms apart for 2 s.
    let mut s = srv.connect().await;
    for _ in 0..7 {
        s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
        assert_eq!(read_reply(&mut s).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_large_post_is_refused_before_its_body() {
    let srv = Server::start(limits(5_000, 30_000, 30_000)).await;
    // Only the head of a 4,000,000-byte body: the answer comes without it.
    for (key, status, expected) in
        [(Some(&b"the wrong key, not the account's"[..]), 403, "AuthenticationFailed"), (None, 401, "InvalidAuthenticationInfo")]
    {
        let mut s = srv.connect().await;
        s.write_all(&head("POST", "/jobs", Some(4_000_000), key, &[])).await.unwrap();
        let r = read_reply(&mut s).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(code(&r), expected);
    }
    // A client that sends its body anyway still reads the answer (the rest
    // is drained, not buffered), and the connection stays usable.
    let body = vec![b' '; 300_000];
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", Some(body.len()), Some(b"the wrong key, not the account's"), &[])).await.unwrap();
    s.write_all(&body).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 403);
    s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
    assert_eq!(read_reply(&mut s).await.status, 200);
    // With `Expect: 100-continue` nothing is asked for: no 100, just the answer.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", Some(4_000_000), None, &[("expect", "100-continue")])).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 401, "{}", r.headers);
    // An authenticated request announcing more than the limit: 413 before the body.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", Some(5_000_000), Some(KEY), &[])).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(code(&r), "RequestBodyTooLarge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bad_and_slow_bodies() {
    let srv = Server::start(limits(5_000, 800, 30_000)).await;
    // Content-Length 100, 10 bytes, then the client stops sending.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", Some(100), Some(KEY), &[])).await.unwrap();
    s.write_all(br#"{"id": "x""#).await.unwrap();
    s.shutdown().await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(code(&r), "InvalidRequestBody");
    // A chunked body whose chunk is shorter than announced.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", None, Some(KEY), &[("transfer-encoding", "chunked")])).await.unwrap();
    s.write_all(b"20\r\n{\"id\": \"x\"").await.unwrap();
    s.shutdown().await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(code(&r), "InvalidRequestBody");
    // Chunk sizes that are not hex.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", None, Some(KEY), &[("transfer-encoding", "chunked")])).await.unwrap();
    s.write_all(b"zz\r\n{}\r\n0\r\n\r\n").await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(code(&r), "InvalidRequestBody");
    // A body that trickles in slower than the limit.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", Some(100), Some(KEY), &[])).await.unwrap();
    let t = Instant::now();
    s.write_all(b"{").await.unwrap();
    let r = read_reply(&mut s).await;
    assert!(t.elapsed() >= Duration::from_millis(700), "{:?}", t.elapsed());
    assert_eq!(r.status, 408, "{}", r.body);
    assert_eq!(code(&r), "OperationTimedOut");
    // A chunked body over the limit is refused once it passes the limit.
    let mut s = srv.connect().await;
    s.write_all(&head("POST", "/jobs", None, Some(KEY), &[("transfer-encoding", "chunked")])).await.unwrap();
    let chunk = vec![b' '; 1 << 20];
    let sender = async {
        for _ in 0..5 {
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
                || s.write_all(&chunk).await.is_err()
                || s.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        s
    };
    let mut s = tokio::time::timeout(Duration::from_secs(10), sender).await.expect("the body was taken in");
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(code(&r), "RequestBodyTooLarge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_served_while_2000_connections_idle() {
    let srv = Server::start(limits(30_000, 30_000, 30_000)).await;
    let mut idle = Vec::with_capacity(2000);
    for i in 0..2000 {
        let mut s = srv.connect().await;
        if i % 2 == 1 {
            // Half of them trickle the start of a head.
            s.write_all(b"GET /jobs HTTP/1.1\r\nx-slow: ").await.unwrap();
        }
        idle.push(s);
    }
    let t = Instant::now();
    let mut s = srv.connect().await;
    s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    // They were all still open (none was closed to make room).
    let mut open = 0;
    for s in &mut idle {
        let mut b = [0u8; 1];
        if let Err(e) = s.try_read(&mut b) {
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
            open += 1;
        }
    }
    assert_eq!(open, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_makes_room() {
    let mut l = limits(30_000, 30_000, 30_000);
    l.max_connections = 20;
    let srv = Server::start(l).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(srv.connect().await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut s = srv.connect().await;
    s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
    assert_eq!(read_reply(&mut s).await.status, 200);
    // The oldest made room.
    closed_within(&mut idle[0], Duration::from_secs(2)).await;
    // A connection busy with a request is never closed to make room: with
    // every slot holding an unfinished body, a new one waits.
    drop(idle);
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut busy = Vec::new();
    for _ in 0..20 {
        let mut b = srv.connect().await;
        b.write_all(&head("POST", "/jobs", Some(100), Some(KEY), &[])).await.unwrap();
        b.write_all(b"{").await.unwrap();
        busy.push(b);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = srv.connect().await;
    s.write_all(&head("GET", "/jobs", None, Some(KEY), &[])).await.unwrap();
    let mut b = [0u8; 1];
    assert!(tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await.is_err(), "answered while every slot was busy");
    // One busy request finishes (its body ends): the waiting one is served.
    let mut first = busy.remove(0);
    first.write_all(&[b' '; 99]).await.unwrap();
    assert_eq!(read_reply(&mut first).await.status, 400);
    drop(first);
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 200);
}

/// A masked client text frame.
fn text_frame(text: &str) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut f = vec![0x81];
    let n = text.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_websocket_outlives_the_idle_limit() {
    let srv = Server::start(limits(500, 500, 500)).await;
    let pool = br#"{"id": "p", "vmSize": "standard_d2s_v3"}"#;
    let mut c = srv.connect().await;
    c.write_all(&head("POST", "/pools", Some(pool.len()), Some(KEY), &[])).await.unwrap();
    c.write_all(pool).await.unwrap();
    assert_eq!(read_reply(&mut c).await.status, 201);
    let mut s = srv.connect().await;
    let req = format!(
        "GET {} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer {AGENT_TOKEN}\r\n\r\n",
        proto::CONNECT_PATH
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 101, "{}", r.headers);
    let hello = proto::ToServer::Hello(proto::Hello {
        version: proto::VERSION,
        pool_id: "p".into(),
        node_id: None,
        hostname: "test".into(),
        ip_address: "127.0.0.1".into(),
        agent_version: "test".into(),
        running: vec![],
        root_dir: "/nonexistent".into(),
        is_root: false,
        boot_id: "b1".into(),
        finished: vec![],
        held: vec![],
        leftovers: 0,
        ssh_port: None,
        cores: None,
    });
    s.write_all(&text_frame(&serde_json::to_string(&hello).unwrap())).await.unwrap();
    // Welcome, and whatever else the server sends, until well past every
    // time limit: the connection must stay open.
    let t = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while t.elapsed() < Duration::from_millis(2_000) {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut chunk)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => panic!("the agent's connection was closed after {:?}", t.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(String::from_utf8_lossy(&got).contains("welcome"), "{:?}", String::from_utf8_lossy(&got));
    // The node is in the pool.
    let mut c = srv.connect().await;
    c.write_all(&head("GET", "/pools/p/nodes", None, Some(KEY), &[])).await.unwrap();
    let r = read_reply(&mut c).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["value"].as_array().map(Vec::len), Some(1), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    let mut srv = Server::start(limits(5_000, 5_000, 30_000)).await;
    let mut s = srv.connect().await;
    let pool = br#"{"id": "p1", "vmSize": "standard_d2s_v3"}"#;
    s.write_all(&head("POST", "/pools", Some(pool.len()), Some(KEY), &[])).await.unwrap();
    s.write_all(&pool[..10]).await.unwrap();
    let mut idle = srv.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are no longer taken; the idle one is closed.
    closed_within(&mut idle, Duration::from_secs(2)).await;
    assert!(!srv.done.is_finished());
    s.write_all(&pool[10..]).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 201, "{}", r.body);
    tokio::time::timeout(Duration::from_secs(5), &mut srv.done).await.expect("serve returns").unwrap().unwrap();
}
