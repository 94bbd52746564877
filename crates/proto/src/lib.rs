//! The protocol between the openbatch server and its node agents.
//!
//! Agents dial out to the server (so nodes behind NAT can join) and open a
//! WebSocket at [`CONNECT_PATH`], authenticated with the join token the server
//! issued (`Authorization: Bearer <token>`). Each WebSocket text frame is one
//! JSON [`ToAgent`] or [`ToServer`] message, or a JSON array of them (a side
//! sends what has queued up in one frame; see [`encode_frame`]). The first message is the agent's
//! [`ToServer::Hello`], which names the protocol [`VERSION`]; the server
//! answers [`ToAgent::Welcome`] or closes the connection.
//!
//! Every task attempt carries an `attempt` id chosen by the server. The agent
//! echoes it in every report; the server discards reports whose attempt is
//! not the task's current one. On reconnect the agent lists the attempts it
//! still runs, and the server tells it to kill the ones it no longer assigns.
//!
//! The agent runs at most [`ToAgent::Welcome`]'s `task_slots` at once (each
//! launch says how many slots it takes). The server may hand a busy node a few
//! launches more than fit — the node's queue — so a slot that frees is filled
//! at once, without waiting for the server to hear of it; the agent starts
//! them by priority, then in the order they came (none before `Welcome`),
//! and a `Kill` of one still waiting or preparing drops it with a
//! not-started `Finished` report.
//!
//! These types are openbatch's own and say nothing about Azure's JSON.

pub mod engine;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Protocol version spoken by this build (3: acknowledged outcomes; 4: file
/// contents larger than [`INLINE_READ`] travel on a data connection, see
/// [`FILE_STREAM_PATH`]; 5: node requests, [`ToAgent::Node`]).
pub const VERSION: u32 = 5;
/// Where agents connect.
pub const CONNECT_PATH: &str = "/_openbatch/agent/v1/connect";
/// Where an agent sends the bytes of a file read too large to inline:
/// `POST {FILE_STREAM_PATH}/{stream key}` with its join token
/// (`Authorization: Bearer`), `Content-Length` the reply's `length`, and the
/// bytes as the body. The server pipes the body to the client that asked,
/// as fast as that client reads (so neither side holds more than a few
/// buffers), and answers once the body is consumed or the client is gone.
pub const FILE_STREAM_PATH: &str = "/_openbatch/agent/v1/files";
/// The largest read answered inline (base64 in the [`FileReply`]).
pub const INLINE_READ: u64 = 256 * 1024;

/// Server → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// The connection is accepted; the node's identity in the pool, and the
    /// pool's user accounts, which the agent creates on the node.
    Welcome {
        node_id: String,
        pool_id: String,
        heartbeat_ms: u64,
        #[serde(default)]
        users: Vec<UserAccount>,
        /// Container images to have on the node (the pool's
        /// `containerConfiguration.containerImageNames`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        container_images: Vec<String>,
        /// Registries to log in to first (`containerConfiguration.containerRegistries`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        container_registries: Vec<RegistryLogin>,
        /// The node's `taskSlotsPerNode`: the slots of the attempts running
        /// at once never exceed it (0: no limit).
        #[serde(default)]
        task_slots: u32,
        /// The certificates the pool references (`certificateReferences`),
        /// as they were when the node joined: the agent installs them in the
        /// `certs` directory of each task that may see them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        certificates: Vec<NodeCertificate>,
    },
    /// Start one attempt of a task, as soon as its slots are free.
    Start(Box<TaskLaunch>),
    /// Stop an attempt: SIGTERM to its process group, then SIGKILL after
    /// `grace_ms`. An attempt still waiting for slots is dropped.
    Kill { attempt: u64, grace_ms: u64 },
    /// Read part of a file or list a directory under the node root.
    File(FileRequest),
    /// Stop every attempt and remove task data (reimage) or not (reboot).
    Reset { wipe: bool },
    /// The node leaves the pool: stop everything and exit.
    Shutdown,
    /// These attempts' outcomes are committed: the agent may forget them
    /// (until then it keeps them and sends them again with its next `Hello`).
    Ack { attempts: Vec<u64> },
    /// An operation on the node itself (its user accounts, its logs),
    /// answered with a [`ToServer::NodeReply`] of the same id.
    Node(NodeRequest),
}

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToServer {
    Hello(Hello),
    /// The attempt is fetching what it needs (resource files, packages,
    /// its container image) before its process starts.
    Preparing {
        attempt: u64,
    },
    /// The attempt's process is running.
    Started {
        attempt: u64,
    },
    /// The attempt ended (or could not start).
    Finished(Box<TaskOutcome>),
    /// The agent is alive; with what it measured of the node (absent from
    /// agents before this field, and when nothing could be read).
    Heartbeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<NodeUsage>,
    },
    FileReply(FileReply),
    /// The answer to a [`ToAgent::Node`].
    NodeReply(NodeReply),
    /// The node finished a `Reset`: every attempt is stopped (and, for a
    /// reimage, the task data wiped); it takes tasks again.
    ResetDone,
}

