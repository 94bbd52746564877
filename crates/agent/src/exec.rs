//! Running one task attempt: directories, command-line splitting (no shell),
//! environment, identity, stdout/stderr files, the wall-clock limit, and the
//! operating system's own accounting of what the process used.

use proto::{TaskLaunch, TaskOutcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The unprivileged account tasks run as when the agent runs as root and the
/// task does not ask for elevation.
pub const TASK_USER: &str = "_azbatch";

/// The PATH tasks start with.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A started attempt: its process group, for signals.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub pid: i32,
    pub started_ms: i64,
    pub started: std::time::Instant,
}

/// User and group ids of an account, if it exists.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Runs an account-management command (`useradd`, `groupadd`), retrying a
/// few times: agents starting together contend for the lock on
/// /etc/passwd and /etc/group.
fn manage_accounts(program: &str, args: &[&str], done: impl Fn() -> bool) -> bool {
    for attempt in 0..5 {
        if done() {
            return true;
        }
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
        }
        let _ = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    done()
}

/// Creates the unprivileged task account if missing (root only).
pub fn ensure_task_user() -> Option<(u32, u32)> {
    if !manage_accounts("useradd", &["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TASK_USER], || {
        lookup_user(TASK_USER).is_some()
    }) {
        tracing::error!("could not create the task user {TASK_USER}; tasks that do not ask for elevation will fail");
    }
    lookup_user(TASK_USER)
}

/// The id of a group, if it exists.
pub fn lookup_group(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

/// Where the agents of a machine claim their node groups (root only).
const NODE_GROUP_LOCKS: &str = "/run/openbatch";
/// The most agents (nodes) one machine runs as root at once.
const MAX_NODE_GROUPS: u32 = 4096;

/// The group the tasks of this node run in — one per node on a machine
/// (`_azbatch1`, `_azbatch2`, ...). Every node's tasks run as the same
/// account (`_azbatch`), so the group is what keeps one node's tasks out of
/// another's: the node root is `root:<group> 0750`, so only this node's
/// tasks can enter it, and the kernel lets a process read another's memory,
/// environment or `/proc` links only when their groups match too. The
/// number is held by a lock on a file while the agent runs, so agents
/// started together never share one; the group is created once and reused.
#[derive(Debug)]
pub struct NodeGroup {
    pub name: String,
    pub gid: u32,
    _lock: std::fs::File,
}

/// The node group of this agent, once claimed: every process it starts as
/// another user joins it as a supplementary group (a named pool account
/// needs it to reach its task directory inside the node root).
static NODE_GID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Claims a node group for this agent (root only); see [`NodeGroup`].
pub fn claim_node_group() -> Result<NodeGroup, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let dir = Path::new(NODE_GROUP_LOCKS);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!("{} must be a directory owned by root and writable by root only", dir.display()));
    }
    for n in 1..=MAX_NODE_GROUPS {
        let path = dir.join(format!("node-group-{n}.lock"));
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor we own; released when it is closed (the agent exits).
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // another agent's
        }
        let name = format!("{TASK_USER}{n}");
        if !manage_accounts("groupadd", &["--system", &name], || lookup_group(&name).is_some()) {
            return Err(format!("cannot create the group {name}"));
        }
        let gid = lookup_group(&name).ok_or_else(|| format!("cannot create the group {name}"))?;
        let _ = NODE_GID.set(gid);
        return Ok(NodeGroup { name, gid, _lock: lock });
    }
    Err(format!("all {MAX_NODE_GROUPS} node groups are taken"))
}

/// Makes the node root reachable by this node's tasks only: `root:<gid>`
/// with mode 0750 (its own tasks may enter and list it; nobody else may
/// enter it), and adds the search (x) bit for others — not read — to each
/// ancestor that lacks it (a private data directory is 0700), so that the
/// tasks can reach the root at all. Whatever else lives in those ancestors
/// must protect itself (the server's files there are 0600).
pub fn protect_root(root: &Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = root.canonicalize()?;
    std::os::unix::fs::chown(&root, Some(0), Some(gid))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750))?;
    for dir in root.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(dir) {
            let mode = m.permissions().mode();
            if m.is_dir() && mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001));
            }
        }
    }
    Ok(())
}

