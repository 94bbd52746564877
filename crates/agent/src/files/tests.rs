use super::*;
use std::io::{Read, Seek};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const TASK: &str = "workitems/j/job-1/t";

fn req(base: &str, path: &str, op: FileOp) -> FileRequest {
    FileRequest { id: 1, base: base.into(), path: path.into(), op }
}

fn read(start: u64, end: Option<u64>) -> FileOp {
    FileOp::Read { start, end, stream: "k".into() }
}

/// A node root with one task directory, and a root-only secret outside it.
fn node() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join(TASK).join("wd")).unwrap();
    std::fs::write(root.path().join(TASK).join("stdout.txt"), "hello\n").unwrap();
    let secret = elsewhere.path().join("secret");
    std::fs::write(&secret, "SECRET").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(elsewhere.path().join("dir")).unwrap();
    std::fs::write(elsewhere.path().join("dir/f"), "SECRET").unwrap();
    (root, elsewhere, secret)
}

/// The bytes a read returns: inline, or read from the stream's file.
fn content(reply: &FileReply, stream: Option<Stream>) -> Vec<u8> {
    match stream {
        None => STANDARD.decode(reply.data.as_deref().unwrap_or("")).unwrap(),
        Some(mut s) => {
            s.file.seek(io::SeekFrom::Start(s.start)).unwrap();
            let mut out = Vec::new();
            (&mut s.file).take(s.len).read_to_end(&mut out).unwrap();
            out
        }
    }
}

#[test]
fn reads_ranges_inline_and_as_streams() {
    let (root, _e, _s) = node();
    let (r, s) = file_op(root.path(), req(TASK, "stdout.txt", read(0, None)));
    assert_eq!((r.error.as_deref(), r.size, r.length, r.stream), (None, Some(6), Some(6), false));
    assert_eq!(content(&r, s), b"hello\n");
    let (r, s) = file_op(root.path(), req(TASK, "stdout.txt", read(1, Some(3))));
    assert_eq!(content(&r, s), b"el");
    assert_eq!(file_op(root.path(), req(TASK, "stdout.txt", read(9, None))).0.error.as_deref(), Some("InvalidRange"));
    // Larger than the inline limit: the reply says stream, the file is open at the range.
    let big: Vec<u8> = (0..proto::INLINE_READ as usize * 3).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join(TASK).join("wd/big"), &big).unwrap();
    let (r, s) = file_op(root.path(), req(TASK, "wd/big", read(10, None)));
    assert!(r.stream && r.data.is_none());
    assert_eq!((r.size, r.length), (Some(big.len() as u64), Some(big.len() as u64 - 10)));
    assert_eq!(r.entries[0].path, "wd/big");
    assert_eq!(content(&r, s), &big[10..]);
    let (r, s) = file_op(root.path(), req(TASK, "wd/big", read(5, Some(9))));
    assert!(!r.stream);
    assert_eq!(content(&r, s), &big[5..9]);
    assert_eq!(file_op(root.path(), req(TASK, "wd", read(0, None))).0.error.as_deref(), Some("IsDirectory"));
    assert_eq!(file_op(root.path(), req(TASK, "../../x", read(0, None))).0.error.as_deref(), Some("OutsideRoot"));
    assert_eq!(file_op(root.path(), req(TASK, "nope", FileOp::Stat)).0.error.as_deref(), Some("NotFound"));
}