/// What an agent measured of its node, from the operating system, at one
/// instant: counters are cumulative since the machine booted (the server
/// takes differences between its samples), the rest are current values.
/// A value that could not be read is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// CPU time, in clock ticks (`/proc/stat`): not idle, and in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_total: Option<u64>,
    /// Memory in use, in bytes (`MemTotal - MemAvailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Bytes in use on the file system of the node root (`statvfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Disk I/O of the machine's disks (`/proc/diskstats`): bytes and
    /// operations completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_read_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_write_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_read_ops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_write_ops: Option<u64>,
    /// Bytes received and sent on every interface but loopback (`/proc/net/dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_in_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_out_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub pool_id: String,
    /// A stable id the agent keeps in its root directory; `None` on first start.
    pub node_id: Option<String>,
    pub hostname: String,
    pub ip_address: String,
    pub agent_version: String,
    /// Attempts still running on the node.
    pub running: Vec<u64>,
    /// The node root directory (tasks' `AZ_BATCH_NODE_ROOT_DIR`).
    pub root_dir: String,
    pub is_root: bool,
    /// New each time the agent process starts: a different value means the
    /// node (re)booted, and its start task must run again.
    pub boot_id: String,
    /// Outcomes the server has not acknowledged yet (see `ToAgent::Ack`),
    /// this agent's and those an earlier agent on the same root left.
    #[serde(default)]
    pub finished: Vec<Finished>,
    /// Which task each running attempt of `running` belongs to, for the
    /// attempts the server may adopt (see `TaskLaunch::adoptable`).
    #[serde(default)]
    pub held: Vec<Held>,
    /// Processes of an earlier agent on the same root that were still
    /// running and were killed before this one joined.
    #[serde(default)]
    pub leftovers: u32,
    /// The port SSH listens on at `ip_address` (the node's remote login
    /// settings); None from an older agent: 22.
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// The machine's CPU cores (pool usage metrics count core-hours); None
    /// from an older agent: 1.
    #[serde(default)]
    pub cores: Option<u32>,
}

/// The task an attempt runs, as its agent knows it: enough for a server
/// that lost the attempt's assignment (killed before it committed) to
/// adopt the attempt instead of running the task again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptOf {
    pub job_id: String,
    pub task_id: String,
    pub slots: u32,
}

/// A running attempt and its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub attempt: u64,
    pub task: AttemptOf,
}

/// An outcome kept until the server acknowledges it, with its task when
/// the attempt is adoptable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub outcome: TaskOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<AttemptOf>,
}

/// A certificate to install on a node, with its secret parts (never
/// printed by `Debug`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// The SHA-1 thumbprint, lower-case hex: the files are
    /// `sha1-{thumbprint}.cer`, or `.pfx` with `.pfx.pw` holding the password.
    pub thumbprint: String,
    /// `cer` (DER) or `pfx` (PKCS #12).
    pub format: String,
    /// The certificate's bytes, base64.
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Visible to the start task (`visibility` has `starttask`, or is empty).
    pub start_task: bool,
    /// Visible to the tasks (`visibility` has `task`, or is empty).
    pub tasks: bool,
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("thumbprint", &self.thumbprint)
            .field("format", &self.format)
            .field("start_task", &self.start_task)
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

