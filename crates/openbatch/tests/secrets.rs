//! The binary keeps its secrets out of other users' sight: a key or token
//! given on the command line is wiped from /proc/<pid>/cmdline after
//! start; keys and tokens can come from files; the data directory and the
//! files in it are private.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openbatch");
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGhlLWNtZGxpbmUtdGVzdA==";

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `openbatch serve` with `args` and waits for its "serving" line.
/// (The child is waited for when the returned `Server` drops.)
#[allow(clippy::zombie_processes)]
fn serve(data: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .env_remove("OPENBATCH_KEY")
        .env_remove("OPENBATCH_KEY_FILE")
        .env("OPENBATCH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the server exited before serving");
        if let Some(rest) = line.split("http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return Server { child, addr };
        }
    }
}

fn cmdline(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A signed `GET /applications`; returns the HTTP status.
fn signed_get(addr: &str, account: &str, key_b64: &str) -> u16 {
    use axum::http::{HeaderMap, HeaderValue, Method};
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(key_b64).unwrap();
    let target = "/applications?api-version=2025-06-01";
    let mut headers = HeaderMap::new();
    let date = api::sharedkey::ocp_date(chrono::Utc::now());
    headers.insert("ocp-date", HeaderValue::from_str(&date).unwrap());
    let auth = api::sharedkey::sign(account, &key, &Method::GET, target, &headers);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nocp-date: {date}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_key_on_the_command_line_is_wiped_from_proc_cmdline() {
    let dir = tempfile::tempdir().unwrap();
    let joined = format!("--key={KEY}");
    for (i, args) in [vec!["--account", "acct", "--key", KEY], vec!["--account", "acct", joined.as_str()]].iter().enumerate() {
        let s = serve(&dir.path().join(format!("d{i}")), args);
        let seen = cmdline(s.child.id());
        assert!(!contains(&seen, KEY), "the key is still in /proc/pid/cmdline: {}", String::from_utf8_lossy(&seen));
        assert!(contains(&seen, &"x".repeat(KEY.len())), "{}", String::from_utf8_lossy(&seen));
        assert!(contains(&seen, "--account\0acct\0"), "the other arguments are intact");
        // The server still uses the key it read.
        assert_eq!(signed_get(&s.addr, "acct", KEY), 200);
        assert_eq!(signed_get(&s.addr, "acct", "b3RoZXIta2V5"), 403);
    }
}

#[test]
fn keys_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (dir.path().join("key1"), dir.path().join("key2"));
    std::fs::write(&k1, format!("{KEY}\n")).unwrap();
    std::fs::write(&k2, "a2V5Mg==\n").unwrap();
    for k in [&k1, &k2] {
        std::fs::set_permissions(k, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let s =
        serve(&dir.path().join("data"), &["--account", "acct", "--key-file", k1.to_str().unwrap(), "--key2-file", k2.to_str().unwrap()]);
    assert_eq!(signed_get(&s.addr, "acct", KEY), 200);
    assert_eq!(signed_get(&s.addr, "acct", "a2V5Mg=="), 200, "the secondary key");
    assert_eq!(signed_get(&s.addr, "acct", "b3RoZXIta2V5"), 403);
    drop(s);
    // The environment can name the key file.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().join("d1").to_str().unwrap(), "--account", "acct"])
        .env_remove("OPENBATCH_KEY")
        .env("OPENBATCH_KEY_FILE", &k1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(signed_get(&addr, "acct", KEY), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    // A key and a key file at once are refused.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().join("d2").to_str().unwrap(), "--key", KEY])
        .env("OPENBATCH_KEY_FILE", &k1)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_data_directory_and_its_secrets_are_private() {
    let dir = tempfile::tempdir().unwrap();
    // An older install: everything readable by others.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("nodes")).unwrap();
    std::fs::create_dir_all(data.join("applications")).unwrap();
    std::fs::write(data.join("agent.token"), "0123456789abcdef").unwrap();
    for (p, m) in
        [(data.clone(), 0o755), (data.join("nodes"), 0o755), (data.join("applications"), 0o755), (data.join("agent.token"), 0o644)]
    {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let s = serve(&data, &["--account", "acct", "--key", KEY]);
    assert_eq!(signed_get(&s.addr, "acct", KEY), 200);
    assert_eq!(mode(&data), 0o711, "no read or write for group and others");
    assert_eq!(mode(&data.join("nodes")), 0o711);
    assert_eq!(mode(&data.join("applications")), 0o700);
    assert_eq!(mode(&data.join("agent.token")), 0o600);
    assert_eq!(std::fs::read_to_string(data.join("agent.token")).unwrap(), "0123456789abcdef", "the token is kept");
    for f in ["openbatch.sqlite", "openbatch.sqlite-wal", "openbatch.sqlite-shm"] {
        if data.join(f).exists() {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }
    drop(s);
    // A new install is private from the start.
    let fresh = dir.path().join("fresh").join("data");
    let s = serve(&fresh, &["--account", "acct", "--key", KEY]);
    assert_eq!(signed_get(&s.addr, "acct", KEY), 200);
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("agent.token")), 0o600);
    assert_eq!(mode(&fresh.join("openbatch.sqlite")), 0o600);
}

#[test]
fn an_agent_token_on_the_command_line_is_wiped_and_files_hold_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token = "agent-join-token-0123456789abcdef";
    let start = |args: &[&str]| {
        Command::new(BIN)
            .args(["agent", "--server", "http://127.0.0.1:9", "--pool", "p", "--root"])
            .arg(dir.path().join("root"))
            .args(args)
            .env_remove("OPENBATCH_AGENT_TOKEN")
            .env_remove("OPENBATCH_AGENT_TOKEN_FILE")
            .env("OPENBATCH_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut agent = start(&["--token", token]);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the agent has exec'd (the fork still shows the test's own
    // command line) and wiped its token.
    let mut seen = cmdline(agent.id());
    while (contains(&seen, token) || !contains(&seen, "--pool\0p\0")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = cmdline(agent.id());
    }
    assert!(!contains(&seen, token), "{}", String::from_utf8_lossy(&seen));
    assert!(contains(&seen, "--pool\0p\0"), "{}", String::from_utf8_lossy(&seen));
    agent.kill().unwrap();
    agent.wait().unwrap();
    // Without any token the agent does not start; with a token file it does.
    let out = start(&[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let mut agent = start(&["--token-file", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.try_wait().unwrap().is_none(), "the agent runs (retrying its connection)");
    agent.kill().unwrap();
    agent.wait().unwrap();
}
