//! Starting a task process as another user without copying the agent.
//!
//! `std::process::Command` falls back to `fork` whenever the child must
//! change its user, and `fork` copies the agent's page tables and then
//! pays copy-on-write faults on the agent's side: at thousands of tasks a
//! second that is most of the cost of a start. This module does what
//! `posix_spawn` does inside the C library: `clone(CLONE_VM | CLONE_VFORK)`
//! runs a small child function on its own stack, in the agent's memory, while
//! the calling thread waits until the child has called `execve` (or died).
//!
//! Rules the child follows, because it shares the agent's memory and thread
//! pointer: everything it uses is prepared before the clone (no allocation,
//! no locks, no Rust runtime); it changes identity with raw system calls
//! (the C library's `setuid` would try to change every thread of the agent);
//! all signals are blocked around the clone and the child resets every
//! handled or ignored signal to its default before unblocking, so no agent
//! handler ever runs on the child's stack and no task inherits what the
//! agent ignores.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The identity and layout of a process to start.
pub struct Spec<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// The complete environment (nothing is inherited).
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    /// An open handle of `cwd`: the child enters it with `fchdir`, so a
    /// path swapped meanwhile (for a link) cannot redirect it.
    pub cwd_fd: Option<RawFd>,
    pub stdout: &'a std::fs::File,
    pub stderr: &'a std::fs::File,
    /// Switch to this user and group (dropping supplementary groups).
    pub ids: Option<(u32, u32)>,
    /// Join this cgroup (its open `cgroup.procs`) before anything else can
    /// run as the task: see `contain`.
    pub cgroup: Option<RawFd>,
    /// The supplementary groups the process has after switching (with
    /// `ids` only; none besides these are kept).
    pub groups: &'a [u32],
}

/// A started child: its pid (also its process group id) and a pidfd when the
/// kernel has them (Linux 5.3+).
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
}

/// Where the child failed, if it did.
#[derive(Default)]
#[repr(C)]
struct Report {
    errno: i32,
    step: i32,
}

const STEP_SETPGID: i32 = 1;
const STEP_IDS: i32 = 2;
const STEP_CHDIR: i32 = 3;
const STEP_FDS: i32 = 4;
const STEP_EXEC: i32 = 5;
const STEP_CGROUP: i32 = 6;

/// What the child reads; all pointers point into memory the parent keeps
/// alive (and unchanged) until the clone returns.
#[repr(C)]
struct ChildArgs {
    candidates: *const *const libc::c_char,
    candidates_len: usize,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// -1: enter `cwd` by path.
    cwd_fd: RawFd,
    fds: [RawFd; 3],
    /// `cgroup.procs` of the attempt's cgroup, or -1.
    cgroup: RawFd,
    /// The agent's pid: the child dies with it (see `child`).
    parent: libc::pid_t,
    uid: u32,
    gid: u32,
    groups: *const libc::gid_t,
    groups_len: usize,
    switch_ids: bool,
    /// The signal mask the process starts with (the calling thread's).
    mask: *const libc::sigset_t,
    report: *mut Report,
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command line or environment"))
}