/// A pool user account (`userAccounts`) to create on the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAccount {
    pub name: String,
    pub admin: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Everything an agent needs to run one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskLaunch {
    pub attempt: u64,
    pub job_id: String,
    pub task_id: String,
    /// Relative to the node root, e.g. `workitems/job1/job-1/task1`.
    pub task_dir: String,
    pub command_line: String,
    /// Batch-defined and user variables, already merged.
    pub env: BTreeMap<String, String>,
    /// Kill the attempt after this long (None: no limit).
    pub max_wall_clock_ms: Option<u64>,
    /// Run elevated (as the agent's user) instead of as the unprivileged task user.
    pub elevated: bool,
    /// Run as this named user account, when set.
    pub user_name: Option<String>,
    /// Start-task attempts run in `startup/` and are not job tasks.
    pub is_start_task: bool,
    /// Files to fetch into the working directory before the command runs
    /// (the attempt is `preparing` meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFileSpec>,
    /// A multi-instance task's `commonResourceFiles`: fetched into the task
    /// directory (the working directory's parent) before the coordination
    /// command runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_resource_files: Vec<ResourceFileSpec>,
    /// Files to upload after the process exits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<OutputFileSpec>,
    /// Application packages to install on the node (once, shared) before
    /// the attempt runs; their variables are already in `env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageSpec>,
    /// Why the task's package references cannot be satisfied: the attempt
    /// fails with `ApplicationPackageError` without running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_error: Option<String>,
    /// Run the command line in a container (`containerSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// The node slots the attempt occupies while it runs; 0 for work outside
    /// the task slots (start task, job preparation and release), which
    /// starts at once.
    #[serde(default)]
    pub slots: u32,
    /// The job's priority: of the launches waiting for slots, the node
    /// starts the highest-priority one first (in the order they came).
    #[serde(default)]
    pub priority: i32,
    /// An ordinary task attempt (not a start task, job preparation or
    /// release, or a multi-instance instance): a server that lost its
    /// assignment may adopt it from the agent's report.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adoptable: bool,
    /// Processes the command leaves behind keep running after it exits
    /// (a start task's daemons, a coordination command's services), until
    /// the node resets or stops; otherwise they die with the attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
}

/// A task's container: the agent runs its command line with the node's
/// container engine (`docker run`, or podman's equivalent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub image: String,
    /// `containerRunOptions`, appended to the engine's `run` (word-split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_options: Option<String>,
    /// Start in the task's working directory (else the image's own).
    pub task_working_dir: bool,
    /// Directories relative to the node root mounted at the same path
    /// inside, with read-only flags; None: the whole node root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<(String, bool)>>,
    /// Log in to this registry before fetching the image (`registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryLogin>,
}

/// Credentials of a private container registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLogin {
    /// Empty: the engine's default registry.
    pub server: String,
    pub username: String,
    pub password: String,
}

/// Where the agent fetches an application package archive from the server
/// (with its agent token): `{server}{PACKAGES_PATH}/{application_id}/{version}`.
pub const PACKAGES_PATH: &str = "/_openbatch/agent/v1/applications";

/// One application package version to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSpec {
    pub application_id: String,
    pub version: String,
    /// The directory under the node's `applications/` it is unpacked to.
    pub dir: String,
    /// The `AZ_BATCH_APP_PACKAGE_*` variables that name its directory.
    pub env_names: Vec<String>,
}

/// One `resourceFiles` entry, its source already resolved to a URL: an
/// `http(s)://` blob or file URL, a container URL (with its SAS), or a
/// `file://` path on a filesystem the node shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResourceFileSpec {
    /// One file: `httpUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// Every blob of a container (or those under `blob_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_prefix: Option<String>,
    /// Relative to the working directory: the file (httpUrl) or the
    /// directory the blobs go under (container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// Octal permission bits, e.g. `0755`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
}

