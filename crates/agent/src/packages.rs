//! Application packages on the node: each version is fetched from the
//! server once (with the agent's token), unpacked under
//! `applications/{dir}` and shared by every task that references it. A
//! marker file says the unpacking finished; an interrupted install is
//! redone.

use futures_util::StreamExt;
use proto::PackageSpec;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MARKER: &str = ".openbatch-installed";

pub struct Installer {
    http: reqwest::Client,
    server: String,
    token: String,
    root: PathBuf,
    /// One install at a time per package directory.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Installer {
    pub fn new(server: &str, token: &str, root: &Path) -> Installer {
        Installer {
            http: reqwest::Client::new(),
            server: server.to_string(),
            token: token.to_string(),
            root: root.join("applications"),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Installs the package unless it already is; Err is the failure message.
    pub async fn ensure(&self, p: &PackageSpec) -> Result<(), String> {
        if p.dir.contains('/') || p.dir.starts_with('.') {
            return Err(format!("invalid package directory '{}'", p.dir));
        }
        let lock = self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(p.dir.clone()).or_default().clone();
        let _held = lock.lock().await;
        let dir = self.root.join(&p.dir);
        if dir.join(MARKER).exists() {
            return Ok(());
        }
        let url = format!("{}{}/{}/{}", self.server, proto::PACKAGES_PATH, encode(&p.application_id), encode(&p.version));
        let what = format!("application package {} version {}", p.application_id, p.version);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {what}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("cannot fetch {what}: HTTP {}", resp.status().as_u16()));
        }
        let name = resp.headers().get("x-openbatch-archive").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let download = self.root.join(format!(".{}.download", p.dir));
        let staging = self.root.join(format!(".{}.unpacking", p.dir));
        let mut file = std::fs::File::create(&download).map_err(|e| format!("{}: {e}", download.display()))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("cannot fetch {what}: {e}"))?;
            file.write_all(&chunk).map_err(|e| format!("{}: {e}", download.display()))?;
        }
        drop(file);
        let (d, s, target) = (download.clone(), staging.clone(), dir.clone());
        let unpacked = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let _ = std::fs::remove_dir_all(&s);
            std::fs::create_dir_all(&s).map_err(|e| format!("{}: {e}", s.display()))?;
            unpack(&d, &name, &s)?;
            // Readable (and directories searchable) by the tasks' user.
            let _ = std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(&s).status();
            let _ = std::fs::remove_dir_all(&target);
            std::fs::rename(&s, &target).map_err(|e| format!("{}: {e}", target.display()))?;
            std::fs::write(target.join(MARKER), b"").map_err(|e| format!("{}: {e}", target.display()))?;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&download);
        unpacked.map_err(|e| format!("cannot install {what}: {e}"))
    }
}

/// Unpacks a `.zip`, `.tar.gz`/`.tgz` or `.tar` archive into `dest`;
/// entries that would land outside it are refused.
fn unpack(archive: &Path, name: &str, dest: &Path) -> Result<(), String> {
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive: {e}"))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
            let Some(rel) = entry.enclosed_name() else {
                return Err(format!("the entry '{}' leaves the package directory", entry.name()));
            };
            let out = dest.join(rel);
            if entry.is_dir() {
                std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
                continue;
            }
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let mut f = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            std::io::copy(&mut entry, &mut f).map_err(|e| e.to_string())?;
            if let Some(mode) = entry.unix_mode() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o7777));
            }
        }
        return Ok(());
    }
    let reader: Box<dyn std::io::Read> = if name.ends_with(".tar") {
        Box::new(std::io::BufReader::new(file))
    } else {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    for entry in tar.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        // `unpack_in` refuses paths that leave `dest`.
        if !entry.unpack_in(dest).map_err(|e| e.to_string())? {
            return Err("an entry leaves the package directory".into());
        }
    }
    Ok(())
}