/// Starts the process in a new process group. A missing program is
/// `io::ErrorKind::NotFound`, as with `Command::spawn`.
pub fn spawn(spec: &Spec) -> io::Result<Child> {
    // The program's possible paths, in PATH order when it has no slash (as
    // execvp searches, with the child's PATH).
    let mut candidates: Vec<CString> = Vec::new();
    if spec.program.contains('/') {
        candidates.push(cstring(spec.program.as_bytes())?);
    } else {
        let path = spec.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("/usr/bin:/bin");
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            candidates.push(cstring(format!("{dir}/{}", spec.program).as_bytes())?);
        }
    }
    let candidate_ptrs: Vec<*const libc::c_char> = candidates.iter().map(|c| c.as_ptr()).collect();
    let mut argv: Vec<CString> = vec![cstring(spec.program.as_bytes())?];
    for a in spec.args {
        argv.push(cstring(a.as_bytes())?);
    }
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp: Vec<CString> = Vec::with_capacity(spec.env.len());
    for (k, v) in spec.env {
        let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
        kv.extend_from_slice(k.as_bytes());
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(cstring(&kv)?);
    }
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let cwd = cstring(OsStr::as_bytes(spec.cwd.as_os_str()))?;
    // Opened once (close-on-exec; the child's stdin is a copy).
    static DEV_NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let stdin = match DEV_NULL.get() {
        Some(f) => f,
        None => {
            let f = std::fs::File::open("/dev/null")?;
            DEV_NULL.get_or_init(|| f)
        }
    };

    let mut report = Report::default();
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let (uid, gid) = spec.ids.unwrap_or((0, 0));
    let args = ChildArgs {
        candidates: candidate_ptrs.as_ptr(),
        candidates_len: candidate_ptrs.len(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        cwd_fd: spec.cwd_fd.unwrap_or(-1),
        fds: [stdin.as_raw_fd(), spec.stdout.as_raw_fd(), spec.stderr.as_raw_fd()],
        cgroup: spec.cgroup.unwrap_or(-1),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        uid,
        gid,
        groups: spec.groups.as_ptr(),
        groups_len: spec.groups.len(),
        switch_ids: spec.ids.is_some(),
        mask: &raw const old,
        report: &raw mut report,
    };
    // The child's stack: this thread's, reused (the thread is suspended
    // while the child runs on it) and never zeroed.
    const STACK: usize = 64 * 1024;
    thread_local! {
        static CHILD_STACK: std::cell::UnsafeCell<Box<[std::mem::MaybeUninit<u8>]>> =
            std::cell::UnsafeCell::new(Box::new_uninit_slice(STACK));
    }
    // SAFETY: only this thread uses its stack, and only inside this call.
    let base = CHILD_STACK.with(|s| unsafe { (*s.get()).as_mut_ptr() as *mut u8 });
    // The stack grows down on every architecture Linux runs this on; keep
    // the top 16-byte aligned.
    let top = (base as usize + STACK) & !15;

    // SAFETY: all signals blocked so that no handler of the agent runs on
    // the child's stack before it resets them; restored right after.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &raw mut old);
        // SAFETY: `child` only reads `args` (alive on this frame, which is
        // suspended until the child execs or exits: CLONE_VFORK) and writes
        // `report`; the stack is ours and outlives the child's use of it.
        let pid = libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &args as *const ChildArgs as *mut libc::c_void,
        );
        let e = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid == -1 {
            return Err(e);
        }
        pid
    };
    if report.step != 0 {
        // The child exited with 127 without exec: reap it, report why.
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let e = io::Error::from_raw_os_error(report.errno);
        return Err(match report.step {
            STEP_EXEC => e,
            STEP_CHDIR => io::Error::new(e.kind(), format!("cannot enter the working directory: {e}")),
            STEP_IDS => io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot switch to the task user: {e}")),
            STEP_CGROUP => io::Error::new(e.kind(), format!("cannot join the attempt's cgroup: {e}")),
            _ => io::Error::new(e.kind(), format!("cannot prepare the process: {e}")),
        });
    }
    // SAFETY: pidfd_open on our unreaped child: the pid cannot be reused.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(Child { pid, pidfd })
}