/// One `outputFiles` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OutputFileSpec {
    /// Relative to the working directory, or absolute; `$VAR`s are expanded
    /// from the task's environment.
    pub file_pattern: String,
    /// A container URL with its SAS, or a `file://` directory.
    pub container_url: String,
    /// The blob name (a single file) or virtual directory (a pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Headers sent with each upload (`uploadHeaders`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upload_headers: Vec<(String, String)>,
    /// `tasksuccess`, `taskfailure` or `taskcompletion`.
    pub upload_condition: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub attempt: u64,
    /// Present when the process ran to an exit.
    pub exit_code: Option<i32>,
    /// Why it did not run or was stopped: `CommandProgramNotFound`,
    /// `CommandLaunchFailed`, `MaxWallClockTimeExpiry`, `TaskEnded`, ...
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    /// `usererror` or `servererror` (None: usererror).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_category: Option<String>,
    /// The failure happened before the process ran (resource files): the
    /// `preProcessingError` exit condition applies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_processing_error: bool,
    /// Uploading output files failed: the `fileUploadError` exit condition applies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub file_upload_error: bool,
    /// The container the attempt ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub start_time_ms: i64,
    pub end_time_ms: i64,
    /// The process's run time, measured more finely than the two times
    /// above (a trivial process runs for well under a millisecond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_us: Option<u64>,
    pub user_cpu_us: u64,
    pub kernel_cpu_us: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRequest {
    pub id: u64,
    /// A directory relative to the node root (e.g. a task directory). The
    /// agent never follows a symbolic link on the way to it or below it: a
    /// link is neither listed nor served.
    pub base: String,
    /// Relative to `base`.
    pub path: String,
    pub op: FileOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FileOp {
    /// Metadata only.
    Stat,
    /// Bytes `[start, end)` (end clamped to the file size): up to
    /// [`INLINE_READ`] of them base64 in the reply; more are sent on a data
    /// connection identified by `stream` (see [`FILE_STREAM_PATH`]) after a
    /// reply that says `stream: true`.
    Read {
        start: u64,
        end: Option<u64>,
        stream: String,
    },
    /// Entries below the path, recursively or not.
    List {
        recursive: bool,
    },
    Delete {
        recursive: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the request's `base`.
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified_ms: i64,
    pub created_ms: i64,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReply {
    pub id: u64,
    /// `NotFound`, `OutsideRoot`, `IsDirectory`, `NotRegular` (a FIFO,
    /// device...), `Symlink`, `InvalidRange`, `DirectoryNotEmpty`, `Io`.
    pub error: Option<String>,
    pub entries: Vec<FileEntry>,
    /// Base64 file content for an inline `Read`.
    pub data: Option<String>,
    /// The whole file's size for `Read`/`Stat`.
    pub size: Option<u64>,
    /// `Read`: the bytes come on the data connection (not in `data`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// `Read`: how many bytes the range holds (inline or streamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// An operation on the node, with the id its reply carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub id: u64,
    pub op: NodeOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeOp {
    /// Create a user account on the node (`POST .../users`); the agent
    /// removes it at `expiry_ms` (Unix milliseconds).
    AddUser { name: String, admin: bool, password: Option<String>, ssh_public_key: Option<String>, expiry_ms: i64 },
    /// Replace an account's password, SSH public key and expiry (absent
    /// ones are removed), `PUT .../users/{name}`.
    UpdateUser { name: String, password: Option<String>, ssh_public_key: Option<String>, expiry_ms: i64 },
    /// Delete an account the agent created.
    DeleteUser { name: String },
    /// Upload the agent's log files that cover `[start_ms, end_ms)` to the
    /// container (a SAS URL) under `directory/`.
    UploadLogs { container_url: String, directory: String, start_ms: i64, end_ms: i64 },
}

/// How a [`NodeRequest`] ended: `error` is a Batch error code (`NodeUserExists`,
/// `NodeUserNotFound`, `InvalidPropertyValue`, `OperationNotValidOnNode`,
/// `InternalError`) with a message, or None; `files` the log files uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeReply {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    pub code: String,
    pub message: String,
    /// The request property the error is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// The longest node user name (Linux's limit for login names).
pub const USER_NAME_MAX: usize = 32;

/// Whether `name` may name a node user account: 1 to [`USER_NAME_MAX`]
/// lower-case ASCII letters, digits, `_` and `-`, starting with a letter or
/// `_` (so never an option, a path or a field separator of `/etc/passwd`),
/// and not an account openbatch or the system reserves (`root`, the task
/// accounts `_azbatch…`). The server checks it before asking, the agent
/// again before acting. The reason in words when not.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > USER_NAME_MAX {
        return Err(format!("A user name is 1 to {USER_NAME_MAX} characters long."));
    }
    if !(b[0].is_ascii_lowercase() || b[0] == b'_') || !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-".contains(c))
    {
        return Err("A user name on a Linux node is lower-case letters, digits, '_' and '-', starting with a letter or '_'.".into());
    }
    if name == "root" || name.starts_with("_azbatch") {
        return Err(format!("The user name '{name}' is reserved."));
    }
    Ok(())
}

/// Whether `password` may be set: at most 256 characters, none a control
/// character (a line break would start another line of `chpasswd`'s input).
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() > 256 {
        return Err("The password is longer than 256 characters.".into());
    }
    if password.chars().any(char::is_control) {
        return Err("The password contains a control character.".into());
    }
    Ok(())
}

/// Whether `key` is one OpenSSH public key line: `<type> <base64> [comment]`,
/// the type letters, digits and `@.-` (e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`),
/// the key base64, no options before them and no control character (it is
/// written as one line of `authorized_keys`); at most 16 KiB.
pub fn check_ssh_public_key(key: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("The SSH public key must be one OpenSSH public key line ('<type> <base64 key> [comment]'): {why}."));
    if key.len() > 16 * 1024 {
        return bad("it is longer than 16 KiB");
    }
    if key.chars().any(char::is_control) {
        return bad("it contains a control character or a line break");
    }
    let mut parts = key.split_ascii_whitespace();
    let (Some(kind), Some(data)) = (parts.next(), parts.next()) else { return bad("it has fewer than two fields") };
    if !kind.bytes().all(|c| c.is_ascii_alphanumeric() || b"@.-".contains(&c))
        || !kind.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
    {
        return bad("the first field is not a key type");
    }
    let body = data.trim_end_matches('=');
    if body.len() < 16 || data.len() - body.len() > 2 || !body.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/') {
        return bad("the second field is not a base64 key");
    }
    Ok(())
}