#[test]
fn links_are_neither_listed_served_nor_followed_by_deletes() {
    let (root, elsewhere, secret) = node();
    let wd = root.path().join(TASK).join("wd");
    symlink(&secret, wd.join("link")).unwrap();
    symlink(elsewhere.path().join("dir"), wd.join("linkdir")).unwrap();
    symlink("../stdout.txt", wd.join("inner")).unwrap();
    std::fs::create_dir(wd.join("sub")).unwrap();
    std::fs::write(wd.join("sub/a"), "a").unwrap();
    for p in ["wd/link", "wd/linkdir/f", "wd/inner"] {
        for op in [read(0, None), FileOp::Stat] {
            let (r, s) = file_op(root.path(), req(TASK, p, op));
            assert_eq!(r.error.as_deref(), Some("Symlink"), "{p}");
            assert!(s.is_none() && r.data.is_none() && r.entries.is_empty());
        }
    }
    // Node files: the same path from the node root.
    let (r, _) = file_op(root.path(), req("", &format!("{TASK}/wd/link"), read(0, None)));
    assert_eq!(r.error.as_deref(), Some("Symlink"));
    let (r, _) = file_op(root.path(), req(TASK, "", FileOp::List { recursive: true }));
    let names: Vec<&str> = r.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["stdout.txt", "wd", "wd/sub", "wd/sub/a"], "links are not listed");
    // A task directory that is itself a link is not served.
    std::fs::create_dir_all(root.path().join("workitems/j/job-1")).unwrap();
    symlink(elsewhere.path().join("dir"), root.path().join("workitems/j/job-1/u")).unwrap();
    let (r, _) = file_op(root.path(), req("workitems/j/job-1/u", "f", read(0, None)));
    assert_eq!(r.error.as_deref(), Some("Symlink"));
    // Deleting removes the links, never what they point to.
    assert!(file_op(root.path(), req(TASK, "wd/linkdir", FileOp::Delete { recursive: true })).0.error.is_none());
    assert!(file_op(root.path(), req(TASK, "wd/link", FileOp::Delete { recursive: false })).0.error.is_none());
    assert_eq!(file_op(root.path(), req(TASK, "wd/linkdir/f", FileOp::Delete { recursive: false })).0.error.as_deref(), Some("NotFound"));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "SECRET");
    assert_eq!(std::fs::read_to_string(elsewhere.path().join("dir/f")).unwrap(), "SECRET");
    symlink(elsewhere.path().join("dir"), wd.join("sub/deep")).unwrap();
    assert_eq!(file_op(root.path(), req(TASK, "wd", FileOp::Delete { recursive: false })).0.error.as_deref(), Some("DirectoryNotEmpty"));
    assert!(file_op(root.path(), req(TASK, "", FileOp::Delete { recursive: true })).0.error.is_none());
    assert!(!root.path().join(TASK).exists());
    assert_eq!(std::fs::read_to_string(elsewhere.path().join("dir/f")).unwrap(), "SECRET");
    assert_eq!(file_op(root.path(), req("", "", FileOp::Delete { recursive: true })).0.error.as_deref(), Some("OutsideRoot"));
    assert!(root.path().exists());
}