/// Creates a pool user account if it does not exist (root only). Admin
/// accounts join the `sudo` group when there is one.
pub fn ensure_user(u: &proto::UserAccount) {
    if lookup_user(&u.name).is_some() {
        return;
    }
    let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    let mut cmd = Command::new("useradd");
    cmd.args(["--no-create-home", "--shell", "/bin/sh"]);
    if let Some(uid) = u.uid {
        cmd.args(["--uid", &uid.to_string()]);
    }
    match u.gid {
        Some(gid) => {
            let _ = quiet(Command::new("groupadd").args(["--gid", &gid.to_string(), &u.name]));
            cmd.args(["--gid", &gid.to_string()]);
        }
        None => {
            cmd.arg("--user-group");
        }
    }
    if u.admin && std::fs::read_to_string("/etc/group").is_ok_and(|g| g.lines().any(|l| l.starts_with("sudo:"))) {
        cmd.args(["--groups", "sudo"]);
    }
    cmd.arg(&u.name);
    if !quiet(&mut cmd) {
        tracing::warn!(user = %u.name, "could not create a pool user account");
    }
}

/// An attempt's task directory and working directory, open.
#[derive(Debug, Clone)]
pub struct TaskDirs {
    pub task: nodefs::Dir,
    pub wd: nodefs::Dir,
}

/// A failure to prepare an attempt's directories, as its `failureInfo`.
fn dir_failure(path: &Path, e: &std::io::Error) -> (String, String) {
    let message = if nodefs::is_link(e) {
        format!("{}: a directory on the way is a symbolic link; the node does not follow links in task directories", path.display())
    } else {
        format!("{}: {e}", path.display())
    };
    ("ResourceDirectoryCreateFailed".to_string(), message)
}

/// Opens (creating what is missing) the task directory `rel` below the node
/// root and its `wd/`, and gives both to `owner`. Every component is opened
/// from the node root without following a link: a link on the way fails the
/// attempt; a link (or file) in place of `wd` is replaced by a directory.
/// Owners change on the handles, never on paths.
pub fn task_dirs(root: &Path, rel: &str, owner: Option<(u32, u32)>) -> Result<TaskDirs, (String, String)> {
    let task_path = root.join(rel);
    let node = nodefs::Dir::open(root).map_err(|e| dir_failure(root, &e))?;
    let task = node.make_dirs(rel, None).map_err(|e| dir_failure(&task_path, &e))?;
    if let Some((uid, gid)) = owner {
        task.chown(uid, gid).map_err(|e| dir_failure(&task_path, &e))?;
    }
    let wd = task.ensure_dir("wd", owner).map_err(|e| dir_failure(&task_path.join("wd"), &e))?;
    Ok(TaskDirs { task, wd })
}

/// The directory of a task directory that holds the certificates the task
/// may see (`AZ_BATCH_CERTIFICATES_DIR`).
pub const CERTIFICATES_DIR: &str = "certs";

/// Installs the certificates an attempt may see in `certs/` of its task
/// directory, as the service's Linux nodes do: `sha1-{thumbprint}.cer`, or
/// `sha1-{thumbprint}.pfx` and `.pfx.pw` (its password). The directory is
/// 0700 and the files 0600, owned by the task's user (`owner`; None: the
/// agent's). Whatever a task left in place of the directory or of a file
/// (a link, a FIFO, a hard link) is replaced, never followed or opened.
pub fn install_certificates(
    task: &nodefs::Dir,
    certs: &[proto::NodeCertificate],
    owner: Option<(u32, u32)>,
) -> Result<(), (String, String)> {
    use base64::Engine;
    use std::io::Write;
    let path = task.path().join(CERTIFICATES_DIR);
    let failure = |e: std::io::Error| ("CertificateInstallFailed".to_string(), format!("{}: {e}", path.display()));
    let dir = task.ensure_dir(CERTIFICATES_DIR, owner).map_err(failure)?;
    dir.chmod(0o700).map_err(failure)?;
    let write = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut f = dir.create_file(name, 0o600)?;
        if let Some((uid, gid)) = owner {
            nodefs::chown_file(&f, uid, gid)?;
        }
        nodefs::chmod_file(&f, 0o600)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    for c in certs {
        if c.thumbprint.is_empty() || !c.thumbprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(("CertificateInstallFailed".into(), format!("'{}' is not a certificate thumbprint", c.thumbprint)));
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(&c.data)
            .map_err(|e| ("CertificateInstallFailed".to_string(), format!("certificate {}: {e}", c.thumbprint)))?;
        let tp = c.thumbprint.to_ascii_lowercase();
        if c.format.eq_ignore_ascii_case("cer") {
            write(&format!("sha1-{tp}.cer"), &data).map_err(failure)?;
        } else {
            write(&format!("sha1-{tp}.pfx"), &data).map_err(failure)?;
            write(&format!("sha1-{tp}.pfx.pw"), c.password.as_deref().unwrap_or_default().as_bytes()).map_err(failure)?;
        }
    }
    Ok(())
}

