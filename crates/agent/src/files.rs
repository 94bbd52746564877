//! Task and node files, served to the server: listed, described, read and
//! deleted below a base directory of the node root.
//!
//! Tasks can change their directories at any moment, so nothing here
//! resolves a path and then uses it: the base directory and every path
//! below it are opened component by component from the node root without
//! following a symbolic link (see [`nodefs`]), what was opened is checked
//! on its descriptor, and deletes unlink entries of an open directory.
//! Links are neither listed nor served; a FIFO or device is not read.
//!
//! A read of up to [`proto::INLINE_READ`] bytes goes back inline in the
//! reply; a larger one is streamed: the reply carries the metadata and
//! `stream: true`, then [`send`] posts the bytes to the server on a data
//! connection of their own, read from the file as fast as the server (and
//! so the client) takes them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use nodefs::{Dir, Kind, Meta};
use proto::{FileEntry, FileOp, FileReply, FileRequest};
use std::io;
use std::path::Path;

/// A read to stream: the open file, and the range of it.
#[derive(Debug)]
pub struct Stream {
    pub key: String,
    pub file: std::fs::File,
    pub start: u64,
    pub len: u64,
}

/// How much is read from the file at a time while streaming.
const CHUNK: usize = 256 * 1024;

fn entry(path: String, m: &Meta) -> FileEntry {
    let is_dir = m.kind == Kind::Dir;
    FileEntry { path, is_dir, size: if is_dir { 0 } else { m.size }, modified_ms: m.modified_ms, created_ms: m.changed_ms, mode: m.mode }
}

/// The reply's error code for a failed file system call.
fn code(e: &io::Error) -> &'static str {
    if nodefs::is_link(e) {
        return "Symlink";
    }
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => "NotFound",
        Some(libc::EISDIR) => "IsDirectory",
        Some(libc::ENOTEMPTY) => "DirectoryNotEmpty",
        None if e.kind() == io::ErrorKind::InvalidInput => "NotRegular",
        _ => "Io",
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Entries below `dir` (named from `prefix`), sorted at each level; links
/// are left out and never descended into.
fn walk(dir: &Dir, prefix: &str, recursive: bool, out: &mut Vec<FileEntry>) {
    let Ok(mut names) = dir.entries() else { return };
    names.sort();
    for (name, kind) in names {
        if kind == Kind::Symlink {
            continue;
        }
        let Ok(m) = dir.stat(&name) else { continue };
        if m.kind == Kind::Symlink {
            continue; // swapped for a link meanwhile
        }
        let path = join(prefix, &name);
        out.push(entry(path.clone(), &m));
        if recursive && m.kind == Kind::Dir {
            if let Ok(sub) = dir.open_dir(&name) {
                walk(&sub, &path, true, out);
            }
        }
    }
}

/// Serves one file request below the node root `root`; a large read comes
/// back with the file to [`send`].
pub fn file_op(root: &Path, req: FileRequest) -> (FileReply, Option<Stream>) {
    let mut reply = FileReply { id: req.id, error: None, entries: Vec::new(), data: None, size: None, stream: false, length: None };
    let (Ok(base_parts), Ok(parts)) = (nodefs::components(&req.base), nodefs::components(&req.path)) else {
        reply.error = Some("OutsideRoot".into());
        return (reply, None);
    };
    let rel = parts.join("/");
    let served = (|| -> io::Result<Option<Stream>> {
        let node = Dir::open(root)?;
        let base = node.open_dir(&base_parts.join("/"))?;
        match req.op {
            FileOp::Stat => {
                let m = base.stat(&rel)?;
                if m.kind == Kind::Symlink {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                reply.size = Some(if m.kind == Kind::Dir { 0 } else { m.size });
                reply.entries.push(entry(rel.clone(), &m));
                Ok(None)
            }
            FileOp::List { recursive } => {
                let dir = base.open_dir(&rel)?;
                walk(&dir, &rel, recursive, &mut reply.entries);
                Ok(None)
            }
            FileOp::Read { start, end, stream } => {
                let (file, m) = base.open_file(&rel)?;
                let size = m.size;
                let end = end.unwrap_or(size).min(size);
                if start > end || (start >= size && size > 0) {
                    reply.error = Some("InvalidRange".into());
                    return Ok(None);
                }
                let len = end - start;
                reply.size = Some(size);
                reply.length = Some(len);
                reply.entries.push(entry(rel.clone(), &m));
                if len <= proto::INLINE_READ {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; len as usize];
                    let mut got = 0;
                    while got < buf.len() {
                        match file.read_at(&mut buf[got..], start + got as u64)? {
                            0 => break, // shrank meanwhile
                            n => got += n,
                        }
                    }
                    buf.truncate(got);
                    reply.length = Some(got as u64);
                    reply.data = Some(STANDARD.encode(buf));
                    return Ok(None);
                }
                reply.stream = true;
                Ok(Some(Stream { key: stream, file, start, len }))
            }
            FileOp::Delete { recursive } => {
                // An empty path deletes the base directory itself (never the node root).
                let (parent, name) = if rel.is_empty() {
                    if base_parts.is_empty() {
                        reply.error = Some("OutsideRoot".into());
                        return Ok(None);
                    }
                    let base_rel = base_parts.join("/");
                    let (parent, name) = node.parent_of(&base_rel)?;
                    (parent, name.to_string())
                } else {
                    let (parent, name) = base.parent_of(&rel)?;
                    (parent, name.to_string())
                };
                parent.remove(&name, recursive)?;
                Ok(None)
            }
        }
    })();
    match served {
        Ok(stream) => (reply, stream),
        Err(e) => {
            reply.error = Some(code(&e).into());
            reply.entries.clear();
            (reply, None)
        }
    }
}

/// Posts a streamed read's bytes to the server (`server` is its
/// `http(s)://host:port`). The file is read a chunk at a time, only as
/// fast as the connection takes it.
pub async fn send(client: &reqwest::Client, server: &str, token: &str, s: Stream) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let url = format!("{}{}/{}", server.trim_end_matches('/'), proto::FILE_STREAM_PATH, s.key);
    let mut file = tokio::fs::File::from_std(s.file);
    file.seek(io::SeekFrom::Start(s.start)).await.map_err(|e| e.to_string())?;
    let body = tokio_util::io::ReaderStream::with_capacity(file.take(s.len), CHUNK);
    let resp = client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_LENGTH, s.len)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("the server refused the file stream: HTTP {}", resp.status()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
