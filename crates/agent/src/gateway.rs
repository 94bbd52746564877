//! Container tasks through the server's engine gateway (`proto::engine`),
//! for a node with no container engine of its own (`--container-engine
//! server`: a Docker provider's node). The attempt's process is this binary's
//! `engine-run` ([`run_client`]), which asks the server to run the container
//! and relays its output and exit code, as the engine's own client would.

use proto::engine::{EngineRequest, EngineRun, Frame, ENGINE_PATH};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `--container-engine` value that selects the gateway.
pub const SERVER_ENGINE: &str = "server";

/// What the gateway's client needs: where the server is and how to prove
/// it is an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Access {
    pub server: String,
    pub token: String,
    pub node: String,
    #[serde(default)]
    pub ca_file: Vec<PathBuf>,
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// The file `engine-run` reads: access and request.
#[derive(Debug, Serialize, Deserialize)]
struct Spec {
    access: Access,
    run: EngineRun,
}

/// Where an attempt's request waits for its client, in the agent's own
/// `volatile/` (tasks cannot read it: it holds the join token).
pub fn spec_file(root: &Path, attempt: u64) -> PathBuf {
    root.join("volatile").join(format!("engine-{attempt}.json"))
}

/// Left by `engine-run`, holding why, when the gateway could not be asked
/// or its connection broke before the container ended: the container's
/// fate is unknown (the server removes it), so the attempt ends with a
/// server error, not an exit code.
pub fn lost_file(root: &Path, attempt: u64) -> PathBuf {
    root.join("volatile").join(format!("engine-{attempt}.lost"))
}

/// What an attempt whose gateway connection broke reports.
pub const LOST: &str = "The connection to the server's engine gateway broke before the task's container ended \
(the server restarted or could not be reached); the server removes the container.";

/// Writes the request for an attempt (0600, replacing whatever was there).
pub fn write_spec(root: &Path, access: &Access, run: EngineRun) -> Result<PathBuf, (String, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = spec_file(root, run.attempt);
    let fail = |e: String| ("ContainerMiscError".to_string(), format!("cannot prepare the container task: {e}"));
    let _ = std::fs::remove_file(lost_file(root, run.attempt));
    let body = serde_json::to_vec(&Spec { access: access.clone(), run }).map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    f.write_all(&body).map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

/// Checks that no task can swap a directory it mounts for a link: every
/// directory from the node root down to the mounted one's parent belongs to
/// root and no one else may write to it, and the mounted one is a real
/// directory (made if missing). The engine's host resolves the path later,
/// outside the node's view, so a link there would lead anywhere.
pub fn check_mount(root: &Path, rel: &str) -> Result<(), (String, String)> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| ("ContainerInvalidSettings".to_string(), format!("cannot mount {rel}: {why}"));
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(refuse("not a directory of the node root".into()));
    }
    let mut dir = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| refuse(e.to_string()))?;
        if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(refuse(format!("{} may be changed by tasks", dir.display())));
        }
        dir.push(part);
        if i + 1 == parts.len() {
            if let Err(e) = std::fs::symlink_metadata(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(refuse(e.to_string()));
                }
                std::fs::create_dir(&dir).map_err(|e| refuse(e.to_string()))?;
            }
            let meta = std::fs::symlink_metadata(&dir).map_err(|e| refuse(e.to_string()))?;
            if !meta.is_dir() {
                return Err(refuse(format!("{} is not a directory", dir.display())));
            }
        }
    }
    Ok(())
}