/// One frame holding `msgs`: the message itself when there is one, else a
/// JSON array of them, in order.
pub fn encode_frame<T: Serialize>(msgs: &[T]) -> serde_json::Result<String> {
    match msgs {
        [one] => serde_json::to_string(one),
        many => serde_json::to_string(many),
    }
}

/// The messages of one frame (see [`encode_frame`]).
pub fn decode_frame<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<Vec<T>> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|m| vec![m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m = ToAgent::Kill { attempt: 7, grace_ms: 100 };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"type":"kill","attempt":7,"grace_ms":100}"#);
        assert_eq!(serde_json::from_str::<ToAgent>(&s).unwrap(), m);
        let h = ToServer::Heartbeat { usage: None };
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"type":"heartbeat"}"#);
        assert_eq!(serde_json::from_str::<ToServer>(r#"{"type":"heartbeat"}"#).unwrap(), h);
    }

    /// A heartbeat with measurements reads back; one from an agent that
    /// measures less (or more, from a later version) still parses.
    #[test]
    fn heartbeats_carry_usage_compatibly() {
        let u = NodeUsage { cpu_busy: Some(10), cpu_total: Some(40), memory_bytes: Some(1 << 30), ..NodeUsage::default() };
        let h = ToServer::Heartbeat { usage: Some(u) };
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(s, r#"{"type":"heartbeat","usage":{"cpu_busy":10,"cpu_total":40,"memory_bytes":1073741824}}"#);
        assert_eq!(serde_json::from_str::<ToServer>(&s).unwrap(), h);
        let later = r#"{"type":"heartbeat","usage":{"cpu_busy":1,"gpu_percent":5}}"#;
        let ToServer::Heartbeat { usage: Some(u) } = serde_json::from_str::<ToServer>(later).unwrap() else { panic!("a heartbeat") };
        assert_eq!((u.cpu_busy, u.cpu_total), (Some(1), None));
    }

    #[test]
    fn user_names_passwords_and_keys_are_checked() {
        for ok in ["alice", "_svc", "a-b_c9", &"x".repeat(32)] {
            assert!(check_user_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-rf", "Alice", "a b", "a/b", "../x", "a:b", "root", "_azbatch", "_azbatch3", "9lives", &"x".repeat(33), "ü"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("s3cret: with spaces!").is_ok());
        assert!(check_password("a\nroot:x").is_err());
        assert!(check_password(&"p".repeat(257)).is_err());
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4Jt0rCq3Tq2u9b2b7Xo0qM6z8i0pXhYq5b9VfN8aZk alice@host";
        assert!(check_ssh_public_key(key).is_ok());
        assert!(check_ssh_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==").is_ok());
        for bad in [
            "",
            "ssh-ed25519",
            "command=\"sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4J",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4J\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB",
            "ssh-ed25519 not*base64*at*all!!",
        ] {
            assert!(check_ssh_public_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames_carry_one_message_or_several_in_order() {
        let one = vec![ToServer::Started { attempt: 1 }];
        let s = encode_frame(&one).unwrap();
        assert_eq!(s, r#"{"type":"started","attempt":1}"#);
        assert_eq!(decode_frame::<ToServer>(&s).unwrap(), one);
        let two = vec![ToServer::Started { attempt: 2 }, ToServer::Heartbeat { usage: None }];
        let s = encode_frame(&two).unwrap();
        assert!(s.starts_with('['), "{s}");
        assert_eq!(decode_frame::<ToServer>(&s).unwrap(), two);
        assert!(decode_frame::<ToServer>("[{\"type\":\"nope\"}]").is_err());
    }
}
