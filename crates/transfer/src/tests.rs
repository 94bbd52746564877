//! Transfers against an in-process HTTP server that speaks the parts of the
//! Blob REST API the agent uses, and against plain directories.

use super::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode as S, Uri};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Store {
    blobs: HashMap<String, Vec<u8>>,
    blocks: HashMap<String, Vec<u8>>,
    headers: HashMap<String, HeaderMap>,
    flaky_left: u32,
    block_puts: u32,
}

type Shared = Arc<Mutex<Store>>;

fn xml_error(status: S, code: &str) -> (S, String) {
    (status, format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>"))
}

async fn handle(state: axum::extract::State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> (S, String) {
    let path = uri.path().trim_start_matches('/').to_string();
    let query: HashMap<String, String> =
        uri.query().unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
    let (container, name) = path.split_once('/').map(|(c, n)| (c.to_string(), n.to_string())).unwrap_or((path.clone(), String::new()));
    let name = name.replace("%20", " ");
    let mut s = state.lock().unwrap();
    if container == "denied" {
        return xml_error(S::FORBIDDEN, "AuthorizationFailure");
    }
    if container == "gone" {
        return xml_error(S::NOT_FOUND, "ContainerNotFound");
    }
    match method {
        Method::GET if query.get("comp").map(String::as_str) == Some("list") => {
            assert_eq!(query.get("restype").map(String::as_str), Some("container"));
            let prefix = query.get("prefix").cloned().unwrap_or_default().replace("%2F", "/");
            let mut names: Vec<&String> = s.blobs.keys().filter(|n| n.starts_with(&prefix)).collect();
            names.sort();
            // Pages of two, the marker being the next name.
            let marker = query.get("marker").map(|m| m.replace("%2F", "/"));
            let start = marker.and_then(|m| names.iter().position(|n| **n == m)).unwrap_or(0);
            let page = &names[start..(start + 2).min(names.len())];
            let next = names.get(start + 2).map(|n| n.as_str()).unwrap_or("");
            let blobs: String = page.iter().map(|n| format!("<Blob><Name>{n}</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>")).collect();
            (S::OK, format!("<?xml version=\"1.0\"?><EnumerationResults><Blobs>{blobs}</Blobs><NextMarker>{next}</NextMarker></EnumerationResults>"))
        }
        Method::GET if name == "flaky" && s.flaky_left > 0 => {
            s.flaky_left -= 1;
            (S::SERVICE_UNAVAILABLE, String::new())
        }
        Method::GET => match s.blobs.get(&name) {
            Some(b) => (S::OK, String::from_utf8_lossy(b).into_owned()),
            None => xml_error(S::NOT_FOUND, "BlobNotFound"),
        },
        Method::PUT if query.get("comp").map(String::as_str) == Some("block") => {
            s.block_puts += 1;
            s.blocks.insert(query["blockid"].clone(), body.to_vec());
            (S::CREATED, String::new())
        }
        Method::PUT if query.get("comp").map(String::as_str) == Some("blocklist") => {
            let xml = String::from_utf8_lossy(&body).into_owned();
            let mut data = Vec::new();
            for part in xml.split("<Latest>").skip(1) {
                let id = part.split("</Latest>").next().unwrap().replace('=', "%3D").replace('+', "%2B").replace('/', "%2F");
                data.extend(s.blocks.get(&id).unwrap_or_else(|| panic!("unknown block {id}")));
            }
            s.blobs.insert(name.clone(), data);
            s.headers.insert(name, headers);
            (S::CREATED, String::new())
        }
        Method::PUT => {
            assert_eq!(headers.get("x-ms-blob-type").unwrap(), "BlockBlob");
            s.blobs.insert(name.clone(), body.to_vec());
            s.headers.insert(name, headers);
            (S::CREATED, String::new())
        }
        _ => (S::METHOD_NOT_ALLOWED, String::new()),
    }
}

async fn server() -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Store::default()));
    let app = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
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

