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
    /// The server the agent is connected to (it moves between replicas).
    server: std::sync::Arc<std::sync::Mutex<String>>,
    token: String,
    root: PathBuf,
    /// One install at a time per package directory.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Installer {
    /// `http`: the agent's client to the server (with its TLS trust).
    pub fn new(server: std::sync::Arc<std::sync::Mutex<String>>, token: &str, root: &Path, http: reqwest::Client) -> Installer {
        Installer { http, server, token: token.to_string(), root: root.join("applications"), locks: Mutex::new(HashMap::new()) }
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
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let url = format!("{}{}/{}/{}", server, proto::PACKAGES_PATH, encode(&p.application_id), encode(&p.version));
        let what = format!("application package {} version {}", p.application_id, p.version);
        let resp = self.http.get(&url).bearer_auth(&self.token).send().await.map_err(|e| format!("cannot fetch {what}: {e}"))?;
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
            let staged = nodefs::Dir::open(&s).map_err(|e| format!("{}: {e}", s.display()))?;
            unpack(&d, &name, &staged)?;
            // Readable (and directories searchable) by the tasks' user.
            readable(&staged).map_err(|e| format!("{}: {e}", s.display()))?;
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

/// Adds read for everyone to every file and directory below `dir`, and
/// search (x) to directories and to files that are executable by anyone
/// (`chmod -R a+rX`), on handles, never through a link.
fn readable(dir: &nodefs::Dir) -> std::io::Result<()> {
    let m = dir.meta()?;
    dir.chmod((m.mode | 0o555) & 0o7777)?;
    for (name, kind) in dir.entries()? {
        match kind {
            nodefs::Kind::Dir => readable(&dir.open_dir(&name)?)?,
            nodefs::Kind::File => {
                let (f, m) = dir.open_file(&name)?;
                let x = if m.mode & 0o111 != 0 { 0o111 } else { 0 };
                nodefs::chmod_file(&f, (m.mode | 0o444 | x) & 0o7777)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// An archive entry's path as `/`-separated components that stay inside
/// the package directory (no absolute path, no `..`).
fn entry_path(p: &Path) -> Result<String, String> {
    use std::path::Component;
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| format!("the entry '{}' is not UTF-8", p.display()))?),
            Component::CurDir => {}
            _ => return Err(format!("the entry '{}' leaves the package directory", p.display())),
        }
    }
    Ok(parts.join("/"))
}

/// Whether a symbolic link at `at` (an entry path) pointing to `target`
/// stays inside the package directory: relative, and never climbing above
/// the package's top directory.
fn link_stays_inside(at: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth = at.split('/').count() as i64 - 1;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

/// Writes archive entries below the staging directory: every directory on
/// the way is opened without following a link (an entry cannot write
/// through a link an earlier entry made), files are created new, modes lose
/// set-user-ID, set-group-ID and sticky bits.
struct Unpacker<'a> {
    root: &'a nodefs::Dir,
}

impl Unpacker<'_> {
    fn parent<'p>(&self, rel: &'p str) -> Result<(nodefs::Dir, &'p str), String> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = self.root.make_dirs(dir, None).map_err(|e| format!("{rel}: {e}"))?;
        Ok((parent, name))
    }

    fn dir(&self, rel: &str) -> Result<(), String> {
        self.root.make_dirs(rel, None).map(|_| ()).map_err(|e| format!("{rel}: {e}"))
    }

    fn file(&self, rel: &str, data: &mut dyn std::io::Read, mode: Option<u32>) -> Result<(), String> {
        let (parent, name) = self.parent(rel)?;
        let mut f = parent.create_file(name, 0o644).map_err(|e| format!("{rel}: {e}"))?;
        std::io::copy(data, &mut f).map_err(|e| format!("{rel}: {e}"))?;
        if let Some(mode) = mode {
            nodefs::chmod_file(&f, mode & 0o777).map_err(|e| format!("{rel}: {e}"))?;
        }
        Ok(())
    }

    fn symlink(&self, rel: &str, target: &str) -> Result<(), String> {
        if !link_stays_inside(rel, target) {
            return Err(format!("the link '{rel}' -> '{target}' leaves the package directory"));
        }
        let (parent, name) = self.parent(rel)?;
        let _ = parent.remove(name, false);
        parent.symlink(target, name).map_err(|e| format!("{rel}: {e}"))
    }

    fn hard_link(&self, rel: &str, src: &str) -> Result<(), String> {
        let (src_dir, src_name) = self.root.parent_of(src).map_err(|e| format!("{rel} -> {src}: {e}"))?;
        let (parent, name) = self.parent(rel)?;
        let _ = parent.remove(name, false);
        parent.hard_link(&src_dir, src_name, name).map_err(|e| format!("{rel} -> {src}: {e}"))
    }
}