/// Runs in the child, in the parent's memory: raw system calls only.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: see `spawn`; nothing here allocates, locks or unwinds.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |step: i32| fail(a.report, step);
        // Every signal at its default disposition, handled or ignored: a
        // task starts as it would under a service manager, whatever the
        // agent ignores (SIGPIPE, which the Rust runtime ignores for itself,
        // or SIGHUP and SIGQUIT from `nohup` or a shell's background job).
        let mut sa: libc::sigaction = std::mem::zeroed();
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), &mut sa) != 0 {
                continue;
            }
            if sa.sa_sigaction != libc::SIG_DFL {
                sa.sa_sigaction = libc::SIG_DFL;
                sa.sa_flags = 0;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        if libc::syscall(libc::SYS_setpgid, 0, 0) != 0 {
            fail(STEP_SETPGID);
        }
        // Into the attempt's cgroup while still the agent's identity (the
        // task's user cannot move itself).
        if a.cgroup >= 0 && libc::syscall(libc::SYS_write, a.cgroup, c"0".as_ptr(), 1usize) != 1 {
            fail(STEP_CGROUP);
        }
        if a.switch_ids
            && (libc::syscall(libc::SYS_setgroups, a.groups_len, a.groups) != 0
                || libc::syscall(libc::SYS_setresgid, a.gid, a.gid, a.gid) != 0
                || libc::syscall(libc::SYS_setresuid, a.uid, a.uid, a.uid) != 0)
        {
            fail(STEP_IDS);
        }
        // The task's process dies with the agent (SIGKILL when the thread
        // that started it, a runtime worker, ends): its attempt is requeued
        // when the agent is lost, so it must not run on meanwhile. Set after
        // the identity change, which clears it; a parent already gone is
        // caught by the check that follows. What the process started itself
        // is killed with its cgroup (see `contain`).
        libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0usize, 0usize, 0usize);
        if libc::syscall(libc::SYS_getppid) as libc::pid_t != a.parent {
            libc::syscall(libc::SYS_exit, 127);
        }
        let entered = if a.cwd_fd >= 0 { libc::syscall(libc::SYS_fchdir, a.cwd_fd) } else { libc::syscall(libc::SYS_chdir, a.cwd) };
        if entered != 0 {
            fail(STEP_CHDIR);
        }
        for (target, fd) in a.fds.iter().enumerate() {
            // dup3 clears close-on-exec on the copy; a descriptor already in
            // place only needs the flag cleared.
            let r = if *fd == target as RawFd {
                libc::syscall(libc::SYS_fcntl, *fd, libc::F_SETFD, 0)
            } else {
                libc::syscall(libc::SYS_dup3, *fd, target as RawFd, 0)
            };
            if r < 0 {
                fail(STEP_FDS);
            }
        }
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, a.mask, std::ptr::null_mut::<libc::sigset_t>(), 8usize);
        // As execvp: try each candidate; remember a permission error, and
        // stop at any error other than "not there".
        let mut errno = libc::ENOENT;
        let mut denied = false;
        for i in 0..a.candidates_len {
            libc::syscall(libc::SYS_execve, *a.candidates.add(i), a.argv, a.envp);
            let e = *libc::__errno_location();
            match e {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::EACCES => denied = true,
                _ => {
                    errno = e;
                    break;
                }
            }
        }
        if denied && errno == libc::ENOENT {
            errno = libc::EACCES;
        }
        *libc::__errno_location() = errno;
        fail(STEP_EXEC)
    }
}

