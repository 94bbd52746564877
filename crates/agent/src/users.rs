//! User accounts on the node that clients ask for (`POST .../users`, `PUT`
//! and `DELETE .../users/{name}`): real Linux accounts, made and changed with
//! the tools of Debian's `passwd` package — `useradd` (home `/home/{name}`,
//! a group of the same name, login shell `/bin/bash`), `chpasswd` (the
//! password on its standard input, hashed as the machine's PAM
//! configuration says; never on a command line), `usermod` and `userdel`.
//! An admin account (`isAdmin`) is a member of the group `sudo` (created
//! when the machine has none), which Debian's sudoers lets run anything as
//! root.
//!
//! The agent touches only accounts it made itself: each is recorded, with
//! its uid and expiry, in `volatile/users.json` under the node root
//! (root-only, 0600), and an account of the machine that is not in the
//! record — or whose uid no longer matches — is never changed or deleted.
//! Names are checked (`proto::check_user_name`) before any command runs and
//! passed after `--`. The key goes to `~/.ssh/authorized_keys` through
//! `nodefs` (no symbolic link the account's owner planted in its home is
//! followed; the directory and file are made `0700`/`0600` and owned by
//! the account on their descriptors). An account is deleted at its expiry
//! by the agent's own timer, whether or not the server is connected, and
//! with the node when it is reimaged or leaves the pool. Only a root agent
//! manages accounts; any other refuses each request.

use proto::{NodeError, NodeOp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Where homes are made.
const HOME_BASE: &str = "/home";
/// The group of administrators.
const ADMIN_GROUP: &str = "sudo";

/// One account this agent made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub uid: u32,
    pub admin: bool,
    /// When the agent deletes it (Unix milliseconds).
    pub expiry_ms: i64,
}

/// The accounts of one node.
pub struct Users {
    /// `volatile/users.json` under the node root.
    record: PathBuf,
    /// Held for each change (the record and the machine's account files).
    lock: Mutex<BTreeMap<String, Entry>>,
    is_root: bool,
    /// Wakes the expiry timer when an expiry changes.
    pub changed: tokio::sync::Notify,
}

fn error(code: &str, message: impl Into<String>) -> NodeError {
    NodeError { code: code.into(), message: message.into(), property: None }
}

fn invalid(property: &str, message: String) -> NodeError {
    NodeError { code: "InvalidPropertyValue".into(), message, property: Some(property.into()) }
}

fn internal(message: impl Into<String>) -> NodeError {
    error("InternalError", message)
}

impl Users {
    /// The accounts recorded under `root` (none when there is no record).
    pub fn open(root: &Path, is_root: bool) -> Users {
        let record = root.join("volatile").join("users.json");
        let known = std::fs::read(&record).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Users { record, lock: Mutex::new(known), is_root, changed: tokio::sync::Notify::new() }
    }

    /// The accounts recorded, with their entries.
    pub fn list(&self) -> BTreeMap<String, Entry> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Carries out one user operation (blocking: it runs the account tools).
    pub fn apply(&self, op: NodeOp) -> Result<(), NodeError> {
        if !self.is_root {
            return Err(error(
                "OperationNotValidOnNode",
                "The node's agent does not run as root, so it cannot manage user accounts on the node.",
            ));
        }
        let name = match &op {
            NodeOp::AddUser { name, .. } | NodeOp::UpdateUser { name, .. } | NodeOp::DeleteUser { name } => name.clone(),
            NodeOp::UploadLogs { .. } => return Err(internal("not a user operation")),
        };
        proto::check_user_name(&name).map_err(|m| invalid("name", m))?;
        let mut known = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = match op {
            NodeOp::AddUser { admin, password, ssh_public_key, expiry_ms, .. } => {
                self.add(&mut known, &name, admin, password.as_deref(), ssh_public_key.as_deref(), expiry_ms)
            }
            NodeOp::UpdateUser { password, ssh_public_key, expiry_ms, .. } => {
                self.update(&mut known, &name, password.as_deref(), ssh_public_key.as_deref(), expiry_ms)
            }
            NodeOp::DeleteUser { .. } => self.delete(&mut known, &name),
            NodeOp::UploadLogs { .. } => unreachable!("checked above"),
        };
        drop(known);
        self.changed.notify_one();
        r
    }

