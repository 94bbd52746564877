//! Transfers against an in-process HTTP server that speaks the parts of the
//! Blob REST API the agent uses (with a SAS check, paging, flaky answers and
//! block blobs), and against plain directories.

use super::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode as S, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;

/// What the fake storage account holds and saw.
#[derive(Default)]
struct Store {
    blobs: HashMap<String, Vec<u8>>,
    /// Uncommitted blocks by (blob, block id).
    blocks: HashMap<(String, String), Vec<u8>>,
    /// The headers of the request that created each blob.
    headers: HashMap<String, HeaderMap>,
    /// GETs of a blob answered 503 before it is served.
    flaky_gets: HashMap<String, u32>,
    /// PUTs answered 503 before they are served.
    flaky_puts: u32,
    list_calls: u32,
    block_puts: u32,
    largest_block: usize,
}

type Shared = Arc<Mutex<Store>>;

const PAGE: usize = 2;

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn xml_error(status: S, code: &str) -> Response {
    let body = format!("\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>Details of {code}.\nRequestId:0</Message></Error>");
    (status, [("x-ms-error-code", code)], body).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(&v.replace('+', " "))))
        .collect();
    let path = decode(uri.path().trim_start_matches('/'));
    let (container, name) = path.split_once('/').map(|(c, n)| (c.to_string(), n.to_string())).unwrap_or((path.clone(), String::new()));
    if query.get("sig").map(String::as_str) != Some("secret") {
        return xml_error(S::FORBIDDEN, "AuthenticationFailed");
    }
    assert!(headers.contains_key("x-ms-version"), "{method} {uri} without x-ms-version");
    let comp = query.get("comp").map(String::as_str);
    let mut s = state.lock().unwrap();
    match container.as_str() {
        "denied" => return xml_error(S::FORBIDDEN, "AuthorizationPermissionMismatch"),
        "gone" => return xml_error(S::NOT_FOUND, "ContainerNotFound"),
        "c" => {}
        _ => return xml_error(S::NOT_FOUND, "ContainerNotFound"),
    }
    match method {
        Method::GET if comp == Some("list") => {
            assert_eq!(query.get("restype").map(String::as_str), Some("container"));
            s.list_calls += 1;
            let prefix = query.get("prefix").cloned().unwrap_or_default();
            let mut names: Vec<&String> = s.blobs.keys().filter(|n| n.starts_with(&prefix)).collect();
            names.sort();
            let start: usize = query.get("marker").and_then(|m| m.strip_prefix("page!")).and_then(|m| m.parse().ok()).unwrap_or(0);
            let end = (start + PAGE).min(names.len());
            let next = if end < names.len() { format!("page!{end}") } else { String::new() };
            let blobs: String = names[start..end]
                .iter()
                .map(|n| format!("<Blob><Name>{}</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>", escape(n)))
                .collect();
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"c\"><Prefix>{}</Prefix><MaxResults>{PAGE}</MaxResults><Blobs>{blobs}</Blobs><NextMarker>{next}</NextMarker></EnumerationResults>",
                escape(&prefix)
            );
            (S::OK, [("content-type", "application/xml")], xml).into_response()
        }
        Method::GET => {
            if let Some(left) = s.flaky_gets.get_mut(&name).filter(|l| **l > 0) {
                *left -= 1;
                return xml_error(S::SERVICE_UNAVAILABLE, "ServerBusy");
            }
            match s.blobs.get(&name) {
                Some(b) => (S::OK, b.clone()).into_response(),
                None => xml_error(S::NOT_FOUND, "BlobNotFound"),
            }
        }
        Method::PUT if s.flaky_puts > 0 => {
            s.flaky_puts -= 1;
            xml_error(S::SERVICE_UNAVAILABLE, "ServerBusy")
        }
        Method::PUT if comp == Some("block") => {
            s.block_puts += 1;
            s.largest_block = s.largest_block.max(body.len());
            s.blocks.insert((name, query["blockid"].clone()), body.to_vec());
            S::CREATED.into_response()
        }
        Method::PUT if comp == Some("blocklist") => {
            let xml = String::from_utf8_lossy(&body).into_owned();
            let mut data = Vec::new();
            for part in xml.split("<Latest>").skip(1) {
                let id = part.split("</Latest>").next().unwrap_or_default().to_string();
                match s.blocks.get(&(name.clone(), id)) {
                    Some(b) => data.extend_from_slice(b),
                    None => return xml_error(S::BAD_REQUEST, "InvalidBlockList"),
                }
            }
            s.blobs.insert(name.clone(), data);
            s.headers.insert(name, headers);
            S::CREATED.into_response()
        }
        Method::PUT => {
            assert_eq!(headers.get("x-ms-blob-type").map(|v| v.as_bytes()), Some(&b"BlockBlob"[..]));
            let declared = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
            assert_eq!(declared, Some(body.len()), "Put Blob carries its exact length");
            assert!(headers.get("transfer-encoding").is_none(), "Put Blob is not chunked");
            s.blobs.insert(name.clone(), body.to_vec());
            s.headers.insert(name, headers);
            S::CREATED.into_response()
        }
        _ => S::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn server() -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Store::default()));
    let app = axum::Router::new().fallback(handle).layer(axum::extract::DefaultBodyLimit::disable()).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