/// Opens an existing task directory (no link on the way), e.g. to upload
/// output files after the process ended.
pub fn open_task_dir(root: &Path, rel: &str) -> std::io::Result<nodefs::Dir> {
    nodefs::Dir::open(root)?.open_dir(rel)
}

/// Opens `stdout.txt`/`stderr.txt` of an attempt to append to. A file
/// from an earlier attempt is kept when it is a regular file with one link
/// that belongs to the attempt's user; anything else in its place — a link
/// (to /etc/shadow, say), a hard link, a FIFO — is replaced by a new file,
/// never opened. The file is given to `owner` on its descriptor.
fn output_file(task: &nodefs::Dir, name: &str, owner: Option<(u32, u32)>) -> Result<std::fs::File, (String, String)> {
    let uid = owner.map(|o| o.0).unwrap_or_else(|| unsafe { libc::geteuid() });
    let failure = |e: std::io::Error| ("ResourceFileCreateFailed".to_string(), format!("{}: {e}", task.path().join(name).display()));
    let f = task.append_file(name, 0o644, |m| m.nlink == 1 && m.uid == uid).map_err(failure)?;
    if let Some((uid, gid)) = owner {
        nodefs::chown_file(&f, uid, gid).map_err(failure)?;
    }
    Ok(f)
}

/// A started attempt's process, to wait for.
#[derive(Debug)]
pub struct Started {
    pub running: Running,
    pub child: crate::spawn::Child,
}

/// Prepares the attempt's directory and starts its process in its own
/// process group. Errors are task failures (`CommandProgramNotFound`, ...).
/// The container engine's name for an attempt's container.
pub fn container_name(attempt: u64) -> String {
    format!("openbatch-{attempt}")
}

/// Where the engine writes the id of an attempt's container: in the
/// agent's own `volatile/` directory, which tasks cannot write (the engine
/// client opens the path as root).
pub fn container_id_file(root: &Path, l: &TaskLaunch) -> PathBuf {
    root.join("volatile").join(format!("container-{}.id", l.attempt))
}

/// The engine's `run` arguments for a container task: its mounts (the node
/// root, or the chosen directories, at the same paths inside), working
/// directory, the task's variables by name (values come from the engine
/// client's environment), the user's run options, image and command.
fn container_args(root: &Path, l: &TaskLaunch, c: &proto::ContainerSpec, argv: &[String]) -> Result<Vec<String>, (String, String)> {
    let wd = root.join(&l.task_dir).join("wd");
    let mut a: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), container_name(l.attempt)];
    a.push("--cidfile".into());
    a.push(container_id_file(root, l).to_string_lossy().into_owned());
    a.extend(["--network".into(), "host".into()]);
    let mounts: Vec<(PathBuf, bool)> = match &c.mounts {
        None => vec![(root.to_path_buf(), false)],
        Some(list) => list.iter().map(|(rel, ro)| (root.join(rel), *ro)).collect(),
    };
    for (path, read_only) in mounts {
        let p = path.to_string_lossy();
        a.push("-v".into());
        a.push(if read_only { format!("{p}:{p}:ro") } else { format!("{p}:{p}") });
    }
    if c.task_working_dir {
        a.push("-w".into());
        a.push(wd.to_string_lossy().into_owned());
    }
    for k in l.env.keys() {
        a.push("-e".into());
        a.push(k.clone());
    }
    if let Some(opts) = &c.run_options {
        let opts = shell_words::split(opts)
            .map_err(|e| ("ContainerInvalidSettings".to_string(), format!("containerRunOptions cannot be parsed: {e}")))?;
        a.extend(opts);
    }
    a.push(c.image.clone());
    a.extend(argv.iter().cloned());
    Ok(a)
}