#[tokio::test]
async fn downloads_files_and_containers_with_modes_and_paging() {
    let (base, state) = server().await;
    {
        let mut s = state.lock().unwrap();
        for (n, v) in [("x/1.txt", "one"), ("x/sub/2.txt", "two"), ("y/3.txt", "three"), ("flaky", "finally")] {
            s.blobs.insert(n.into(), v.as_bytes().to_vec());
        }
        s.flaky_left = 2;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Transfer::new();
    let sas = format!("{base}/c?sv=1&sig=secret");
    let stats = t
        .download(
            &[
                rf(Some(&format!("{base}/c/y/3.txt?sig=s")), None, None, Some("in/a.txt"), Some("0755")),
                rf(None, Some(&sas), None, Some("all"), None),
                rf(None, Some(&sas), Some("x/"), None, Some("600")),
                rf(Some(&format!("{base}/c/flaky")), None, None, Some("flaky.txt"), None),
            ],
            dir.path(),
            None,
        )
        .await
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("in/a.txt"), "three");
    assert_eq!(mode_of(&dir.path().join("in/a.txt")), 0o755);
    for (p, v) in [("all/x/1.txt", "one"), ("all/x/sub/2.txt", "two"), ("all/y/3.txt", "three"), ("x/1.txt", "one"), ("x/sub/2.txt", "two")] {
        assert_eq!(read(p), v, "{p}");
    }
    assert!(!dir.path().join("y").exists(), "the prefix filters");
    assert_eq!(mode_of(&dir.path().join("x/1.txt")), 0o600);
    assert_eq!(mode_of(&dir.path().join("all/y/3.txt")), 0o770, "the service's default mode");
    assert_eq!(read("flaky.txt"), "finally", "503s are retried");
    assert_eq!(stats.files, 1 + 4 + 2 + 1, "the listing was followed over its pages");
}

#[tokio::test]
async fn download_failures_carry_the_services_codes() {
    let (base, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let t = Transfer::new();
    let f = t.download(&[rf(Some(&format!("{base}/c/nope?sig=topsecret")), None, None, Some("a"), None)], dir.path(), None).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("BlobNotFound", false));
    assert!(!f.message.contains("topsecret") && f.message.contains("sig=REDACTED"), "{}", f.message);
    let f = t.download(&[rf(None, Some(&format!("{base}/denied?sig=x")), None, None, None)], dir.path(), None).await.unwrap_err();
    assert_eq!(f.code, "BlobAccessDenied");
    let f = t.download(&[rf(Some("http://127.0.0.1:9/unreachable"), None, None, Some("a"), None)], dir.path(), None).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("BlobDownloadMiscError", true));
    let f = t.download(&[rf(None, None, None, None, None)], dir.path(), None).await.unwrap_err();
    assert!(f.message.contains("autoStorageContainerName"));
}

#[tokio::test]
async fn uploads_by_pattern_condition_and_in_blocks() {
    let (base, state) = server().await;
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(wd.join("sub")).unwrap();
    for (p, v) in [("a.txt", "A"), ("b.txt", "B"), ("sub/c.txt", "C"), (".hidden.txt", "H")] {
        std::fs::write(wd.join(p), v).unwrap();
    }
    std::fs::write(task_dir.path().join("stdout.txt"), "out").unwrap();
    let big: Vec<u8> = (0..(BLOCK_SIZE * 2 + 12_345)).map(|i| (i % 251) as u8).collect();
    std::fs::write(wd.join("big.bin"), &big).unwrap();
    let c = format!("{base}/c?sv=1&sig=s");
    let mut meta = out("a.txt", &c, Some("meta/a.txt"), "taskcompletion");
    meta.upload_headers = vec![("x-ms-meta-origin".into(), "openbatch".into())];
    let specs = vec![
        out("*.txt", &c, Some("txt"), "tasksuccess"),
        out("**/*.txt", &c, Some("all/"), "taskcompletion"),
        out("big.bin", &c, Some("renamed/big.bin"), "tasksuccess"),
        out("../stdout.txt", &c, Some("logs/stdout.txt"), "taskcompletion"),
        out("*.txt", &c, Some("failed"), "taskfailure"),
        meta,
    ];
    let stats = t_upload(&specs, task_dir.path(), &wd, true).await.unwrap();
    let s = state.lock().unwrap();
    let mut names: Vec<&String> = s.blobs.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["all/a.txt", "all/b.txt", "all/sub/c.txt", "logs/stdout.txt", "meta/a.txt", "renamed/big.bin", "txt/a.txt", "txt/b.txt"]
    );
    assert_eq!(s.blobs["renamed/big.bin"], big, "reassembled from its blocks");
    assert_eq!(s.block_puts, 3);
    assert_eq!(s.headers["txt/a.txt"].get("content-type").unwrap(), "text/plain");
    assert_eq!(s.headers["renamed/big.bin"].get("x-ms-blob-content-type").unwrap(), "application/octet-stream");
    assert_eq!(s.headers["meta/a.txt"].get("x-ms-meta-origin").unwrap(), "openbatch");
    assert!(s.headers["txt/a.txt"].get("x-ms-meta-origin").is_none());
    assert_eq!(s.blobs["logs/stdout.txt"], b"out");
    assert_eq!(stats.files, 8);
    let log = std::fs::read_to_string(task_dir.path().join("fileuploadout.txt")).unwrap();
    assert!(log.contains("uploaded 8 files"), "{log}");
    assert_eq!(std::fs::read_to_string(task_dir.path().join("fileuploaderr.txt")).unwrap(), "");
}