/// A transfer with quick retries.
/// An open directory to download into or upload from.
fn opened(p: &Path) -> nodefs::Dir {
    nodefs::Dir::open(p).unwrap()
}

fn quick() -> Transfer {
    Transfer { backoff: Duration::from_millis(2), ..Transfer::new() }
}

fn rf(http: Option<&str>, container: Option<&str>, prefix: Option<&str>, path: Option<&str>, mode: Option<&str>) -> ResourceFileSpec {
    ResourceFileSpec {
        http_url: http.map(Into::into),
        container_url: container.map(Into::into),
        blob_prefix: prefix.map(Into::into),
        file_path: path.map(Into::into),
        file_mode: mode.map(Into::into),
    }
}

fn out(pattern: &str, container: &str, path: Option<&str>, condition: &str) -> OutputFileSpec {
    OutputFileSpec {
        file_pattern: pattern.into(),
        container_url: container.into(),
        path: path.map(Into::into),
        upload_headers: Vec::new(),
        upload_condition: condition.into(),
    }
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn put_blobs(state: &Shared, blobs: &[(&str, &str)]) {
    let mut s = state.lock().unwrap();
    for (n, v) in blobs {
        s.blobs.insert(n.to_string(), v.as_bytes().to_vec());
    }
}

#[tokio::test]
async fn downloads_files_and_paged_containers() {
    let (base, state) = server().await;
    put_blobs(
        &state,
        &[
            ("x/1.txt", "one"),
            ("x/sub/2.txt", "two"),
            ("x/a b+c ü&.txt", "odd name"),
            ("x/dir/", ""),
            ("y/3.txt", "three"),
            ("flaky", "finally"),
        ],
    );
    state.lock().unwrap().flaky_gets.insert("flaky".into(), 2);
    let dir = tempfile::tempdir().unwrap();
    let sas = format!("{base}/c?sv=1&sig=secret");
    let uid_gid = unsafe { (libc::geteuid(), libc::getegid()) };
    // Spawned: the future must be Send for the agent.
    let t = quick();
    let specs = vec![
        rf(Some(&format!("{base}/c/y/3.txt?sig=secret")), None, None, Some("in/a.txt"), Some("0755")),
        rf(None, Some(&sas), None, Some("all"), None),
        rf(None, Some(&sas), Some("x/"), None, Some("600")),
        rf(Some(&format!("{base}/c/flaky?sig=secret")), None, None, Some("flaky.txt"), None),
        rf(Some(&format!("{base}/c/y/3.txt?sig=secret")), None, None, None, None),
        rf(None, Some(&sas), Some("nothing/"), None, None),
    ];
    let wd = dir.path().to_path_buf();
    let stats = tokio::spawn(async move { t.download(&specs, &opened(&wd), Some(uid_gid)).await }).await.unwrap().unwrap();
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("in/a.txt"), "three");
    assert_eq!(mode_of(&dir.path().join("in/a.txt")), 0o755);
    for (p, v) in [
        ("all/x/1.txt", "one"),
        ("all/x/sub/2.txt", "two"),
        ("all/x/a b+c ü&.txt", "odd name"),
        ("all/y/3.txt", "three"),
        ("all/flaky", "finally"),
        ("x/1.txt", "one"),
        ("x/sub/2.txt", "two"),
    ] {
        assert_eq!(read(p), v, "{p}");
    }
    assert!(!dir.path().join("y").exists(), "the prefix filters");
    assert!(!dir.path().join("x/dir").exists(), "directory markers are skipped");
    assert_eq!(mode_of(&dir.path().join("x/1.txt")), 0o600);
    assert_eq!(mode_of(&dir.path().join("all/y/3.txt")), 0o770, "the service's default mode");
    assert_eq!(read("flaky.txt"), "finally", "503s are retried");
    assert_eq!(read("3.txt"), "three", "without a file path: the URL's last segment");
    assert_eq!(stats.files, 1 + 5 + 3 + 1 + 1);
    assert_eq!(stats.bytes, 5 + (3 + 3 + 8 + 5 + 7) + (3 + 3 + 8) + 7 + 5);
    let s = state.lock().unwrap();
    assert_eq!(s.list_calls, 3 + 2 + 1, "6 blobs over pages of 2; 4 under x/; none under nothing/");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.path().join("all/x/sub")).unwrap();
    assert_eq!((m.uid(), m.gid()), uid_gid, "created directories are the owner's");
}