/// How a node runs its container tasks.
pub enum Engine<'a> {
    /// The engine's client on the node (`docker`, `podman`).
    Client(&'a str),
    /// The server's engine gateway (a provider's node with no engine of its
    /// own; see `gateway`).
    Gateway(&'a crate::gateway::Access),
}

/// The attempt's process for a container task through the gateway: this
/// binary's `engine-run` with the request it sends.
fn gateway_argv(
    root: &Path,
    l: &TaskLaunch,
    c: &proto::ContainerSpec,
    argv: Vec<String>,
    g: &crate::gateway::Access,
) -> Result<Vec<String>, (String, String)> {
    if let Some(mounts) = &c.mounts {
        for (rel, _) in mounts {
            crate::gateway::check_mount(root, rel)?;
        }
    }
    let wd = root.join(&l.task_dir).join("wd");
    let run = proto::engine::EngineRun {
        node: g.node.clone(),
        attempt: l.attempt,
        image: c.image.clone(),
        command: argv,
        env: l.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        workdir: c.task_working_dir.then(|| wd.to_string_lossy().into_owned()),
        mounts: c.mounts.clone(),
        run_options: c.run_options.clone(),
    };
    let spec = crate::gateway::write_spec(root, g, run)?;
    let me = std::env::current_exe().map_err(|e| ("ContainerMiscError".to_string(), format!("cannot find the agent's program: {e}")))?;
    Ok(vec![
        me.to_string_lossy().into_owned(),
        "engine-run".into(),
        spec.to_string_lossy().into_owned(),
        "--cidfile".into(),
        container_id_file(root, l).to_string_lossy().into_owned(),
    ])
}

pub fn start(
    root: &Path,
    l: &TaskLaunch,
    run_as: Option<(u32, u32)>,
    engine: &Engine,
    cgroup: Option<std::os::fd::RawFd>,
    certificates: &[proto::NodeCertificate],
) -> Result<Started, (String, String)> {
    let dirs = task_dirs(root, &l.task_dir, run_as)?;
    if !certificates.is_empty() {
        install_certificates(&dirs.task, certificates, run_as)?;
    }
    let wd = dirs.wd.path().to_path_buf();
    let (stdout, stderr) = (output_file(&dirs.task, "stdout.txt", run_as)?, output_file(&dirs.task, "stderr.txt", run_as)?);
    let argv = shell_words::split(&l.command_line)
        .map_err(|e| ("CommandLaunchFailed".to_string(), format!("the command line cannot be parsed: {e}")))?;
    if argv.is_empty() {
        return Err(("CommandLaunchFailed".into(), "the command line is empty".into()));
    }
    // A container task runs the engine's client (as the agent: it needs the
    // engine's socket), which runs the command line in the container.
    let (argv, run_as) = match &l.container {
        Some(c) => {
            let _ = std::fs::remove_file(container_id_file(root, l));
            match engine {
                Engine::Client(program) => {
                    let mut full = vec![program.to_string()];
                    full.extend(container_args(root, l, c, &argv)?);
                    (full, None)
                }
                Engine::Gateway(g) => (gateway_argv(root, l, c, argv, g)?, None),
            }
        }
        None => (argv, run_as),
    };
    let (program, args) = argv.split_first().expect("not empty");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    env.insert("HOME".into(), wd.to_string_lossy().into_owned());
    env.extend(l.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if l.container.is_some() && matches!(engine, Engine::Client(_)) {
        // The engine client finds its daemon as the agent does.
        for k in ["DOCKER_HOST", "CONTAINER_HOST", "XDG_RUNTIME_DIR"] {
            if let Ok(v) = std::env::var(k) {
                env.entry(k.into()).or_insert(v);
            }
        }
    }
    let env: Vec<(String, String)> = env.into_iter().collect();
    // A process started as another user joins the node's group (see NodeGroup).
    let groups: &[u32] = NODE_GID.get().map(std::slice::from_ref).unwrap_or_default();
    use std::os::fd::{AsFd, AsRawFd};
    let spec = crate::spawn::Spec {
        program,
        args,
        env: &env,
        cwd: &wd,
        cwd_fd: Some(dirs.wd.as_fd().as_raw_fd()),
        stdout: &stdout,
        stderr: &stderr,
        ids: run_as,
        groups,
        cgroup,
    };
    let started_ms = now_ms();
    match crate::spawn::spawn(&spec) {
        Ok(child) => Ok(Started { running: Running { pid: child.pid, started_ms, started: std::time::Instant::now() }, child }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && l.container.is_some() => {
            Err(("ContainerMiscError".into(), format!("the container engine '{program}' is not installed on the node")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(("CommandProgramNotFound".into(), format!("The specified command program is not found: {program}")))
        }
        Err(e) => Err(("CommandLaunchFailed".into(), format!("{program}: {e}"))),
    }
}

/// Waits until the process exits; returns its outcome with the operating
/// system's accounting of what it used.
pub async fn wait(attempt: u64, s: Started) -> TaskOutcome {
    let r = s.running;
    let waited = crate::spawn::wait(s.child).await;
    let end = now_ms();
    let (exit_code, failure, usage) = match waited {
        Err(e) => (None, Some(("Unknown".to_string(), format!("lost track of the task process: {e}"))), None),
        Ok((status, usage)) if libc::WIFEXITED(status) => (Some(libc::WEXITSTATUS(status)), None, Some(usage)),
        // As a shell reports it: 128 + signal.
        Ok((status, usage)) if libc::WIFSIGNALED(status) => (Some(128 + libc::WTERMSIG(status)), None, Some(usage)),
        Ok((_, usage)) => (None, Some(("Unknown".to_string(), "the task process ended abnormally".to_string())), Some(usage)),
    };
    // SAFETY: an all-zero rusage is a valid value.
    let usage = usage.unwrap_or_else(|| unsafe { std::mem::zeroed() });
    let tv_us = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64;
    TaskOutcome {
        attempt,
        exit_code,
        failure_code: failure.as_ref().map(|f| f.0.clone()),
        failure_message: failure.map(|f| f.1),
        failure_category: None,
        pre_processing_error: false,
        file_upload_error: false,
        container_id: None,
        start_time_ms: r.started_ms,
        end_time_ms: end,
        wall_us: Some(r.started.elapsed().as_micros() as u64),
        user_cpu_us: tv_us(usage.ru_utime),
        kernel_cpu_us: tv_us(usage.ru_stime),
        read_bytes: usage.ru_inblock.max(0) as u64 * 512,
        write_bytes: usage.ru_oublock.max(0) as u64 * 512,
        read_ops: usage.ru_inblock.max(0) as u64,
        write_ops: usage.ru_oublock.max(0) as u64,
    }
}

/// SIGTERM to the attempt's process group (and every process in its cgroup,
/// when it has one), then SIGKILL to all of them after `grace`.
pub async fn stop(pid: i32, cell: Option<std::sync::Arc<crate::contain::Cell>>, grace: Duration) {
    // SAFETY: signalling a process group we created.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    if let Some(c) = &cell {
        c.signal_all(libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        // Signal 0 probes whether any member of the group is left.
        let group = unsafe { libc::kill(-pid, 0) } == 0;
        if !group && !cell.as_ref().is_some_and(|c| c.populated()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    if let Some(c) = &cell {
        c.kill_all();
    }
}

/// An outcome for an attempt that never started.
pub fn not_started(attempt: u64, code: String, message: String) -> TaskOutcome {
    let t = now_ms();
    TaskOutcome {
        attempt,
        exit_code: None,
        failure_code: Some(code),
        failure_message: Some(message),
        failure_category: None,
        pre_processing_error: false,
        file_upload_error: false,
        container_id: None,
        start_time_ms: t,
        end_time_ms: t,
        wall_us: None,
        user_cpu_us: 0,
        kernel_cpu_us: 0,
        read_bytes: 0,
        write_bytes: 0,
        read_ops: 0,
        write_ops: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn launch(cmd: &str) -> TaskLaunch {
        let mut env = BTreeMap::new();
        env.insert("AZ_BATCH_TASK_ID".into(), "t1".into());
        TaskLaunch {
            attempt: 1,
            job_id: "j".into(),
            task_id: "t1".into(),
            task_dir: "workitems/j/job-1/t1".into(),
            command_line: cmd.into(),
            env,
            max_wall_clock_ms: None,
            elevated: true,
            user_name: None,
            is_start_task: false,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn runs_without_a_shell_and_captures_output() {
        let root = tempfile::tempdir().unwrap();
        let r = start(
            root.path(),
            &launch("/bin/sh -c 'echo $AZ_BATCH_TASK_ID; pwd; echo err >&2; exit 3'"),
            None,
            &crate::exec::Engine::Client("docker"),
            None,
            &[],
        )
        .unwrap();
        let o = wait(1, r).await;
        assert_eq!(o.exit_code, Some(3));
        let dir = root.path().join("workitems/j/job-1/t1");
        let out = std::fs::read_to_string(dir.join("stdout.txt")).unwrap();
        assert!(out.starts_with("t1\n"), "{out}");
        assert!(out.trim_end().ends_with("/wd"), "{out}");
        assert_eq!(std::fs::read_to_string(dir.join("stderr.txt")).unwrap(), "err\n");
        // Words are not expanded by a shell.
        let o = wait(2, start(root.path(), &launch("echo '$HOME' a*b"), None, &crate::exec::Engine::Client("docker"), None, &[]).unwrap())
            .await;
        assert_eq!(o.exit_code, Some(0));
        let out = std::fs::read_to_string(dir.join("stdout.txt")).unwrap();
        assert!(out.ends_with("$HOME a*b\n"), "{out}");
    }

    #[test]
    fn missing_program() {
        let root = tempfile::tempdir().unwrap();
        let e = start(root.path(), &launch("/no/such/program x"), None, &crate::exec::Engine::Client("docker"), None, &[]).unwrap_err();
        assert_eq!(e.0, "CommandProgramNotFound");
    }

    #[tokio::test]
    async fn stop_kills_the_process_group() {
        let root = tempfile::tempdir().unwrap();
        let r = start(root.path(), &launch("/bin/sh -c 'sleep 30 & sleep 30'"), None, &crate::exec::Engine::Client("docker"), None, &[])
            .unwrap();
        let t = std::time::Instant::now();
        stop(r.running.pid, None, Duration::from_millis(200)).await;
        let o = wait(1, r).await;
        assert_eq!(o.exit_code, Some(128 + libc::SIGTERM));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn node_groups_and_root_permissions() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: node groups are not tested");
            return;
        }
        // Two agents never hold the same group.
        let (a, b) = (claim_node_group().unwrap(), claim_node_group().unwrap());
        assert_ne!(a.gid, b.gid);
        assert_ne!(a.name, b.name);
        assert_eq!(lookup_group(&a.name), Some(a.gid));
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let root = dir.path().join("nodes").join("n1");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(dir.path().join("nodes"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        protect_root(&root, a.gid).unwrap();
        let m = std::fs::metadata(&root).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, a.gid, 0o750));
        for d in [dir.path().to_path_buf(), dir.path().join("nodes")] {
            let mode = std::fs::metadata(&d).unwrap().mode();
            assert_eq!(mode & 0o005, 0o001, "{}: searchable, not readable, by others: {mode:o}", d.display());
        }
    }

    /// The task account's ids when the test runs as root (the agent's
    /// situation in production and CI); None otherwise.
    fn task_ids() -> Option<(u32, u32)> {
        if unsafe { libc::geteuid() } != 0 {
            println!("not root: the task runs as the test's own user, ownership is not checked");
            return None;
        }
        Some(ensure_task_user().expect("the task account can be created as root"))
    }

    /// A root-owned file standing in for /etc/shadow, and its metadata.
    fn victim(dir: &Path) -> (PathBuf, std::fs::Metadata) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("shadow");
        std::fs::write(&p, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        (p, m)
    }

    fn assert_untouched(p: &Path, before: &std::fs::Metadata) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "root:$6$secret:19000:0:99999:7:::\n", "{} was written", p.display());
        assert_eq!(
            (m.uid(), m.gid(), m.mode(), m.nlink()),
            (before.uid(), before.gid(), before.mode(), before.nlink()),
            "{} changed",
            p.display()
        );
    }

    #[tokio::test]
    async fn stdout_and_stderr_replaced_by_links_are_not_followed() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let (shadow, before) = victim(elsewhere.path());
        let ids = task_ids();
        let l = |cmd: &str| TaskLaunch { elevated: ids.is_none(), ..launch(cmd) };
        assert_eq!(
            wait(1, start(root.path(), &l("/bin/sh -c 'echo one'"), ids, &crate::exec::Engine::Client("docker"), None, &[]).unwrap())
                .await
                .exit_code,
            Some(0)
        );
        let dir = root.path().join("workitems/j/job-1/t1");
        // The task swaps its output files: a symbolic link, and a hard link
        // (which protected_hardlinks would stop an unprivileged task from
        // making, but not every node has it).
        std::fs::remove_file(dir.join("stdout.txt")).unwrap();
        std::os::unix::fs::symlink(&shadow, dir.join("stdout.txt")).unwrap();
        std::fs::remove_file(dir.join("stderr.txt")).unwrap();
        std::fs::hard_link(&shadow, dir.join("stderr.txt")).unwrap();
        // The retry: output goes to fresh files, the victim is untouched.
        let o = wait(
            2,
            start(root.path(), &l("/bin/sh -c 'echo two; echo err >&2'"), ids, &crate::exec::Engine::Client("docker"), None, &[]).unwrap(),
        )
        .await;
        assert_eq!(o.exit_code, Some(0));
        // Same content, owner, mode, and one link again: the hard link was removed, not reused.
        assert_untouched(&shadow, &before);
        for (name, text) in [("stdout.txt", "two\n"), ("stderr.txt", "err\n")] {
            let m = std::fs::symlink_metadata(dir.join(name)).unwrap();
            assert!(m.file_type().is_file() && m.nlink() == 1, "{name}");
            assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), text);
            if let Some((uid, _)) = ids {
                assert_eq!(m.uid(), uid, "{name} belongs to the task user");
            }
        }
        // A FIFO in place of stdout.txt does not stall the agent.
        std::fs::remove_file(dir.join("stdout.txt")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("stdout.txt").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (r, launch3) = (root.path().to_path_buf(), l("/bin/sh -c 'echo three'"));
        std::thread::spawn(move || {
            let _ = tx.send(start(&r, &launch3, ids, &crate::exec::Engine::Client("docker"), None, &[]).map(|s| s.child));
            // The child dies with the thread that started it (PR_SET_PDEATHSIG).
            let _ = done_rx.recv();
        });
        let child = rx.recv_timeout(Duration::from_secs(10)).expect("start returned").unwrap();
        let _ = crate::spawn::wait(child).await;
        drop(done_tx);
        assert_eq!(std::fs::read_to_string(dir.join("stdout.txt")).unwrap(), "three\n");
    }

    /// Certificates land in the task's `certs/` (0700) as files only the
    /// task's user reads (0600), the task reads them through
    /// `AZ_BATCH_CERTIFICATES_DIR`, and links a task leaves in their place
    /// are replaced, not followed.
    #[tokio::test]
    async fn certificates_are_installed_for_the_task_user_only() {
        use base64::Engine;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let (shadow, before) = victim(elsewhere.path());
        let ids = task_ids();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let certs = vec![
            proto::NodeCertificate {
                thumbprint: "AB01".into(),
                format: "cer".into(),
                data: b64(b"\x30der bytes"),
                password: None,
                start_task: true,
                tasks: true,
            },
            proto::NodeCertificate {
                thumbprint: "cd02".into(),
                format: "pfx".into(),
                data: b64(b"pkcs12"),
                password: Some("s3cret".into()),
                start_task: true,
                tasks: true,
            },
        ];
        let dir = root.path().join("workitems/j/job-1/t1");
        let mut l = TaskLaunch { elevated: ids.is_none(), ..launch("/bin/sh -c 'cat $AZ_BATCH_CERTIFICATES_DIR/sha1-cd02.pfx.pw'") };
        l.env.insert("AZ_BATCH_CERTIFICATES_DIR".into(), dir.join("certs").to_string_lossy().into_owned());
        assert_eq!(
            wait(1, start(root.path(), &l, ids, &crate::exec::Engine::Client("docker"), None, &certs).unwrap()).await.exit_code,
            Some(0)
        );
        assert_eq!(std::fs::read_to_string(dir.join("stdout.txt")).unwrap(), "s3cret");
        let check = || {
            let d = std::fs::symlink_metadata(dir.join("certs")).unwrap();
            assert!(d.is_dir() && d.permissions().mode() & 0o777 == 0o700, "{:o}", d.permissions().mode());
            for (name, bytes) in [("sha1-ab01.cer", &b"\x30der bytes"[..]), ("sha1-cd02.pfx", b"pkcs12"), ("sha1-cd02.pfx.pw", b"s3cret")] {
                let m = std::fs::symlink_metadata(dir.join("certs").join(name)).unwrap();
                assert!(m.is_file() && m.nlink() == 1, "{name}");
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{name}");
                assert_eq!(std::fs::read(dir.join("certs").join(name)).unwrap(), bytes, "{name}");
                if let Some((uid, gid)) = ids {
                    assert_eq!((m.uid(), m.gid(), d.uid()), (uid, gid, uid), "{name} belongs to the task user");
                }
            }
        };
        check();
        // The task swaps a certificate for a link to a root file and the
        // password file for a hard link; the retry writes fresh files.
        std::fs::remove_file(dir.join("certs/sha1-ab01.cer")).unwrap();
        std::os::unix::fs::symlink(&shadow, dir.join("certs/sha1-ab01.cer")).unwrap();
        std::fs::remove_file(dir.join("certs/sha1-cd02.pfx.pw")).unwrap();
        std::fs::hard_link(&shadow, dir.join("certs/sha1-cd02.pfx.pw")).unwrap();
        assert_eq!(
            wait(2, start(root.path(), &l, ids, &crate::exec::Engine::Client("docker"), None, &certs).unwrap()).await.exit_code,
            Some(0)
        );
        assert_untouched(&shadow, &before);
        check();
        // The whole directory swapped for a link: replaced too.
        std::fs::remove_dir_all(dir.join("certs")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.join("certs")).unwrap();
        assert_eq!(
            wait(3, start(root.path(), &l, ids, &crate::exec::Engine::Client("docker"), None, &certs).unwrap()).await.exit_code,
            Some(0)
        );
        assert_untouched(&shadow, &before);
        assert!(!elsewhere.path().join("sha1-ab01.cer").exists(), "nothing written through the link");
        check();
        // A thumbprint that is not hex is refused (it names the files).
        let bad = vec![proto::NodeCertificate { thumbprint: "../x".into(), ..certs[0].clone() }];
        assert_eq!(
            start(root.path(), &l, ids, &crate::exec::Engine::Client("docker"), None, &bad).unwrap_err().0,
            "CertificateInstallFailed"
        );
    }

    #[tokio::test]
    async fn a_working_directory_replaced_by_a_link_is_not_followed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        // A root-owned private directory standing in for /root.
        let private = elsewhere.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(private.join("keep"), "k").unwrap();
        let before = std::fs::metadata(&private).unwrap();
        let ids = task_ids();
        let l = |cmd: &str| TaskLaunch { elevated: ids.is_none(), ..launch(cmd) };
        assert_eq!(
            wait(1, start(root.path(), &l("/bin/true"), ids, &crate::exec::Engine::Client("docker"), None, &[]).unwrap()).await.exit_code,
            Some(0)
        );
        let dir = root.path().join("workitems/j/job-1/t1");
        std::fs::remove_dir(dir.join("wd")).unwrap();
        std::os::unix::fs::symlink(&private, dir.join("wd")).unwrap();
        let o = wait(
            2,
            start(root.path(), &l("/bin/sh -c 'pwd; echo x > made'"), ids, &crate::exec::Engine::Client("docker"), None, &[]).unwrap(),
        )
        .await;
        assert_eq!(o.exit_code, Some(0));
        let after = std::fs::metadata(&private).unwrap();
        assert_eq!((after.uid(), after.mode()), (before.uid(), before.mode()), "the linked directory was not given away");
        assert!(!private.join("made").exists(), "the task did not run in the linked directory");
        let wd = std::fs::symlink_metadata(dir.join("wd")).unwrap();
        assert!(wd.is_dir(), "a fresh working directory replaced the link");
        assert!(dir.join("wd/made").is_file());
        assert!(std::fs::read_to_string(dir.join("stdout.txt")).unwrap().trim_end().ends_with("t1/wd"));
        if let Some((uid, _)) = ids {
            assert_eq!(wd.uid(), uid);
        }
    }

    #[tokio::test]
    async fn task_and_job_directories_replaced_by_links_fail_the_attempt() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let before = std::fs::metadata(&target).unwrap();
        let ids = task_ids();
        let l = |cmd: &str| TaskLaunch { elevated: ids.is_none(), ..launch(cmd) };
        for link in ["workitems/j/job-1/t1", "workitems/j/job-1", "workitems/j"] {
            let _ = std::fs::remove_dir_all(root.path().join("workitems"));
            let at = root.path().join(link);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&target, &at).unwrap();
            let e = start(root.path(), &l("/bin/true"), ids, &crate::exec::Engine::Client("docker"), None, &[]).unwrap_err();
            assert_eq!(e.0, "ResourceDirectoryCreateFailed", "{link}: {e:?}");
            assert!(e.1.contains("symbolic link"), "{e:?}");
            assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{link}: nothing made through the link");
            let after = std::fs::metadata(&target).unwrap();
            assert_eq!((after.uid(), after.mode()), (before.uid(), before.mode()), "{link}");
            // Resource downloads prepare the same directories the same way.
            assert_eq!(task_dirs(root.path(), "workitems/j/job-1/t1", ids).unwrap_err().0, "ResourceDirectoryCreateFailed");
        }
    }
}