async fn t_upload(specs: &[OutputFileSpec], task_dir: &Path, wd: &Path, ok: bool) -> Result<Stats, Failure> {
    Transfer::new().upload(specs, task_dir, wd, ok, &BTreeMap::new()).await
}

#[tokio::test]
async fn upload_failures_are_logged_and_coded() {
    let (base, state) = server().await;
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    std::fs::write(wd.join("r.txt"), "R").unwrap();
    let specs = [out("r.txt", &format!("{base}/gone?sig=s"), None, "taskcompletion"), out("r.txt", &format!("{base}/c?sig=s"), None, "taskfailure")];
    let f = t_upload(&specs, task_dir.path(), &wd, false).await.unwrap_err();
    assert_eq!((f.code.as_str(), f.server_error), ("FileUploadContainerNotFound", false));
    assert!(state.lock().unwrap().blobs.contains_key("r.txt"), "the other uploads still happen");
    let err = std::fs::read_to_string(task_dir.path().join("fileuploaderr.txt")).unwrap();
    assert!(err.contains("FileUploadContainerNotFound"), "{err}");
    let f = t_upload(&[out("r.txt", &format!("{base}/denied?sig=s"), None, "taskcompletion")], task_dir.path(), &wd, true).await.unwrap_err();
    assert_eq!(f.code, "FileUploadMiscError");
}

#[tokio::test]
async fn shared_directories_both_ways() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("in/deep")).unwrap();
    std::fs::write(src.path().join("in/deep/f.txt"), "F").unwrap();
    std::fs::write(src.path().join("top.txt"), "T").unwrap();
    let task_dir = tempfile::tempdir().unwrap();
    let wd = task_dir.path().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    let t = Transfer::new();
    let url = format!("file://{}", src.path().display());
    t.download(&[rf(None, Some(&url), Some("in/"), Some("dl"), None), rf(Some(&format!("{url}/top.txt")), None, None, Some("t.txt"), None)], &wd, None)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(wd.join("dl/in/deep/f.txt")).unwrap(), "F");
    assert_eq!(std::fs::read_to_string(wd.join("t.txt")).unwrap(), "T");
    let f = t.download(&[rf(Some(&format!("{url}/missing")), None, None, Some("m"), None)], &wd, None).await.unwrap_err();
    assert_eq!(f.code, "BlobNotFound");

    let dst = tempfile::tempdir().unwrap();
    let durl = format!("file://{}", dst.path().display());
    t_upload(&[out("dl/**/*.txt", &durl, Some("res"), "tasksuccess"), out("t.txt", &durl, Some("one/t2.txt"), "tasksuccess")], task_dir.path(), &wd, true)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(dst.path().join("res/in/deep/f.txt")).unwrap(), "F");
    assert_eq!(std::fs::read_to_string(dst.path().join("one/t2.txt")).unwrap(), "T");
    let f = t_upload(&[out("t.txt", "file:///no/such/dir", None, "tasksuccess")], task_dir.path(), &wd, true).await.unwrap_err();
    assert_eq!(f.code, "FileUploadContainerNotFound");
}

#[test]
fn listing_and_helpers() {
    let (names, next) = parse_listing(
        "<?xml version=\"1.0\"?><EnumerationResults ContainerName=\"c\"><Prefix>a</Prefix><Blobs><Blob><Name>a/1 &amp; 2.txt</Name><Properties><Content-Length>3</Content-Length></Properties></Blob><Blob><Name>a/3</Name></Blob></Blobs><NextMarker>tok</NextMarker></EnumerationResults>",
    );
    assert_eq!(names, ["a/1 & 2.txt", "a/3"]);
    assert_eq!(next.as_deref(), Some("tok"));
    let (_, next) = parse_listing("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>");
    assert_eq!(next, None);
    assert!(file_path_is_confined("a/b/../c"));
    assert!(!file_path_is_confined("a/../../c"));
    assert!(!file_path_is_confined("/etc/passwd"));
    let u = Url::parse("http://h/acct/cont?sv=1&sig=abc").unwrap();
    assert_eq!(blob_url(&u, "dir/a b#.txt").as_str(), "http://h/acct/cont/dir/a%20b%23.txt?sv=1&sig=abc");
    assert_eq!(redact("http://h/c?sv=1&sig=abc&se=2"), "http://h/c?sv=1&sig=REDACTED&se=2");
}