#[tokio::test]
async fn download_failures_carry_the_services_codes() {
    let (base, state) = server().await;
    put_blobs(&state, &[("always-busy", "x")]);
    state.lock().unwrap().flaky_gets.insert("always-busy".into(), 100);
    let dir = tempfile::tempdir().unwrap();
    let t = quick();
    let one = |spec: ResourceFileSpec| {
        let t = t.clone();
        let wd = dir.path().to_path_buf();
        async move { t.download(&[spec], &opened(&wd), None).await.unwrap_err() }
    };
    let f = one(rf(Some(&format!("{base}/c/nope?sv=1&sig=secret")), None, None, Some("a"), None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("BlobNotFound", false));
    assert!(!f.message.contains("secret") && f.message.contains("sig=REDACTED"), "{}", f.message);
    assert!(f.message.contains("BlobNotFound: Details of BlobNotFound."), "the storage error is quoted: {}", f.message);

    let f = one(rf(None, Some(&format!("{base}/denied?sig=secret")), None, None, None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("BlobAccessDenied", false));
    let f = one(rf(Some(&format!("{base}/c/x?sig=wrong")), None, None, Some("a"), None)).await;
    assert_eq!(f.code, "BlobAccessDenied", "a bad SAS");

    let f = one(rf(Some(&format!("{base}/c/always-busy?sig=secret")), None, None, Some("a"), None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("BlobDownloadMiscError", true));
    assert_eq!(state.lock().unwrap().flaky_gets["always-busy"], 100 - 5, "one try and four retries");

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let f = one(rf(Some(&format!("http://127.0.0.1:{port}/f?sig=secret")), None, None, Some("a"), None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("BlobDownloadMiscError", true));
    assert!(!f.message.contains("secret"), "{}", f.message);

    let f = one(rf(None, None, None, None, None)).await;
    assert!(f.message.contains("autoStorageContainerName"));
    let f = one(rf(Some(&format!("{base}/c/a?sig=secret")), None, None, Some("../escape"), None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("ResourceFileCreateFailed", false));
    let f = one(rf(Some("ftp://h/f"), None, None, Some("a"), None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("BlobDownloadMiscError", false));
    let f = one(rf(Some(&format!("{base}/c/a?sig=secret")), None, None, Some("a"), Some("9z"))).await;
    assert_eq!(f.code, "ResourceFileCreateFailed");

    // A blob whose name climbs out of the directory is refused.
    put_blobs(&state, &[("../evil", "x")]);
    let f = one(rf(None, Some(&format!("{base}/c?sig=secret")), Some("../"), None, None)).await;
    assert_eq!(f.code, "ResourceFileCreateFailed");
    assert!(!dir.path().parent().unwrap().join("evil").exists());

    // A file where a directory must go.
    std::fs::write(dir.path().join("plain"), "").unwrap();
    put_blobs(&state, &[("ok", "x")]);
    let f = one(rf(Some(&format!("{base}/c/ok?sig=secret")), None, None, Some("plain/inner"), None)).await;
    assert_eq!((f.code.as_str(), f.server_error), ("ResourceDirectoryCreateFailed", false));
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and reads requests, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let http = reqwest::Client::builder().read_timeout(Duration::from_millis(200)).build().unwrap();
    let t = Transfer { http, ..quick() };
    let dir = tempfile::tempdir().unwrap();
    let f = t
        .download(&[rf(Some(&format!("http://{addr}/f?sig=secret")), None, None, Some("f"), None)], &opened(dir.path()), None)
        .await
        .unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("BlobDownloadTimedOut", true), "{}", f.message);
}

#[tokio::test]
async fn a_body_cut_short_fails_and_leaves_no_partial_file() {
    // Promises 1,000 bytes, sends 10, closes the connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789").await;
            drop(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let f = quick()
        .download(&[rf(Some(&format!("http://{addr}/f")), None, None, Some("part.bin"), None)], &opened(dir.path()), None)
        .await
        .unwrap_err();
    assert_eq!(f.code, "BlobDownloadMiscError", "{}", f.message);
    assert!(!dir.path().join("part.bin").exists(), "the partial file was removed");
}

fn big_data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 65536) as u8).collect()
}

#[tokio::test]
async fn uploads_by_pattern_condition_and_in_blocks() {
    let (base, state) = server().await;
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(wd.join("sub")).unwrap();
    for (p, v) in [("a.txt", "A"), ("b.txt", "B"), ("sub/c.txt", "C"), (".hidden.txt", "H"), ("data.json", "{}")] {
        std::fs::write(wd.join(p), v).unwrap();
    }
    std::fs::write(task_dir.path().join("stdout.txt"), "out").unwrap();
    std::fs::write(task_dir.path().join("stderr.txt"), "err").unwrap();
    let big = big_data(BLOCK_SIZE * 2 + 12_345);
    std::fs::write(wd.join("big.bin"), &big).unwrap();
    let c = format!("{base}/c?sv=1&sig=secret");
    let mut meta = out("a.txt", &c, Some("meta/a.txt"), "taskcompletion");
    meta.upload_headers = vec![("x-ms-meta-origin".into(), "openbatch".into())];
    let mut big_meta = out("big.bin", &c, Some("renamed/big.bin"), "tasksuccess");
    big_meta.upload_headers = vec![("x-ms-meta-origin".into(), "openbatch".into())];
    let mut typed = out("data.json", &c, Some("typed"), "taskcompletion");
    typed.upload_headers = vec![("Content-Type".into(), "text/x-custom".into()), ("Content-Encoding".into(), "identity".into())];
    let specs = vec![
        out("*.txt", &c, Some("txt"), "tasksuccess"),
        out("**/*.txt", &c, Some("all/"), "taskcompletion"),
        big_meta,
        out("../std*.txt", &c, Some("logs"), "taskcompletion"),
        out("$OUT_NAME", &c, None, "TaskSuccess"),
        out("*.txt", &c, Some("failed"), "taskfailure"),
        out("missing.txt", &c, None, "taskcompletion"),
        out("nothing/**/*.x", &c, None, "taskcompletion"),
        meta,
        typed,
    ];
    state.lock().unwrap().flaky_puts = 2;
    let env: BTreeMap<String, String> = [("OUT_NAME".to_string(), "sub/c.txt".to_string())].into();
    let stats = quick().upload(&specs, &opened(task_dir.path()), &wd, true, &env).await.unwrap();
    let s = state.lock().unwrap();
    let mut names: Vec<&String> = s.blobs.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "all/a.txt",
            "all/b.txt",
            "all/sub/c.txt",
            "c.txt",
            "logs/stderr.txt",
            "logs/stdout.txt",
            "meta/a.txt",
            "renamed/big.bin",
            "txt/a.txt",
            "txt/b.txt",
            "typed"
        ]
    );
    assert!(s.blobs["renamed/big.bin"] == big, "reassembled from its blocks");
    assert_eq!(s.block_puts, 3);
    assert_eq!(s.largest_block, BLOCK_SIZE);
    assert_eq!(s.blobs["logs/stdout.txt"], b"out");
    assert_eq!(s.blobs["c.txt"], b"C", "a single file without path keeps its name");
    let h = |blob: &str, header: &str| s.headers[blob].get(header).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("txt/a.txt", "content-type").as_deref(), Some("text/plain"));
    assert_eq!(h("renamed/big.bin", "x-ms-blob-content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(h("renamed/big.bin", "x-ms-meta-origin").as_deref(), Some("openbatch"));
    assert_eq!(h("meta/a.txt", "x-ms-meta-origin").as_deref(), Some("openbatch"));
    assert_eq!(h("txt/a.txt", "x-ms-meta-origin"), None);
    assert_eq!(h("typed", "content-type").as_deref(), Some("text/x-custom"), "the user's type wins");
    assert_eq!(h("typed", "content-encoding").as_deref(), Some("identity"));
    assert_eq!(stats.files, 11);
    assert_eq!(stats.bytes, (big.len() + 2 + 3 + 6 + 1 + 1 + 2) as u64);
    let log = std::fs::read_to_string(task_dir.path().join("fileuploadout.txt")).unwrap();
    assert!(log.contains("uploaded 11 files"), "{log}");
    assert!(log.contains("'missing.txt' (missing.txt) matched no files"), "{log}");
    assert!(log.contains("skipped '*.txt': upload condition taskfailure not met"), "{log}");
    assert!(log.contains("big.bin to ") && log.contains("renamed/big.bin?sv=1&sig=REDACTED"), "{log}");
    assert!(!log.contains("secret"));
    assert_eq!(log.lines().filter(|l| l.contains(" uploaded /")).count(), 11);
    assert_eq!(std::fs::read_to_string(task_dir.path().join("fileuploaderr.txt")).unwrap(), "");
}

#[tokio::test]
async fn small_blocks_empty_files_and_odd_names() {
    let (base, state) = server().await;
    let task_dir = tempfile::tempdir().unwrap();
    let data = big_data(10_500);
    std::fs::write(task_dir.path().join("f.dat"), &data).unwrap();
    std::fs::write(task_dir.path().join("empty.txt"), "").unwrap();
    std::fs::write(task_dir.path().join("ü n+i&.txt"), "odd").unwrap();
    let t = Transfer { block_size: 1000, ..quick() };
    let c = format!("{base}/c?sig=secret");
    let specs = [
        out("f.dat", &c, None, "taskcompletion"),
        out("empty.txt", &c, None, "taskcompletion"),
        out("ü*.txt", &c, Some("d"), "taskcompletion"),
    ];
    let stats = t.upload(&specs, &opened(task_dir.path()), task_dir.path(), false, &BTreeMap::new()).await.unwrap();
    assert_eq!(stats, Stats { files: 3, bytes: 10_500 + 3 });
    let s = state.lock().unwrap();
    assert_eq!(s.block_puts, 11);
    assert!(s.blobs["f.dat"] == data, "blocks committed in order");
    assert_eq!(s.blobs["empty.txt"], b"");
    assert_eq!(s.blobs["d/ü n+i&.txt"], b"odd");
}

#[tokio::test]
async fn upload_failures_are_logged_and_coded() {
    let (base, state) = server().await;
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    std::fs::write(wd.join("r.txt"), "R").unwrap();
    let t = quick();
    let up = |specs: Vec<OutputFileSpec>| {
        let (t, td, wd) = (t.clone(), task_dir.path().to_path_buf(), wd.clone());
        async move { t.upload(&specs, &opened(&td), &wd, false, &BTreeMap::new()).await }
    };
    let f = up(vec![
        out("r.txt", &format!("{base}/gone?sig=secret"), None, "taskcompletion"),
        out("r.txt", &format!("{base}/c?sig=secret"), None, "taskfailure"),
    ])
    .await
    .unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadContainerNotFound", false));
    assert!(state.lock().unwrap().blobs.contains_key("r.txt"), "the other uploads still happen");
    let err = std::fs::read_to_string(task_dir.path().join("fileuploaderr.txt")).unwrap();
    assert!(err.contains("FileUploadContainerNotFound") && err.contains("r.txt"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    let outl = std::fs::read_to_string(task_dir.path().join("fileuploadout.txt")).unwrap();
    assert!(outl.contains("uploaded 1 files") && outl.contains("1 failed"), "{outl}");

    let f = up(vec![out("r.txt", &format!("{base}/denied?sig=secret"), None, "taskcompletion")]).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadAccessDenied", false));
    assert!(f.message.contains("AuthorizationPermissionMismatch"), "{}", f.message);

    state.lock().unwrap().flaky_puts = 100;
    let f = up(vec![out("r.txt", &format!("{base}/c?sig=secret"), None, "taskcompletion")]).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadMiscError", true));
    assert_eq!(state.lock().unwrap().flaky_puts, 95, "one try and four retries");
    state.lock().unwrap().flaky_puts = 0;

    let f = up(vec![out("r.txt", "not a url", None, "taskcompletion")]).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadMiscError", false));
    let mut bad = out("r.txt", &format!("{base}/c?sig=secret"), None, "taskcompletion");
    bad.upload_headers = vec![("bad header".into(), "x".into())];
    let f = up(vec![bad]).await.unwrap_err();
    assert!(f.message.contains("bad header"));

    // Nothing matched is not a failure.
    let stats = up(vec![out("none*.txt", &format!("{base}/gone?sig=secret"), None, "taskcompletion")]).await.unwrap();
    assert_eq!(stats, Stats::default());
    assert_eq!(std::fs::read_to_string(task_dir.path().join("fileuploaderr.txt")).unwrap(), "");
}

#[tokio::test]
async fn shared_directories_both_ways() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("in/deep")).unwrap();
    std::fs::write(src.path().join("in/deep/f.txt"), "F").unwrap();
    std::fs::write(src.path().join("in/g.txt"), "G").unwrap();
    std::fs::write(src.path().join("top.txt"), "T").unwrap();
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    let t = Transfer::new();
    let url = format!("file://{}", src.path().display());
    let stats = t
        .download(
            &[
                rf(None, Some(&url), Some("in/"), Some("dl"), Some("0640")),
                rf(Some(&format!("{url}/top.txt")), None, None, Some("t.txt"), None),
            ],
            &opened(&wd),
            None,
        )
        .await
        .unwrap();
    assert_eq!(stats, Stats { files: 3, bytes: 3 });
    assert_eq!(std::fs::read_to_string(wd.join("dl/in/deep/f.txt")).unwrap(), "F");
    assert_eq!(std::fs::read_to_string(wd.join("dl/in/g.txt")).unwrap(), "G");
    assert_eq!(mode_of(&wd.join("dl/in/g.txt")), 0o640);
    assert_eq!(std::fs::read_to_string(wd.join("t.txt")).unwrap(), "T");
    assert!(!wd.join("dl/top.txt").exists(), "the prefix filters");
    let f = t.download(&[rf(Some(&format!("{url}/missing")), None, None, Some("m"), None)], &opened(&wd), None).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("BlobNotFound", false));
    let f = t.download(&[rf(None, Some("file:///no/such/dir"), None, None, None)], &opened(&wd), None).await.unwrap_err();
    assert_eq!(f.code, "BlobNotFound");

    let dst = tempfile::tempdir().unwrap();
    let durl = format!("file://{}", dst.path().display());
    let stats = t
        .upload(
            &[out("dl/**/*.txt", &durl, Some("res"), "tasksuccess"), out("t.txt", &durl, Some("one/t2.txt"), "tasksuccess")],
            &opened(task_dir.path()),
            &wd,
            true,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(stats.files, 3);
    assert_eq!(std::fs::read_to_string(dst.path().join("res/in/deep/f.txt")).unwrap(), "F");
    assert_eq!(std::fs::read_to_string(dst.path().join("res/in/g.txt")).unwrap(), "G");
    assert_eq!(std::fs::read_to_string(dst.path().join("one/t2.txt")).unwrap(), "T");
    let f = t
        .upload(&[out("t.txt", "file:///no/such/dir", None, "tasksuccess")], &opened(task_dir.path()), &wd, true, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadContainerNotFound", false));
    let f = t
        .upload(&[out("t.txt", &durl, Some("../../escape"), "tasksuccess")], &opened(task_dir.path()), &wd, true, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(f.code, "FileUploadMiscError");

    // Restricted to a root: the share works, other paths are refused.
    let limited = Transfer::new().with_file_roots(vec![src.path().to_path_buf(), dst.path().to_path_buf()]);
    limited.download(&[rf(Some(&format!("{url}/top.txt")), None, None, Some("again.txt"), None)], &opened(&wd), None).await.unwrap();
    let f = limited.download(&[rf(Some("file:///etc/hostname"), None, None, Some("h"), None)], &opened(&wd), None).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("BlobAccessDenied", false));
    let f = limited.download(&[rf(None, Some(&format!("{url}/../")), None, Some("h"), None)], &opened(&wd), None).await.unwrap_err();
    assert_eq!(f.code, "BlobAccessDenied");
    let f = limited
        .upload(
            &[out("t.txt", &format!("file://{}", wd.display()), None, "tasksuccess")],
            &opened(task_dir.path()),
            &wd,
            true,
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadAccessDenied", false));
}

#[test]
fn confinement_and_helpers() {
    for ok in ["a", "a/b", "a/b/../c", "./a", "a/..", "", "..a/b", "a/.../b"] {
        assert!(file_path_is_confined(ok), "{ok}");
    }
    for bad in ["/etc/passwd", "..", "../a", "a/../../c", "a/./../..", "a\0b"] {
        assert!(!file_path_is_confined(bad), "{bad}");
    }
    assert_eq!(url_file_name("http://h/c/dir/f%20g.txt?sig=1"), Some("f g.txt".into()));
    assert_eq!(url_file_name("file:///mnt/s/f"), Some("f".into()));
    assert_eq!(url_file_name("http://h/"), None);
    assert_eq!(url_file_name("http://h"), None);
    assert_eq!(parse_mode(Some("0755")), Ok(0o755));
    assert_eq!(parse_mode(Some("755")), Ok(0o755));
    assert_eq!(parse_mode(None), Ok(0o770));
    assert!(parse_mode(Some("8")).is_err() && parse_mode(Some("77777")).is_err());
    assert!(condition_met("taskcompletion", false) && condition_met("tasksuccess", true) && !condition_met("tasksuccess", false));
    assert!(condition_met("taskfailure", false) && !condition_met("TaskFailure", true));
    assert_eq!(block_size_for(100, BLOCK_SIZE as u64), BLOCK_SIZE as u64);
    assert_eq!(block_size_for(10_500, 1000), 1000);
    let huge = 1u64 << 40;
    let b = block_size_for(huge, BLOCK_SIZE as u64);
    assert!(huge.div_ceil(b) <= MAX_BLOCKS && b.is_multiple_of(1024 * 1024), "{b}");
    assert_eq!(Failure::server("X", "m").category(), "servererror");
    assert_eq!(Failure::user("X", "m").to_string(), "X: m");
}

/// Against a real Blob service (Azurite or Azure): set
/// `TRANSFER_TEST_CONTAINER_URL` to a container URL with a SAS allowing
/// read, add, create, write and list, and `TRANSFER_TEST_MISSING_URL` to a
/// SAS URL of a container that does not exist; then run
/// `cargo test -p transfer -- --ignored`.
#[tokio::test]
#[ignore]
async fn round_trip_against_a_blob_service() {
    let (Ok(container), Ok(missing)) = (std::env::var("TRANSFER_TEST_CONTAINER_URL"), std::env::var("TRANSFER_TEST_MISSING_URL")) else {
        panic!("set TRANSFER_TEST_CONTAINER_URL and TRANSFER_TEST_MISSING_URL");
    };
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(wd.join("out/deep")).unwrap();
    std::fs::write(wd.join("out/a.txt"), "alpha").unwrap();
    std::fs::write(wd.join("out/deep/b one.csv"), "b,1").unwrap();
    let big = big_data(BLOCK_SIZE + 4321);
    std::fs::write(wd.join("out/big.bin"), &big).unwrap();
    let mut spec = out("out/**/*", &container, Some("rt"), "taskcompletion");
    spec.upload_headers = vec![("x-ms-meta-origin".into(), "openbatch".into())];
    let t = Transfer::new();
    let stats = t.upload(&[spec], &opened(task_dir.path()), &wd, true, &BTreeMap::new()).await.unwrap();
    assert_eq!(stats.files, 3);

    let back = tempfile::tempdir().unwrap();
    let stats = t.download(&[rf(None, Some(&container), Some("rt/"), Some("got"), None)], &opened(back.path()), None).await.unwrap();
    assert_eq!(stats.files, 3);
    assert_eq!(std::fs::read_to_string(back.path().join("got/rt/a.txt")).unwrap(), "alpha");
    assert_eq!(std::fs::read_to_string(back.path().join("got/rt/deep/b one.csv")).unwrap(), "b,1");
    assert!(std::fs::read(back.path().join("got/rt/big.bin")).unwrap() == big);

    let (base, sas) = container.split_once('?').unwrap();
    let one = format!("{base}/rt/deep/b%20one.csv?{sas}");
    t.download(&[rf(Some(&one), None, None, Some("single.csv"), None)], &opened(back.path()), None).await.unwrap();
    assert_eq!(std::fs::read_to_string(back.path().join("single.csv")).unwrap(), "b,1");
    let meta = Transfer::new().http.head(&one).header("x-ms-version", blob::VERSION).send().await.unwrap();
    assert_eq!(meta.headers()["x-ms-meta-origin"], "openbatch");
    assert_eq!(meta.headers()["content-type"], "text/csv");

    let f = t
        .download(&[rf(Some(&format!("{base}/rt/nope?{sas}")), None, None, Some("x"), None)], &opened(back.path()), None)
        .await
        .unwrap_err();
    assert_eq!(f.code, "BlobNotFound", "{}", f.message);
    let f = t
        .upload(&[out("out/a.txt", &missing, None, "taskcompletion")], &opened(task_dir.path()), &wd, true, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(f.code, "FileUploadContainerNotFound", "{}", f.message);
    let bad_sig = container.replace("sig=", "sig=AAAA");
    let f = t
        .upload(&[out("out/a.txt", &bad_sig, None, "taskcompletion")], &opened(task_dir.path()), &wd, true, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(f.code, "FileUploadAccessDenied", "{}", f.message);
}

/// The agent spawns transfers on a multi-threaded runtime.
#[test]
fn transfer_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let t = Transfer::new();
    let env = BTreeMap::new();
    let root = opened(Path::new("/"));
    send(t.upload(&[], &root, Path::new("/"), true, &env));
    send(t.download(&[], &root, None));
    send(t.clone());
}

/// Everything a task can plant in its directories (or in a shared
/// directory it can write) to have the agent, as root, write or read
/// outside them: none of it is followed.
#[tokio::test]
async fn planted_links_are_never_followed() {
    use std::os::unix::fs::{symlink, MetadataExt};
    let (base, state) = server().await;
    put_blobs(&state, &[("in/input.txt", "downloaded"), ("in/sub/x.txt", "nested")]);
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "VICTIM").unwrap();
    let before = std::fs::metadata(&victim).unwrap();
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    let owner = Some(unsafe { (libc::geteuid(), libc::getegid()) });
    let t = quick();

    // Downloads: a link where a file goes is replaced (HTTP and file://), a
    // linked directory on the way fails the task.
    symlink(&victim, wd.join("input.txt")).unwrap();
    symlink(&victim, wd.join("copy.txt")).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("c.txt"), "copied").unwrap();
    let specs = [
        rf(Some(&format!("{base}/c/in/input.txt?sig=secret")), None, None, Some("input.txt"), None),
        rf(Some(&format!("file://{}/c.txt", src.path().display())), None, None, Some("copy.txt"), None),
    ];
    t.download(&specs, &opened(&wd), owner).await.unwrap();
    assert_eq!(std::fs::read_to_string(wd.join("input.txt")).unwrap(), "downloaded");
    assert_eq!(std::fs::read_to_string(wd.join("copy.txt")).unwrap(), "copied");
    assert!(!std::fs::symlink_metadata(wd.join("input.txt")).unwrap().file_type().is_symlink());
    symlink(outside.path(), wd.join("sub")).unwrap();
    for spec in [
        rf(Some(&format!("{base}/c/in/sub/x.txt?sig=secret")), None, None, Some("sub/x.txt"), None),
        rf(None, Some(&format!("{base}/c?sig=secret")), Some("in/sub/"), Some("sub"), None),
    ] {
        let f = t.download(&[spec], &opened(&wd), owner).await.unwrap_err();
        assert_eq!((f.code.as_str(), f.server_error), ("ResourceDirectoryCreateFailed", false), "{}", f.message);
        assert!(f.message.contains("symbolic link"), "{}", f.message);
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1, "nothing written outside");

    // Uploads: links (to a file or a directory) are not uploaded, and the
    // upload logs are not written through a link.
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "SECRET").unwrap();
    std::fs::write(wd.join("real.txt"), "real").unwrap();
    symlink(&secret, wd.join("out.txt")).unwrap();
    symlink(outside.path(), wd.join("linked")).unwrap();
    symlink(&victim, task_dir.path().join("fileuploadout.txt")).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let durl = format!("file://{}", dst.path().display());
    let specs = [
        out("**/*.txt", &durl, Some("all"), "taskcompletion"),
        out("out.txt", &durl, None, "taskcompletion"),
        out("linked/secret.txt", &durl, None, "taskcompletion"),
        out("linked/*.txt", &durl, Some("l"), "taskcompletion"),
        out(&format!("{}/secret.txt", wd.join("linked").display()), &durl, None, "taskcompletion"),
    ];
    let stats = t.upload(&specs, &opened(task_dir.path()), &wd, true, &BTreeMap::new()).await.unwrap();
    let mut got = Vec::new();
    for p in nodefs_walk(dst.path()) {
        got.push((p.clone(), std::fs::read_to_string(dst.path().join(&p)).unwrap()));
    }
    assert!(got.iter().all(|(_, c)| c != "SECRET"), "{got:?}");
    assert!(got.iter().any(|(p, c)| p == "all/real.txt" && c == "real"), "{got:?}");
    assert_eq!(stats.files as usize, got.len());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "VICTIM");
    assert!(std::fs::read_to_string(task_dir.path().join("fileuploadout.txt")).unwrap().contains("uploaded"));

    // A shared destination directory with links planted in it.
    std::fs::create_dir_all(dst.path().join("x")).unwrap();
    symlink(&victim, dst.path().join("x/real.txt")).unwrap();
    symlink(outside.path(), dst.path().join("y")).unwrap();
    t.upload(&[out("real.txt", &durl, Some("x/real.txt"), "taskcompletion")], &opened(task_dir.path()), &wd, true, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(dst.path().join("x/real.txt")).unwrap(), "real");
    let f = t
        .upload(&[out("real.txt", &durl, Some("y/real.txt"), "taskcompletion")], &opened(task_dir.path()), &wd, true, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(f.code, "FileUploadMiscError", "{}", f.message);
    assert!(!outside.path().join("real.txt").exists());
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!((std::fs::read_to_string(&victim).unwrap().as_str(), after.uid(), after.mode()), ("VICTIM", before.uid(), before.mode()));

    // A shared source root: a link in it that leads outside is not read.
    symlink(&secret, src.path().join("leak.txt")).unwrap();
    let limited = quick().with_file_roots(vec![src.path().to_path_buf()]);
    let f = limited
        .download(&[rf(Some(&format!("file://{}/leak.txt", src.path().display())), None, None, Some("leak.txt"), None)], &opened(&wd), None)
        .await
        .unwrap_err();
    assert!(f.code == "BlobAccessDenied" || f.code == "BlobNotFound", "{f:?}");
    assert!(!wd.join("leak.txt").exists());
}

/// Regular files below `root`, relative, sorted.
fn nodefs_walk(root: &Path) -> Vec<String> {
    local::walk_files(root).unwrap()
}