/// Unpacks a `.zip`, `.tar.gz`/`.tgz` or `.tar` archive into `dest`;
/// entries that would land outside it — by their path, or through a link —
/// are refused.
fn unpack(archive: &Path, name: &str, dest: &nodefs::Dir) -> Result<(), String> {
    let out = Unpacker { root: dest };
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive: {e}"))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
            let Some(rel) = entry.enclosed_name() else {
                return Err(format!("the entry '{}' leaves the package directory", entry.name()));
            };
            let rel = entry_path(&rel)?;
            if rel.is_empty() {
                continue;
            }
            if entry.is_dir() {
                out.dir(&rel)?;
            } else if entry.is_symlink() {
                let mut target = String::new();
                std::io::Read::read_to_string(&mut entry, &mut target).map_err(|e| format!("{rel}: {e}"))?;
                out.symlink(&rel, &target)?;
            } else {
                let mode = entry.unix_mode();
                out.file(&rel, &mut entry, mode)?;
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
    for entry in tar.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let rel = entry_path(&entry.path().map_err(|e| e.to_string())?)?;
        if rel.is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let link = |entry: &tar::Entry<'_, _>| -> Result<String, String> {
            match entry.link_name() {
                Ok(Some(l)) => l.to_str().map(str::to_string).ok_or_else(|| format!("the link '{rel}' is not UTF-8")),
                _ => Err(format!("the link '{rel}' has no target")),
            }
        };
        if kind.is_dir() {
            out.dir(&rel)?;
        } else if kind.is_symlink() {
            let target = link(&entry)?;
            out.symlink(&rel, &target)?;
        } else if kind.is_hard_link() {
            let src = entry_path(Path::new(&link(&entry)?))?;
            out.hard_link(&rel, &src)?;
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            let mode = entry.header().mode().ok();
            out.file(&rel, &mut entry, mode)?;
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
            // Read by the tar reader itself.
        } else {
            return Err(format!("the entry '{rel}' is a device, FIFO or other special file"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o4755);
        h
    }

    fn unpack_tar(data: &[u8]) -> (tempfile::TempDir, Result<(), String>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("p.tar");
        std::fs::write(&archive, data).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let out = nodefs::Dir::open(&dir.path().join("out")).unwrap();
        let r = unpack(&archive, "p.tar", &out);
        (dir, r)
    }

    #[test]
    fn links_in_archives_cannot_lead_outside() {
        let outside = tempfile::tempdir().unwrap();
        let o = outside.path().to_str().unwrap().to_string();
        // A link out of the package, then a file written "through" it.
        let data = tar_with(|b| {
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "escape", &o).unwrap();
            let mut h = header(tar::EntryType::Regular, 1);
            b.append_data(&mut h, "escape/x", &b"x"[..]).unwrap();
        });
        let (_d, r) = unpack_tar(&data);
        assert!(r.unwrap_err().contains("leaves the package directory"));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // A relative link that stays inside is made; a later entry below it
        // is not written through it.
        let data = tar_with(|b| {
            let mut h = header(tar::EntryType::Directory, 0);
            b.append_data(&mut h, "real/", &b""[..]).unwrap();
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "inner", "real").unwrap();
            let mut h = header(tar::EntryType::Regular, 2);
            b.append_data(&mut h, "inner/y", &b"yy"[..]).unwrap();
        });
        let (d, r) = unpack_tar(&data);
        assert!(r.unwrap_err().contains("inner/y"), "no write through the link");
        assert!(std::fs::symlink_metadata(d.path().join("out/inner")).unwrap().file_type().is_symlink());

        // Climbing links, and hard links to files outside, are refused.
        for (kind, target) in [(tar::EntryType::Symlink, "../../x"), (tar::EntryType::Link, "../../etc/passwd")] {
            let data = tar_with(|b| {
                let mut h = header(kind, 0);
                b.append_link(&mut h, "a/l", target).unwrap();
            });
            let (_d, r) = unpack_tar(&data);
            assert!(r.is_err(), "{target}");
        }

        // Regular files lose set-user-ID; hard links inside work.
        let data = tar_with(|b| {
            let mut h = header(tar::EntryType::Regular, 3);
            b.append_data(&mut h, "bin/tool", &b"abc"[..]).unwrap();
            let mut h = header(tar::EntryType::Link, 0);
            b.append_link(&mut h, "bin/same", "bin/tool").unwrap();
        });
        let (d, r) = unpack_tar(&data);
        r.unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.path().join("out/bin/tool")).unwrap().permissions().mode() & 0o7777, 0o755);
        assert_eq!(std::fs::read(d.path().join("out/bin/same")).unwrap(), b"abc");
        assert!(link_stays_inside("a/b/l", "../c"));
        assert!(!link_stays_inside("l", "../c"));
        assert!(!link_stays_inside("a/l", "/etc"));
    }

    #[test]
    fn zip_slip_and_zip_links_are_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("p.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.add_symlink("up", "../../..", opts).unwrap();
        z.start_file("ok.txt", opts).unwrap();
        z.write_all(b"ok").unwrap();
        z.finish().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let out = nodefs::Dir::open(&dir.path().join("out")).unwrap();
        assert!(unpack(&archive, "p.zip", &out).unwrap_err().contains("leaves the package directory"));
    }
}