/// Records why the child failed (errno as the last call left it) and exits.
unsafe fn fail(report: *mut Report, step: i32) -> ! {
    // SAFETY: `report` points into the suspended parent's frame.
    unsafe {
        (*report).errno = *libc::__errno_location();
        (*report).step = step;
        libc::syscall(libc::SYS_exit, 127);
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Waits for the child to exit without a thread: the pidfd becomes readable
/// when it does. Returns the raw wait status and resource usage.
pub async fn wait(child: Child) -> io::Result<(libc::c_int, libc::rusage)> {
    if let Some(fd) = child.pidfd {
        // SAFETY: the AsyncFd owns the descriptor, which stays open and the
        // same until it is dropped.
        let afd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
        loop {
            if let Some(r) = reap(child.pid, libc::WNOHANG)? {
                return Ok(r);
            }
            let mut guard = afd.readable().await?;
            guard.clear_ready();
        }
    }
    let pid = child.pid;
    tokio::task::spawn_blocking(move || loop {
        if let Some(r) = reap(pid, 0)? {
            return Ok(r);
        }
    })
    .await
    .map_err(io::Error::other)?
}

/// `wait4` for one child; `None` when it has not exited yet (WNOHANG).
pub fn reap(pid: i32, flags: libc::c_int) -> io::Result<Option<(libc::c_int, libc::rusage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: valid out-pointers; `pid` is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        match rc {
            0 => return Ok(None),
            -1 => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            _ => return Ok(Some((status, usage))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program args` with the standard environment; returns (exit status, stdout).
    async fn run(program: &str, args: &[&str], ids: Option<(u32, u32)>) -> io::Result<(i32, String)> {
        run_in_groups(program, args, ids, &[]).await
    }

    async fn run_in_groups(program: &str, args: &[&str], ids: Option<(u32, u32)>, groups: &[u32]) -> io::Result<(i32, String)> {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("out");
        let out = std::fs::File::create(&out_path).unwrap();
        let err = std::fs::File::create(dir.path().join("err")).unwrap();
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string()), ("X".to_string(), "a b".to_string())];
        let spec =
            Spec { program, args: &args, env: &env, cwd: dir.path(), cwd_fd: None, stdout: &out, stderr: &err, ids, groups, cgroup: None };
        let child = spawn(&spec)?;
        let pid = child.pid;
        let (status, _) = wait(child).await?;
        // Its own process group.
        assert!(libc::WIFEXITED(status), "pid {pid}: status {status}");
        Ok((libc::WEXITSTATUS(status), std::fs::read_to_string(out_path).unwrap()))
    }

    #[tokio::test]
    async fn runs_with_exactly_the_given_environment_and_directory() {
        let (code, out) = run("sh", &["-c", "echo \"$X\"; pwd; env | wc -l; exit 7"], None).await.unwrap();
        assert_eq!(code, 7);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "a b");
        assert!(lines[1].starts_with(std::env::temp_dir().to_str().unwrap()) || lines[1].contains("tmp"), "{out}");
        // PATH, X, and what sh itself adds (PWD, maybe SHLVL and _).
        assert!(lines[2].trim().parse::<u32>().unwrap() <= 5, "{out}");
    }

    #[tokio::test]
    async fn starts_in_a_new_process_group_with_default_signals_and_no_mask() {
        // What the agent ignores (as under `nohup`) is not passed on.
        // SAFETY: ignoring SIGHUP in the test process harms no other test.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
        let (code, out) =
            run("sh", &["-c", "grep -E '^(SigBlk|SigIgn)' /proc/self/status; ps -o pgid= -p $$; echo $$"], None).await.unwrap();
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        // SIGPIPE in particular is not inherited as ignored from the Rust runtime.
        let ign = out.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
        let mask = u64::from_str_radix(ign.split('\t').nth(1).unwrap().trim(), 16).unwrap();
        assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
        assert_eq!(mask & (1 << (libc::SIGHUP - 1)), 0, "{out}");
        let nums: Vec<&str> = out.lines().skip(2).map(str::trim).collect();
        if nums.len() == 2 && !nums[0].is_empty() {
            assert_eq!(nums[0], nums[1], "the shell leads its own group: {out}");
        }
    }

    #[tokio::test]
    async fn missing_programs_and_permission_errors() {
        let e = run("no-such-program-here", &[], None).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = run("/no/such/program", &[], None).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let e = run(plain.to_str().unwrap(), &[], None).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    }

    #[tokio::test]
    async fn switches_user_when_root() {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("not root: user switching is not tested");
            return;
        }
        let (code, out) = run("sh", &["-c", "id -u; id -g; id -G"], Some((65534, 65534))).await.unwrap();
        assert_eq!(code, 0);
        assert_eq!(out.lines().collect::<Vec<_>>(), vec!["65534", "65534", "65534"], "no supplementary groups kept");
        let (code, out) = run_in_groups("sh", &["-c", "id -u; id -g; id -G"], Some((65534, 65534)), &[4242]).await.unwrap();
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..2], &["65534", "65534"]);
        let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
        groups.sort();
        assert_eq!(groups, vec!["4242", "65534"], "exactly the given supplementary group: {out}");
    }
}