fn client(access: &Access) -> Result<reqwest::Client, String> {
    let builder = if access.server.starts_with("https://") {
        let tls = crate::tls::client_config(&access.ca_file, access.tls_server_name.as_deref())?;
        reqwest::Client::builder().use_preconfigured_tls(tls)
    } else {
        reqwest::Client::builder()
    };
    builder
        .user_agent(concat!("openbatch-agent/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

async fn post(http: &reqwest::Client, access: &Access, request: &EngineRequest) -> Result<reqwest::Response, String> {
    let r = http
        .post(format!("{}{ENGINE_PATH}", access.server.trim_end_matches('/')))
        .bearer_auth(&access.token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(request).map_err(|e| e.to_string())?)
        .send()
        .await
        .map_err(|e| format!("cannot reach the server's engine gateway: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        return Err(format!("the server's engine gateway answered {status}: {text}"));
    }
    Ok(r)
}

/// Why a private registry cannot be used through the gateway.
pub fn no_registries() -> transfer::Failure {
    transfer::Failure {
        code: "ContainerInvalidRegistry".into(),
        message: "private registries are not supported on this node: its provider's engine pulls nothing".into(),
        server_error: false,
    }
}

/// Whether the provider's engine has an image (it pulls nothing).
pub async fn has_image(http: &reqwest::Client, access: &Access, image: &str) -> Result<(), transfer::Failure> {
    let req = EngineRequest::Image { node: access.node.clone(), image: image.to_string() };
    let misc = |message: String| transfer::Failure { code: "ContainerMiscError".into(), message, server_error: true };
    let r = post(http, access, &req).await.map_err(misc)?;
    let mut buf = r.bytes().await.map_err(|e| misc(e.to_string()))?.to_vec();
    match Frame::decode(&mut buf).map_err(misc)? {
        Some(Frame::Exit(0)) => Ok(()),
        Some(Frame::Failed(message)) => Err(transfer::Failure { code: "ContainerInvalidImage".into(), message, server_error: false }),
        other => Err(misc(format!("the engine gateway answered {other:?}"))),
    }
}

/// `openbatch engine-run SPEC`: the process of a container task on a node
/// that uses the gateway. Its stdout and stderr are the container's, its
/// exit code the container's; 125 when the container could not be made
/// (as the engine's client), after writing why to stderr. The id of the
/// container goes to `container_id_file`.
pub fn run_client(spec_path: &Path, cid_file: Option<&Path>) -> i32 {
    let spec: Spec =
        match std::fs::read(spec_path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("openbatch engine-run: cannot read {}: {e}", spec_path.display());
                return 125;
            }
        };
    // It holds the join token: gone once read.
    let _ = std::fs::remove_file(spec_path);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openbatch engine-run: {e}");
            return 125;
        }
    };
    let lost = spec_path.with_extension("lost");
    rt.block_on(relay(spec, cid_file, &lost))
}

async fn relay(spec: Spec, cid_file: Option<&Path>, lost: &Path) -> i32 {
    use futures_util::StreamExt;
    let fail = |why: &str| {
        eprintln!("{why}");
        125
    };
    let http = match client(&spec.access) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let response = match post(&http, &spec.access, &EngineRequest::Run(spec.run)).await {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::write(lost, &e);
            return fail(&e);
        }
    };
    let mut stream = response.bytes_stream();
    let mut buf = Vec::new();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        loop {
            match Frame::decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Frame::KeepAlive)) => {}
                Ok(Some(Frame::Created(id))) => {
                    if let Some(f) = cid_file {
                        let _ = std::fs::write(f, id);
                    }
                }
                Ok(Some(Frame::Stdout(b))) => {
                    let _ = out.write_all(&b);
                    let _ = out.flush();
                }
                Ok(Some(Frame::Stderr(b))) => {
                    let _ = err.write_all(&b);
                    let _ = err.flush();
                }
                Ok(Some(Frame::Exit(code))) => return code.clamp(0, 255) as i32,
                Ok(Some(Frame::Failed(why))) => return fail(&why),
                Err(e) => return fail(&e),
            }
        }
    }
    let _ = std::fs::write(lost, LOST);
    fail(LOST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A gateway that answers every run with `frames` (checking the token
    /// and the request), then ends the response.
    async fn gateway(frames: Vec<Frame>) -> String {
        let body: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let app = axum::Router::new().route(
            ENGINE_PATH,
            axum::routing::post(move |headers: axum::http::HeaderMap, req: String| {
                let body = body.clone();
                async move {
                    assert_eq!(headers.get("authorization").unwrap(), "Bearer tok");
                    let r: EngineRequest = serde_json::from_str(&req).unwrap();
                    assert!(matches!(r, EngineRequest::Run(EngineRun { attempt: 7, .. })));
                    body
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn spec(server: String) -> Spec {
        let access = Access { server, token: "tok".into(), node: "n1".into(), ca_file: vec![], tls_server_name: None };
        let run = EngineRun {
            node: "n1".into(),
            attempt: 7,
            image: "img".into(),
            command: vec!["true".into()],
            env: vec![],
            workdir: None,
            mounts: None,
            run_options: None,
        };
        Spec { access, run }
    }

    #[tokio::test]
    async fn the_client_exits_with_the_containers_code_or_says_the_connection_broke() {
        let d = tempfile::tempdir().unwrap();
        let (cid, lost) = (d.path().join("cid"), d.path().join("lost"));
        let url = gateway(vec![Frame::Created("c0ffee".into()), Frame::KeepAlive, Frame::Stdout(b"hi\n".to_vec()), Frame::Exit(3)]).await;
        assert_eq!(relay(spec(url), Some(&cid), &lost).await, 3);
        assert_eq!(std::fs::read_to_string(&cid).unwrap(), "c0ffee");
        assert!(!lost.exists());
        // The engine could not make the container: 125, as its client.
        let url = gateway(vec![Frame::Failed("no such image".into())]).await;
        assert_eq!(relay(spec(url), None, &lost).await, 125);
        assert!(!lost.exists());
        // The answer ends before the container did: the attempt is lost.
        let url = gateway(vec![Frame::Created("c0ffee".into()), Frame::Stdout(b"partial".to_vec())]).await;
        assert_eq!(relay(spec(url), None, &lost).await, 125);
        assert!(lost.exists(), "the agent learns the container's fate is unknown");
        // No gateway at all: why, for the task's failure.
        let lost = d.path().join("x");
        assert_eq!(relay(spec("http://127.0.0.1:9".into()), None, &lost).await, 125);
        assert!(std::fs::read_to_string(&lost).unwrap().contains("cannot reach the server's engine gateway"));
    }

    #[test]
    fn a_mount_whose_path_a_task_could_change_is_refused() {
        if unsafe { libc::geteuid() } != 0 {
            return; // ownership by root is what is checked
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::create_dir_all(root.join("workitems/j/job-1")).unwrap();
        assert!(check_mount(root, "shared").is_ok(), "made when missing");
        assert!(root.join("shared").is_dir());
        assert!(check_mount(root, "workitems/j/job-1/t").is_ok());
        // A link in place of the mounted directory.
        std::os::unix::fs::symlink("/etc", root.join("workitems/j/job-1/evil")).unwrap();
        assert!(check_mount(root, "workitems/j/job-1/evil").is_err());
        // A parent a task may write to.
        std::fs::set_permissions(root.join("workitems/j"), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_mount(root, "workitems/j/job-1/t").is_err());
        // A parent that belongs to a task's user.
        std::fs::set_permissions(root.join("workitems/j"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(root.join("workitems/j/job-1"), Some(999), None).unwrap();
        assert!(check_mount(root, "workitems/j/job-1/t").is_err());
        assert!(check_mount(root, "../etc").is_err());
    }
}