    fn save(&self, known: &BTreeMap<String, Entry>) -> Result<(), NodeError> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.record.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&serde_json::to_vec(known).unwrap_or_default())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.record));
        written.map_err(|e| internal(format!("cannot write the record of the node's accounts: {e}")))
    }

    /// The entry of `name` if this agent made it and the machine's account
    /// is still that one (same uid); an entry whose account is gone or
    /// replaced is dropped from the record.
    fn ours(&self, known: &mut BTreeMap<String, Entry>, name: &str) -> Result<Entry, NodeError> {
        let not_found = || error("NodeUserNotFound", format!("The node has no user account '{name}' created through the Batch API."));
        let e = known.get(name).cloned().ok_or_else(not_found)?;
        match crate::exec::lookup_user(name) {
            Some((uid, _)) if uid == e.uid => Ok(e),
            _ => {
                known.remove(name);
                self.save(known)?;
                Err(not_found())
            }
        }
    }

    fn add(
        &self,
        known: &mut BTreeMap<String, Entry>,
        name: &str,
        admin: bool,
        password: Option<&str>,
        key: Option<&str>,
        expiry_ms: i64,
    ) -> Result<(), NodeError> {
        check_secrets(password, key)?;
        if known.contains_key(name) && self.ours(known, name).is_ok() {
            return Err(error("NodeUserExists", format!("The node already has a user account '{name}'.")));
        }
        if crate::exec::lookup_user(name).is_some() {
            return Err(error(
                "NodeUserExists",
                format!("The node already has an account '{name}' (not one created through the Batch API)."),
            ));
        }
        if crate::exec::lookup_group(name).is_some() {
            return Err(error("NodeUserExists", format!("The node already has a group '{name}', the name of the account's own group.")));
        }
        let home = Path::new(HOME_BASE).join(name);
        if std::fs::symlink_metadata(&home).is_ok() {
            return Err(error("NodeUserExists", format!("{} already exists on the node.", home.display())));
        }
        if admin && crate::exec::lookup_group(ADMIN_GROUP).is_none() {
            run("groupadd", &["--system", "--", ADMIN_GROUP], None)?;
        }
        let home_arg = home.to_string_lossy().into_owned();
        let mut args = vec!["--create-home", "--home-dir", &home_arg, "--shell", "/bin/bash", "--user-group"];
        if admin {
            args.extend(["--groups", ADMIN_GROUP]);
        }
        args.extend(["--", name]);
        run("useradd", &args, None)?;
        let Some((uid, _)) = crate::exec::lookup_user(name) else { return Err(internal(format!("useradd did not create '{name}'"))) };
        known.insert(name.to_string(), Entry { uid, admin, expiry_ms });
        let set = self.save(known).and_then(|()| set_secrets(name, uid, password, key));
        if let Err(e) = set {
            // Not half made: the account goes again.
            let _ = self.remove(known, name, uid);
            return Err(e);
        }
        tracing::info!(user = name, admin, "created a node user account");
        Ok(())
    }

    fn update(
        &self,
        known: &mut BTreeMap<String, Entry>,
        name: &str,
        password: Option<&str>,
        key: Option<&str>,
        expiry_ms: i64,
    ) -> Result<(), NodeError> {
        check_secrets(password, key)?;
        let e = self.ours(known, name)?;
        set_secrets(name, e.uid, password, key)?;
        known.insert(name.to_string(), Entry { expiry_ms, ..e });
        self.save(known)?;
        tracing::info!(user = name, "updated a node user account");
        Ok(())
    }

    fn delete(&self, known: &mut BTreeMap<String, Entry>, name: &str) -> Result<(), NodeError> {
        let e = self.ours(known, name)?;
        self.remove(known, name, e.uid)?;
        tracing::info!(user = name, "deleted a node user account");
        Ok(())
    }

    /// Deletes an account this agent made: its processes are killed, the
    /// account and its group removed (`userdel`), then its home (never
    /// through a link), and the record forgets it.
    fn remove(&self, known: &mut BTreeMap<String, Entry>, name: &str, uid: u32) -> Result<(), NodeError> {
        kill_processes_of(uid);
        if crate::exec::lookup_user(name).is_some_and(|(u, _)| u == uid) {
            run("userdel", &["--", name], None)?;
        }
        if let Ok(base) = nodefs::Dir::open(Path::new(HOME_BASE)) {
            // Only the home the account owned (a name reused since is not ours).
            if base.stat(name).is_ok_and(|m| m.uid == uid) {
                if let Err(e) = base.remove(name, true) {
                    tracing::warn!(user = name, "cannot remove the home directory: {e}");
                }
            }
        }
        known.remove(name);
        self.save(known)
    }

    /// Deletes the accounts whose expiry is at or before `now_ms`; the
    /// earliest expiry left.
    pub fn expire(&self, now_ms: i64) -> Option<i64> {
        let mut known = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let due: Vec<(String, u32)> = known.iter().filter(|(_, e)| e.expiry_ms <= now_ms).map(|(n, e)| (n.clone(), e.uid)).collect();
        for (name, uid) in due {
            match self.remove(&mut known, &name, uid) {
                Ok(()) => tracing::info!(user = %name, "deleted a node user account at its expiry time"),
                Err(e) => {
                    tracing::warn!(user = %name, "cannot delete an expired node user account: {}", e.message);
                    // Tried again at the next turn, not in a tight loop.
                    if let Some(x) = known.get_mut(&name) {
                        x.expiry_ms = crate::exec::now_ms() + 60_000;
                    }
                }
            }
        }
        known.values().map(|e| e.expiry_ms).min()
    }

    /// Deletes every account this agent made (the node is reimaged or leaves).
    pub fn remove_all(&self) {
        if !self.is_root {
            return;
        }
        self.expire(i64::MAX);
        self.changed.notify_one();
    }
}

