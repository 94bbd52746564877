//! Local files: `file://` sources and destinations on a filesystem the node
//! shares, and creating downloaded files safely inside a task directory.
//! Everything here blocks: callers run it in `spawn_blocking`.

use std::fs::File;
use std::io::{self, Read, Write};
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
/// (see [`file_path_is_confined`]); `.` and `..` applied lexically.
pub fn below(base: &Path, rel: &str) -> Option<PathBuf> {
    if !file_path_is_confined(rel) {
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

/// A failure to make a directory below a task directory, told plainly: a
/// link on the way (which is never followed) or a file in the way.
pub fn dir_error(e: io::Error) -> io::Error {
    if nodefs::is_link(&e) {
        io::Error::new(io::ErrorKind::InvalidInput, "a directory on the way is a symbolic link")
    } else if e.raw_os_error() == Some(libc::ENOTDIR) {
        io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory")
    } else {
        e
    }
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

/// Gives a downloaded file its owner (when set) and permissions, on its
/// descriptor.
pub fn finish_file(file: &File, owner: Option<(u32, u32)>, mode: u32) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        nodefs::chown_file(file, uid, gid)?;
    }
    nodefs::chmod_file(file, mode)
}

/// Whether an error is "no space left on the device".
pub fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT)
}

/// Whether a resource file's `filePath` stays inside the directory it is
/// relative to: not absolute, and no `..` that climbs above it. (An empty
/// path is the directory itself.)
pub fn file_path_is_confined(p: &str) -> bool {
    if p.starts_with('/') || p.contains('\0') {
        return false;
    }
    let mut depth = 0usize;
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
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