/// A task flips a path between a regular file and a link to a root-only
/// file (and a directory on the way between a real directory and a link to
/// another), as fast as it can, while the files API reads it: the secret
/// must never come back. (Checking the path, then opening it, as the agent
/// used to, loses this race within a few hundred reads.)
#[test]
fn a_path_flipped_between_a_file_and_a_link_never_serves_the_target() {
    let (root, elsewhere, secret) = node();
    let wd = root.path().join(TASK).join("wd");
    std::fs::write(wd.join("f"), "public").unwrap();
    std::fs::create_dir(wd.join("d")).unwrap();
    std::fs::write(wd.join("d/f"), "public").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let flipper = {
        let (stop, flips, wd, secret, secret_dir) = (stop.clone(), flips.clone(), wd.clone(), secret.clone(), elsewhere.path().join("dir"));
        std::thread::spawn(move || {
            let real_dir = wd.join("real-d");
            std::fs::create_dir(&real_dir).unwrap();
            std::fs::write(real_dir.join("f"), "public").unwrap();
            while !stop.load(Ordering::Relaxed) {
                // Atomic swaps by rename: the path always exists.
                let _ = std::fs::remove_file(wd.join("tmp-link"));
                symlink(&secret, wd.join("tmp-link")).unwrap();
                std::fs::rename(wd.join("tmp-link"), wd.join("f")).unwrap();
                std::fs::write(wd.join("tmp-file"), "public").unwrap();
                std::fs::rename(wd.join("tmp-file"), wd.join("f")).unwrap();
                let _ = std::fs::remove_file(wd.join("tmp-dlink"));
                symlink(&secret_dir, wd.join("tmp-dlink")).unwrap();
                let _ = std::fs::remove_dir_all(wd.join("d"));
                std::fs::rename(wd.join("tmp-dlink"), wd.join("d")).unwrap();
                // A complete directory, renamed into place (the path is
                // missing for a moment: a read may say NotFound).
                let _ = std::fs::remove_dir_all(wd.join("tmp-dir"));
                std::fs::create_dir(wd.join("tmp-dir")).unwrap();
                std::fs::write(wd.join("tmp-dir/f"), "public").unwrap();
                let _ = std::fs::remove_file(wd.join("d"));
                std::fs::rename(wd.join("tmp-dir"), wd.join("d")).unwrap();
                flips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut served, mut refused) = (0, 0);
    for i in 0..4000 {
        let path = if i % 2 == 0 { "wd/f" } else { "wd/d/f" };
        let base = if i % 3 == 0 { String::new() } else { TASK.to_string() };
        let path = if base.is_empty() { format!("{TASK}/{path}") } else { path.to_string() };
        let (r, s) = file_op(root.path(), req(&base, &path, read(0, None)));
        let got = content(&r, s);
        assert!(!String::from_utf8_lossy(&got).contains("SECRET"), "read {i} served the link's target");
        match r.error.as_deref() {
            None => {
                assert_eq!(got, b"public");
                served += 1;
            }
            Some("Symlink") | Some("NotFound") => refused += 1,
            Some(e) => panic!("unexpected error {e}"),
        }
        let (r, _) = file_op(root.path(), req(TASK, "wd", FileOp::List { recursive: true }));
        assert!(r.entries.iter().all(|e| !(e.path == "wd/f" || e.path == "wd/d/f") || e.size == 6), "{:?}", r.entries);
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(flips.load(Ordering::Relaxed) > 10, "the path really flipped");
    assert!(served > 0 && refused > 0, "both states were seen: {served} served, {refused} refused");
}

/// The agent reads a streamed file only as fast as the server takes it: a
/// server that stops reading stops the agent's reads after a few buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_only_as_fast_as_the_server_takes_it() {
    use futures_util::StreamExt;
    const SIZE: u64 = 256 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    // Sparse: 256 MiB that cost no disk; a marked range to check offsets.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(SIZE).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"0123456789", 1000).unwrap();
    drop(f);

    // A server that reads 1 MiB, pauses (the agent's file offset is then
    // read), and reads the rest.
    let (paused_tx, mut paused_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();
    let resume_rx = Arc::new(tokio::sync::Mutex::new(Some(resume_rx)));
    let received = Arc::new(AtomicU64::new(0));
    let first = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let app = {
        let (received, first) = (received.clone(), first.clone());
        axum::Router::new().route(
            "/_openbatch/agent/v1/files/{key}",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Body| async move {
                assert_eq!(headers["authorization"], "Bearer tok");
                let len: u64 = headers["content-length"].to_str().unwrap().parse().unwrap();
                let mut s = body.into_data_stream();
                let mut paused = false;
                while let Some(chunk) = s.next().await {
                    let chunk = chunk.unwrap();
                    if received.load(Ordering::Relaxed) == 0 {
                        first.lock().await.extend_from_slice(&chunk[..chunk.len().min(16)]);
                    }
                    let n = received.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                    if !paused && n >= 1024 * 1024 && len == SIZE {
                        paused = true;
                        let _ = paused_tx.send(()).await;
                        let rx = resume_rx.lock().await.take().unwrap();
                        let _ = rx.await;
                    }
                }
                ""
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A range: exactly its bytes arrive.
    let file = std::fs::File::open(&path).unwrap();
    send(&reqwest::Client::new(), &server, "tok", Stream { key: "r".into(), file, start: 1000, len: 10 }).await.unwrap();
    assert_eq!(&first.lock().await[..], b"0123456789");
    received.store(0, Ordering::Relaxed);

    // The whole file, with the server pausing after 1 MiB.
    let file = std::fs::File::open(&path).unwrap();
    let probe = file.try_clone().unwrap(); // shares the file offset
    let sending = tokio::spawn({
        let server = server.clone();
        async move { send(&reqwest::Client::new(), &server, "tok", Stream { key: "k".into(), file, start: 0, len: SIZE }).await }
    });
    paused_rx.recv().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let read_ahead = (&probe).stream_position().unwrap();
    let at_pause = received.load(Ordering::Relaxed);
    println!("server paused at {at_pause} bytes; the agent had read {read_ahead} bytes of the file");
    assert!(read_ahead < 64 * 1024 * 1024, "the agent read {read_ahead} bytes ahead of a paused server");
    resume_tx.send(()).unwrap();
    sending.await.unwrap().unwrap();
    assert_eq!(received.load(Ordering::Relaxed), SIZE);
}