fn check_secrets(password: Option<&str>, key: Option<&str>) -> Result<(), NodeError> {
    if let Some(p) = password {
        proto::check_password(p).map_err(|m| invalid("password", m))?;
    }
    if let Some(k) = key {
        proto::check_ssh_public_key(k).map_err(|m| invalid("sshPublicKey", m))?;
    }
    Ok(())
}

/// Sets the account's password (none: no password login) and its only
/// authorized SSH key (none: no key).
fn set_secrets(name: &str, uid: u32, password: Option<&str>, key: Option<&str>) -> Result<(), NodeError> {
    match password {
        Some(p) => run("chpasswd", &[], Some(format!("{name}:{p}\n")))?,
        // `!`: no password matches (the account stays usable with a key).
        None => run("usermod", &["--password", "!", "--", name], None)?,
    }
    write_key(name, uid, key).map_err(|e| internal(format!("cannot write the SSH public key of '{name}': {e}")))
}

/// `~/.ssh/authorized_keys` of the account holds `key` (or is removed):
/// reached from `/home` without following a link at any step (the home and
/// its `.ssh` belong to the account, whose owner may have replaced them with
/// links), the home checked to be the account's, `.ssh` re-made when it is
/// not a directory, and the file made anew, owned by the account, `0600`.
fn write_key(name: &str, uid: u32, key: Option<&str>) -> std::io::Result<()> {
    let base = nodefs::Dir::open(Path::new(HOME_BASE))?;
    let home = base.open_dir(name)?;
    if home.meta()?.uid != uid {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the home directory is not the account's"));
    }
    let gid = crate::exec::lookup_user(name).map(|(_, g)| g).unwrap_or(uid);
    match key {
        None => match home.open_dir(".ssh") {
            Ok(ssh) => match ssh.remove("authorized_keys", false) {
                Err(e) if !nodefs::is_missing(&e) => Err(e),
                _ => Ok(()),
            },
            Err(_) => Ok(()),
        },
        Some(key) => {
            let ssh = home.ensure_dir(".ssh", Some((uid, gid)))?;
            ssh.chmod(0o700)?;
            let mut f = ssh.create_file("authorized_keys", 0o600)?;
            nodefs::chown_file(&f, uid, gid)?;
            nodefs::chmod_file(&f, 0o600)?;
            f.write_all(key.trim().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        }
    }
}

/// Runs an account tool; its stderr is the message of a failure.
fn run(program: &str, args: &[&str], stdin: Option<String>) -> Result<(), NodeError> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped()).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| internal(format!("cannot run {program}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| internal(format!("{program}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        // chpasswd's message never holds the password; the others hold names only.
        Err(internal(format!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Kills every process whose real, effective, saved or file-system uid is
/// `uid` (a logged-in account being deleted), a few rounds for forks.
fn kill_processes_of(uid: u32) {
    for _ in 0..5 {
        let mut found = false;
        let Ok(dir) = std::fs::read_dir("/proc") else { return };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
            let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or("");
            if uids.split_ascii_whitespace().any(|u| u.parse() == Ok(uid)) {
                found = true;
                // SAFETY: kill(2) with a pid read from /proc; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Deletes accounts at their expiry, for as long as the agent runs: sleeps
/// until the earliest expiry (at most a minute, so a changed clock is seen)
/// or until an account changes.
pub async fn expiry_loop(users: std::sync::Arc<Users>) {
    if !users.is_root {
        return;
    }
    loop {
        let u = users.clone();
        let next = tokio::task::spawn_blocking(move || u.expire(crate::exec::now_ms())).await.ok().flatten();
        let wait = match next {
            Some(at) => (at - crate::exec::now_ms()).clamp(0, 60_000) as u64,
            None => 60_000,
        };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            _ = users.changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-root agent refuses every account operation clearly, and
    /// invalid names are refused before anything runs.
    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("volatile")).unwrap();
        let users = Users::open(dir.path(), false);
        let e = users.apply(NodeOp::DeleteUser { name: "alice".into() }).unwrap_err();
        assert_eq!(e.code, "OperationNotValidOnNode");
        let root = Users::open(dir.path(), true);
        for bad in ["-rf", "../etc", "root", "a:b"] {
            let e = root.apply(NodeOp::DeleteUser { name: bad.into() }).unwrap_err();
            assert_eq!((e.code.as_str(), e.property.as_deref()), ("InvalidPropertyValue", Some("name")), "{bad}");
        }
        // An account of the machine this agent did not make is not its to delete.
        let e = root.apply(NodeOp::DeleteUser { name: "nobody".into() }).unwrap_err();
        assert_eq!(e.code, "NodeUserNotFound");
        if unsafe { libc::geteuid() } == 0 {
            // An account of the machine is not made again (nothing runs).
            let add = NodeOp::AddUser { name: "nobody".into(), admin: false, password: None, ssh_public_key: None, expiry_ms: i64::MAX };
            assert_eq!(root.apply(add).unwrap_err().code, "NodeUserExists");
        }
        let e = root
            .apply(NodeOp::UpdateUser { name: "nobody".into(), password: Some("x".into()), ssh_public_key: None, expiry_ms: 0 })
            .unwrap_err();
        assert_eq!(e.code, "NodeUserNotFound");
    }
}
