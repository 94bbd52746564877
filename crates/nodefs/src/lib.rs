//! File operations on a compute node that a task cannot redirect.
//!
//! Tasks own their task directories, so any entry in them — and in any
//! directory a task can write — may be replaced at any moment by a symbolic
//! link, a hard link, a FIFO or a directory, also in the instant between a
//! check and the use that follows it. The agent runs as root: following such
//! an entry would let a task have the agent read, write or chown any file of
//! the node. So nothing here hands the kernel a path that crosses a
//! task-writable directory to resolve on its own:
//!
//! - A [`Dir`] is an open directory handle. Everything below it is reached
//!   relative to it, never following a symbolic link at any component:
//!   `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel
//!   has it (Linux 5.6+), else `openat` with `O_NOFOLLOW`, one component at
//!   a time. `..` is refused.
//! - What was opened is checked on the descriptor (`fstat`): a file to read
//!   must be a regular file; a directory, a FIFO or a device is refused
//!   (files are opened `O_NONBLOCK`, so a FIFO cannot stall the caller).
//! - Owners and modes change on descriptors (`fchown`, `fchmod`), never on
//!   paths.
//! - A file the agent creates is created with `O_EXCL`: whatever is in its
//!   place (a link, a FIFO, a hard link to another file) is unlinked first,
//!   never opened.
//!
//! Only the directories an administrator names (the node root, a shared
//! file root) are opened by path ([`Dir::open`]).
//!
//! Everything here blocks; async callers use `spawn_blocking`.

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// What a directory entry is (a link is never looked through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl Kind {
    fn of(t: rfs::FileType) -> Kind {
        match t {
            rfs::FileType::RegularFile => Kind::File,
            rfs::FileType::Directory => Kind::Dir,
            rfs::FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// The metadata of a file or directory (of a link itself, not its target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits and file type (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub modified_ms: i64,
    pub changed_ms: i64,
}

impl Meta {
    #[allow(clippy::unnecessary_cast)]
    fn of(s: &rfs::Stat) -> Meta {
        let ms = |sec: i64, nsec: i64| sec * 1000 + nsec / 1_000_000;
        Meta {
            kind: Kind::of(rfs::FileType::from_raw_mode(s.st_mode as _)),
            size: s.st_size as u64,
            mode: s.st_mode as u32,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            nlink: s.st_nlink as u64,
            modified_ms: ms(s.st_mtime as i64, s.st_mtime_nsec as i64),
            changed_ms: ms(s.st_ctime as i64, s.st_ctime_nsec as i64),
        }
    }
}

/// An open directory, with the path it was reached by (for messages only:
/// the handle, not the path, is what is used).
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: Arc<Path>,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The components of a `/`-separated relative path: empty and `.`
/// components are skipped, a leading `/` is ignored; `..` (or a NUL byte)
/// is refused with `InvalidInput`.
pub fn components(rel: &str) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(io::Error::new(io::ErrorKind::InvalidInput, "the path climbs out of its directory ('..')")),
            c if c.contains('\0') => return Err(io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether an error means a symbolic link was met where none is followed.
pub fn is_link(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
}

/// Whether an error means "no such file or directory".
pub fn is_missing(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::NOENT.raw_os_error())
}

/// The error for a file that is not a regular file (a FIFO, a device...).
pub fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

/// Whether `openat2` works here: 0 not known yet, 1 yes, 2 no.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

#[cfg(test)]
thread_local! {
    /// Tests take the component-by-component path even where `openat2` works.
    static FORCE_WALK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn use_openat2() -> bool {
    #[cfg(test)]
    if FORCE_WALK.with(|f| f.get()) {
        return false;
    }
    OPENAT2.load(Ordering::Relaxed) != 2
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// Opens `comps` below `dir`. `strict`: no symbolic link anywhere; else
/// links that stay below `dir` are followed (where `openat2` exists; without
/// it this is strict too). `flags` apply to the last component. A link met
/// on the way is `ELOOP`.
fn open_below(dir: BorrowedFd<'_>, comps: &[&str], flags: OFlags, mode: Mode, strict: bool) -> io::Result<OwnedFd> {
    open_below_raw(dir, comps, flags, mode, strict).map_err(|e| explain(dir, comps, e))
}

/// The kernel reports a link where a directory was asked for as `ENOTDIR`:
/// say `ELOOP` when a component is a link (an error path only; nothing is
/// followed here either).
fn explain(dir: BorrowedFd<'_>, comps: &[&str], e: Errno) -> io::Error {
    if e != Errno::NOTDIR {
        return e.into();
    }
    let mut cur: Option<OwnedFd> = None;
    for c in comps {
        let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
        match rfs::statat(at, *c, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) if Kind::of(rfs::FileType::from_raw_mode(s.st_mode as _)) == Kind::Symlink => return Errno::LOOP.into(),
            Ok(_) => {}
            Err(_) => break,
        }
        match rfs::openat(at, *c, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => cur = Some(fd),
            Err(_) => break,
        }
    }
    e.into()
}

fn open_below_raw(dir: BorrowedFd<'_>, comps: &[&str], flags: OFlags, mode: Mode, strict: bool) -> Result<OwnedFd, Errno> {
    let mode = if flags.contains(OFlags::CREATE) { mode } else { Mode::empty() };
    let Some((last, parents)) = comps.split_last() else {
        return rfs::openat(dir, ".", flags | OFlags::CLOEXEC, mode);
    };
    if use_openat2() {
        let joined = comps.join("/");
        let resolve = if strict {
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
        } else {
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
        };
        let flags = if strict { flags | OFlags::NOFOLLOW } else { flags };
        for _ in 0..4 {
            match rfs::openat2(dir, joined.as_str(), flags | OFlags::CLOEXEC, mode, resolve) {
                Ok(fd) => {
                    OPENAT2.store(1, Ordering::Relaxed);
                    return Ok(fd);
                }
                // A rename elsewhere raced the lookup: try again.
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    OPENAT2.store(2, Ordering::Relaxed);
                    break;
                }
                // A seccomp filter may refuse it: walk instead.
                Err(Errno::PERM) if OPENAT2.load(Ordering::Relaxed) == 0 => break,
                Err(e) => return Err(e),
            }
        }
    }
    let mut cur: Option<OwnedFd> = None;
    for c in parents {
        let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
        cur = Some(rfs::openat(at, *c, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?);
    }
    let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
    rfs::openat(at, *last, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode)
}

impl Dir {
    /// Opens a directory an administrator named (the node root, a shared
    /// file root): symbolic links in `path` are followed. Never use it for a
    /// path inside a directory a task can write.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rfs::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(Dir { fd: Arc::new(fd), path: path.into() })
    }

    /// The path this directory was reached by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, fd: OwnedFd, comps: &[&str]) -> Dir {
        let mut p = PathBuf::from(&*self.path);
        p.extend(comps);
        Dir { fd: Arc::new(fd), path: p.into() }
    }

    /// The directory's own metadata.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(Meta::of(&rfs::fstat(&*self.fd)?))
    }

    /// Gives the directory to `uid`:`gid` (on the handle; nothing when it
    /// already is theirs).
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        chown_fd(self.fd.as_fd(), uid, gid)
    }

    /// Sets the directory's permission bits (on the handle).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        Ok(rfs::fchmod(&*self.fd, Mode::from_raw_mode(mode & 0o7777))?)
    }

    /// The directory `rel` below this one; no component may be a link.
    pub fn open_dir(&self, rel: &str) -> io::Result<Dir> {
        let comps = components(rel)?;
        let fd = open_below(self.fd.as_fd(), &comps, DIR_FLAGS, Mode::empty(), true)?;
        Ok(self.child(fd, &comps))
    }

    /// The directory `rel` below this one, following links that stay below
    /// it (for shared file roots; strict where `openat2` is missing).
    pub fn open_dir_beneath(&self, rel: &str) -> io::Result<Dir> {
        let comps = components(rel)?;
        let fd = open_below(self.fd.as_fd(), &comps, DIR_FLAGS, Mode::empty(), false)?;
        Ok(self.child(fd, &comps))
    }

    /// Opens the regular file `rel` to read; no component may be a link.
    /// A directory is `EISDIR`; a FIFO, socket or device is refused.
    pub fn open_file(&self, rel: &str) -> io::Result<(File, Meta)> {
        let comps = components(rel)?;
        open_regular(open_below(self.fd.as_fd(), &comps, read_flags(), Mode::empty(), true)?)
    }

    /// As [`Dir::open_file`], following links that stay below this
    /// directory (for shared file roots; strict where `openat2` is missing).
    pub fn open_file_beneath(&self, rel: &str) -> io::Result<(File, Meta)> {
        let comps = components(rel)?;
        open_regular(open_below(self.fd.as_fd(), &comps, read_flags(), Mode::empty(), false)?)
    }

    /// The metadata of the entry `rel` (of a link itself); no directory on
    /// the way may be a link. An empty path is this directory.
    pub fn stat(&self, rel: &str) -> io::Result<Meta> {
        let comps = components(rel)?;
        match comps.split_last() {
            None => self.meta(),
            Some((name, parents)) => {
                let parent = open_below(self.fd.as_fd(), parents, DIR_FLAGS, Mode::empty(), true)?;
                Ok(Meta::of(&rfs::statat(&parent, *name, AtFlags::SYMLINK_NOFOLLOW)?))
            }
        }
    }

    /// The directory that holds `rel`, and the last component's name; no
    /// directory on the way may be a link. Err(InvalidInput) for an empty path.
    pub fn parent_of<'a>(&self, rel: &'a str) -> io::Result<(Dir, &'a str)> {
        let comps = components(rel)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the path names no entry"));
        };
        let fd = open_below(self.fd.as_fd(), parents, DIR_FLAGS, Mode::empty(), true)?;
        Ok((self.child(fd, parents), name))
    }

    /// The directory `rel` below this one, creating what is missing
    /// (`mkdir -p`); directories it creates are given to `owner`. A link on
    /// the way fails with `ELOOP`, a file with `ENOTDIR`.
    pub fn make_dirs(&self, rel: &str, owner: Option<(u32, u32)>) -> io::Result<Dir> {
        let comps = components(rel)?;
        match open_below(self.fd.as_fd(), &comps, DIR_FLAGS, Mode::empty(), true) {
            Ok(fd) => return Ok(self.child(fd, &comps)),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e),
        }
        let mut cur = self.clone();
        for c in comps {
            cur = match cur.sub_dir(c, owner, false) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => return Err(explain(cur.as_fd(), &[c], Errno::NOTDIR)),
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }

    /// The subdirectory `name`, created when missing (and then given to
    /// `owner`). `replace`: an entry in its place that is not a directory
    /// (a link, a file) is removed first, and `owner` gets the directory
    /// even when it existed.
    fn sub_dir(&self, name: &str, owner: Option<(u32, u32)>, replace: bool) -> io::Result<Dir> {
        let mut last = None;
        for _ in 0..4 {
            match rfs::openat(&*self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(fd) => {
                    let d = self.child(fd, &[name]);
                    if let (true, Some((uid, gid))) = (replace, owner) {
                        d.chown(uid, gid)?;
                    }
                    return Ok(d);
                }
                Err(Errno::NOENT) => match rfs::mkdirat(&*self.fd, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {
                        let fd = rfs::openat(&*self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty());
                        match fd {
                            Ok(fd) => {
                                let d = self.child(fd, &[name]);
                                if let Some((uid, gid)) = owner {
                                    d.chown(uid, gid)?;
                                }
                                return Ok(d);
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(e @ (Errno::LOOP | Errno::NOTDIR)) if replace => {
                    last = Some(e);
                    match rfs::unlinkat(&*self.fd, name, AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map(io::Error::from).unwrap_or_else(|| io::Error::other("the directory keeps changing")))
    }

    /// The subdirectory `name` of this directory, owned by `owner`: created
    /// when missing; a link or file in its place is removed first.
    pub fn ensure_dir(&self, name: &str, owner: Option<(u32, u32)>) -> io::Result<Dir> {
        self.sub_dir(single(name)?, owner, true)
    }

    /// Creates the empty regular file `name` in this directory (`O_EXCL`):
    /// whatever else is in its place — a link, a FIFO, an earlier file — is
    /// unlinked first, never opened. A directory in its place is `EISDIR`.
    pub fn create_file(&self, name: &str, mode: u32) -> io::Result<File> {
        let name = single(name)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        let mut last = Errno::EXIST;
        for _ in 0..4 {
            match rfs::openat(&*self.fd, name, flags, Mode::from_raw_mode(mode & 0o7777)) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(Errno::EXIST) => match rfs::unlinkat(&*self.fd, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => last = Errno::EXIST,
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.into())
    }

    /// Opens the file `name` of this directory to append to it, when it is
    /// a regular file that `keep` accepts (e.g. one link, the right owner);
    /// anything else in its place (a link, a FIFO, a hard link to another
    /// file) is replaced by a new empty file. A directory is `EISDIR`.
    pub fn append_file(&self, name: &str, mode: u32, keep: impl Fn(&Meta) -> bool) -> io::Result<File> {
        let name = single(name)?;
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        match rfs::openat(&*self.fd, name, flags, Mode::empty()) {
            Ok(fd) => {
                let meta = Meta::of(&rfs::fstat(&fd)?);
                if meta.kind == Kind::File && keep(&meta) {
                    rfs::fcntl_setfl(&fd, OFlags::APPEND)?;
                    return Ok(File::from(fd));
                }
            }
            Err(Errno::ISDIR) => return Err(Errno::ISDIR.into()),
            // Missing, a link (ELOOP), a FIFO without reader (ENXIO), ...: a new file.
            Err(_) => {}
        }
        let f = self.create_file(name, mode)?;
        rfs::fcntl_setfl(&f, OFlags::APPEND)?;
        Ok(f)
    }

    /// The entries of this directory (not `.` and `..`), with what each is
    /// (links are not looked through). Names that are not UTF-8 are skipped.
    pub fn entries(&self) -> io::Result<Vec<(String, Kind)>> {
        let mut out = Vec::new();
        for e in rfs::Dir::read_from(&*self.fd)? {
            let e = e?;
            let Ok(name) = e.file_name().to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match e.file_type() {
                rfs::FileType::Unknown => match rfs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => Meta::of(&s).kind,
                    Err(_) => continue,
                },
                t => Kind::of(t),
            };
            out.push((name.to_string(), kind));
        }
        Ok(out)
    }

    /// Removes the entry `name` of this directory: a link is removed, not
    /// followed; a directory only when empty unless `recursive` (its
    /// contents are removed the same way, never through a link).
    pub fn remove(&self, name: &str, recursive: bool) -> io::Result<()> {
        let name = single(name)?;
        match rfs::unlinkat(&*self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::ISDIR) => {
                if recursive {
                    match rfs::openat(&*self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
                        Ok(fd) => self.child(fd, &[name]).clear()?,
                        // Swapped for something else meanwhile: remove that.
                        Err(Errno::LOOP | Errno::NOTDIR) => return self.remove(name, recursive),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(rfs::unlinkat(&*self.fd, name, AtFlags::REMOVEDIR)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes everything in this directory, never through a link.
    pub fn clear(&self) -> io::Result<()> {
        for (name, _) in self.entries()? {
            match self.remove(&name, true) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates the symbolic link `name` → `target` in this directory (the
    /// link is made, its target is not checked or followed).
    pub fn symlink(&self, target: &str, name: &str) -> io::Result<()> {
        Ok(rfs::symlinkat(target, &*self.fd, single(name)?)?)
    }

    /// Makes `name` in this directory a hard link to the entry `src_name` of
    /// `src` (a link there is linked itself, not followed).
    pub fn hard_link(&self, src: &Dir, src_name: &str, name: &str) -> io::Result<()> {
        Ok(rfs::linkat(&*src.fd, single(src_name)?, &*self.fd, single(name)?, AtFlags::empty())?)
    }
}

/// A name of one component (no `/`, not `.` or `..`, not empty).
fn single(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("'{name}' is not a file name")));
    }
    Ok(name)
}

fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY
}

/// Checks that an opened descriptor is a regular file.
fn open_regular(fd: OwnedFd) -> io::Result<(File, Meta)> {
    let meta = Meta::of(&rfs::fstat(&fd)?);
    match meta.kind {
        Kind::File => Ok((File::from(fd), meta)),
        Kind::Dir => Err(Errno::ISDIR.into()),
        _ => Err(not_regular()),
    }
}

fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    let m = Meta::of(&rfs::fstat(fd)?);
    if m.uid == uid && m.gid == gid {
        return Ok(());
    }
    Ok(rfs::fchown(fd, Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)))?)
}

/// Gives an open file to `uid`:`gid` (on the descriptor).
pub fn chown_file(f: &File, uid: u32, gid: u32) -> io::Result<()> {
    chown_fd(f.as_fd(), uid, gid)
}

/// Sets an open file's permission bits (on the descriptor).
pub fn chmod_file(f: &File, mode: u32) -> io::Result<()> {
    Ok(rfs::fchmod(f, Mode::from_raw_mode(mode & 0o7777))?)
}

/// The metadata of an open file.
pub fn file_meta(f: &File) -> io::Result<Meta> {
    Ok(Meta::of(&rfs::fstat(f)?))
}

/// Opens an absolute path from `/` without following a link at any
/// component: the directory (`Ok(Dir)`) for a path to a directory.
pub fn open_dir_nofollow(path: &Path) -> io::Result<Dir> {
    Dir::open(Path::new("/"))?.open_dir(&path.to_string_lossy())
}

#[cfg(test)]
mod tests;
