//! Local files: `file://` sources and destinations on a filesystem the node
//! shares, and creating downloaded files safely inside a task directory.
//! Everything here blocks: callers run it in `spawn_blocking`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Copy buffer size.
const COPY_BUFFER: usize = 256 * 1024;

/// The path of a `file://` URL (percent-decoded), or None for other URLs.
/// `file:///abs` and `file://localhost/abs` name `/abs`.
pub fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.get(..7).filter(|s| s.eq_ignore_ascii_case("file://")).map(|_| &url[7..])?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    Some(PathBuf::from(crate::blob::percent_decode(path)))
}

/// `base` joined with a relative `/`-separated name that must stay below it
/// (see [`crate::file_path_is_confined`]); `.` and `..` applied lexically.
pub fn below(base: &Path, rel: &str) -> Option<PathBuf> {
    if !crate::file_path_is_confined(rel) {
        return None;
    }
    let mut out = base.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(s) => {
                out.push(s);
                depth += 1;
            }
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            _ => {}
        }
    }
    Some(out)
}

/// Every regular file below `root` as `/`-separated relative paths, sorted.
/// Symbolic links are not followed.
pub fn walk_files(root: &Path) -> io::Result<Vec<String>> {
    fn go(dir: &Path, rel: &str, out: &mut Vec<String>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let ty = entry.file_type()?;
            if ty.is_dir() {
                go(&entry.path(), &r, out)?;
            } else if ty.is_file() {
                out.push(r);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// Why a local step failed, for the caller to turn into a failure code.
#[derive(Debug)]
pub enum Fault {
    /// Reading the source.
    Read(io::Error),
    /// Creating a directory of the destination.
    Dir(PathBuf, io::Error),
    /// Creating the destination file.
    Create(io::Error),
    /// Writing the destination file.
    Write(io::Error),
}

/// Creates `dir` and its missing parents, all below `root` (which exists),
/// refusing to pass through a symbolic link below `root`; directories it
/// creates are given to `owner`.
pub fn make_dirs(root: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), Fault> {
    let rel = dir.strip_prefix(root).map_err(|_| {
        Fault::Dir(dir.to_path_buf(), io::Error::new(io::ErrorKind::InvalidInput, "outside the task directory"))
    })?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Fault::Dir(at, io::Error::new(io::ErrorKind::InvalidInput, "is a symbolic link")));
            }
            Ok(_) => return Err(Fault::Dir(at, io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match std::fs::create_dir(&at) {
                    Ok(()) => {}
                    // Another download made it meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && at.is_dir() => continue,
                    Err(e) => return Err(Fault::Dir(at, e)),
                }
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&at, Some(uid), Some(gid)).map_err(|e| Fault::Dir(at.clone(), e))?;
                }
            }
            Err(e) => return Err(Fault::Dir(at, e)),
        }
    }
    Ok(())
}

/// Creates (or truncates) a downloaded file without following a symbolic
/// link in its place: one left there is replaced.
pub fn create_file(path: &Path) -> io::Result<File> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path)?;
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Opens a file to upload, refusing a symbolic link.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(f)
}

/// Streams `input` into `output`, telling read and write failures apart.
pub fn copy(input: &mut impl Read, output: &mut impl Write) -> Result<u64, Fault> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Read(e)),
        };
        output.write_all(&buf[..n]).map_err(Fault::Write)?;
        total += n as u64;
    }
    output.flush().map_err(Fault::Write)?;
    Ok(total)
}

/// Gives a downloaded file its owner (when set) and permissions.
pub fn finish_file(path: &Path, owner: Option<(u32, u32)>, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Whether an error is "no space left on the device".
pub fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        assert_eq!(file_url_path("file:///mnt/share/a%20b.txt"), Some(PathBuf::from("/mnt/share/a b.txt")));
        assert_eq!(file_url_path("FILE:///x"), Some(PathBuf::from("/x")));
        assert_eq!(file_url_path("file://localhost/x/y"), Some(PathBuf::from("/x/y")));
        assert_eq!(file_url_path("http://h/x"), None);
        assert_eq!(file_url_path("file"), None);
    }

    #[test]
    fn joining_below() {
        let b = Path::new("/wd");
        assert_eq!(below(b, "a/./b/../c"), Some(PathBuf::from("/wd/a/c")));
        assert_eq!(below(b, ""), Some(PathBuf::from("/wd")));
        assert_eq!(below(b, "../x"), None);
        assert_eq!(below(b, "/etc/passwd"), None);
    }

    #[test]
    fn directories_never_pass_through_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        make_dirs(root.path(), &root.path().join("a/b/c"), None).unwrap();
        assert!(root.path().join("a/b/c").is_dir());
        make_dirs(root.path(), &root.path().join("a/b/c"), None).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("l")).unwrap();
        assert!(matches!(make_dirs(root.path(), &root.path().join("l/x"), None), Err(Fault::Dir(..))));
        assert!(!outside.path().join("x").exists());
        std::fs::write(root.path().join("f"), "").unwrap();
        assert!(matches!(make_dirs(root.path(), &root.path().join("f/x"), None), Err(Fault::Dir(..))));

        // A link where a file goes is replaced, not written through.
        let target = outside.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("dl")).unwrap();
        create_file(&root.path().join("dl")).unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(root.path().join("dl")).unwrap(), "new");
        assert!(open_regular(&root.path().join("l")).is_err());
    }

    #[test]
    fn walking_and_copying() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("x/y")).unwrap();
        std::fs::write(d.path().join("x/y/f"), "F").unwrap();
        std::fs::write(d.path().join("top"), "T").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        assert_eq!(walk_files(d.path()).unwrap(), ["top", "x/y/f"]);
        assert!(walk_files(&d.path().join("missing")).is_err());
        let data: Vec<u8> = (0..COPY_BUFFER * 3 + 7).map(|i| i as u8).collect();
        let mut out = Vec::new();
        assert_eq!(copy(&mut data.as_slice(), &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }
}
