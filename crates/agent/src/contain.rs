//! Containment of task attempts.
//!
//! Every attempt's processes live in a cgroup (v2) of their own, a *cell*,
//! so the attempt can always be killed as a whole: processes that left its
//! process group (`setsid`, a double fork) included. The child joins its
//! cell before it drops privileges (see `spawn`), so a task never starts
//! outside it. Cells are reused: creating and removing a cgroup per attempt
//! would cost more than the rest of a trivial task's start.
//!
//! When an attempt ends, whatever it left behind is killed with it (`end`),
//! except for work whose background processes are meant to outlive the
//! command (a start task's daemons, a multi-instance coordination command's
//! services): those share the node's *lingering* cell, killed when the node
//! resets or stops.
//!
//! The cells of one agent live under one directory whose path is recorded in
//! the node root (`volatile/cgroup`): a later incarnation of the agent, on
//! the same root, kills everything an earlier one left there (an agent that
//! was SIGKILLed, or whose machine lost it) before it joins the pool again,
//! so an attempt the server requeues never runs twice at the same time.
//!
//! Without a writable cgroup v2 hierarchy (an agent not running as root, a
//! container without cgroup access) attempts are contained by their process
//! group only, as before; `openbatch agent` says so once at start.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One attempt's cgroup: its directory and open handles to move a process
/// in (`cgroup.procs`) and to kill everything inside (`cgroup.kill`).
#[derive(Debug)]
pub struct Cell {
    dir: PathBuf,
    procs: File,
    kill: File,
}

impl Cell {
    fn open(dir: PathBuf) -> std::io::Result<Cell> {
        let procs = std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?;
        let kill = std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.kill"))?;
        Ok(Cell { dir, procs, kill })
    }

    /// The descriptor a child writes "0" to, to join the cell.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// SIGKILL to every process in the cell (and every one it forks meanwhile).
    pub fn kill_all(&self) {
        let _ = (&self.kill).write_all(b"1");
    }

    /// Sends `sig` to every process in the cell.
    pub fn signal_all(&self, sig: i32) {
        for pid in pids(&self.dir) {
            // SAFETY: plain kill(2) on a pid read from the cell.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Whether any process is left in the cell.
    pub fn populated(&self) -> bool {
        populated(&self.dir)
    }
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs")).map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect()).unwrap_or_default()
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events")).map(|s| s.lines().any(|l| l.trim() == "populated 1")).unwrap_or(false)
}

/// The agent's cells.
#[derive(Debug, Default)]
pub struct Containment {
    /// The directory holding this agent's cells; None: process groups only.
    base: Option<PathBuf>,
    /// Cells not in use.
    free: Mutex<Vec<Arc<Cell>>>,
    next: AtomicU64,
    /// The cell of work whose background processes outlive its command.
    lingering: Option<Arc<Cell>>,
}

/// What [`Containment::new`] found of an earlier incarnation of the agent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    /// Processes still running in its cells, now killed.
    pub killed: u32,
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a pure v2
/// system, `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup (v2) relative to the hierarchy's root.
fn own_cgroup() -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().trim_start_matches('/').to_string())
}

/// Kills every process in the cells under `base` and removes them; the
/// number of processes that were still there.
fn clear(base: &Path) -> u32 {
    let Ok(dirs) = std::fs::read_dir(base) else { return 0 };
    let cells: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).filter(|p| p.join("cgroup.kill").exists()).collect();
    let mut killed = 0;
    for c in &cells {
        let n = pids(c).len() as u32;
        if n > 0 {
            killed += n;
            let _ = std::fs::write(c.join("cgroup.kill"), b"1");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for c in &cells {
        while populated(c) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir(c);
    }
    killed
}

impl Containment {
    /// Process groups only.
    pub fn none() -> Containment {
        Containment::default()
    }

    /// Sets up the cells of the agent whose node root is `root`, after
    /// killing whatever an earlier agent on the same root left running.
    pub fn new(root: &Path) -> (Containment, Leftovers) {
        let record = root.join("volatile").join("cgroup");
        let mut left = Leftovers::default();
        if let Ok(previous) = std::fs::read_to_string(&record) {
            let previous = PathBuf::from(previous.trim());
            if previous.is_absolute() && previous.join("cgroup.procs").exists() {
                left.killed = clear(&previous);
                let _ = std::fs::remove_dir(&previous);
            }
        }
        let Some(base) = Self::base_for(root) else { return (Containment::none(), left) };
        if base.exists() {
            left.killed += clear(&base);
        } else if let Err(e) = std::fs::create_dir(&base) {
            tracing::warn!(error = %e, dir = %base.display(), "cannot create the agent's cgroup; tasks are contained by their process group only");
            return (Containment::none(), left);
        }
        let lingering = match std::fs::create_dir(base.join("lingering")).or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        }) {
            Ok(()) => Cell::open(base.join("lingering")).ok().map(Arc::new),
            Err(_) => None,
        };
        if lingering.is_none() {
            tracing::warn!(dir = %base.display(), "the agent's cgroup is not usable; tasks are contained by their process group only");
            let _ = std::fs::remove_dir(&base);
            return (Containment::none(), left);
        }
        if let Err(e) = std::fs::write(&record, base.as_os_str().as_encoded_bytes()) {
            tracing::warn!(error = %e, "cannot record the agent's cgroup in the node root");
        }
        (Containment { base: Some(base), free: Mutex::new(Vec::new()), next: AtomicU64::new(0), lingering }, left)
    }

    /// `<cgroup2 mount>/<the agent's cgroup>/openbatch-<node root's hash>`:
    /// the same for every incarnation of the agent on one root that starts
    /// in the same cgroup (the record in the node root covers the others).
    fn base_for(root: &Path) -> Option<PathBuf> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let mount = cgroup2_mount()?;
        let own = own_cgroup()?;
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        // FNV-1a: short, stable across builds (unlike the std hasher).
        let mut h: u64 = 0xcbf29ce484222325;
        for b in root.as_os_str().as_encoded_bytes() {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
        let mut dir = mount;
        if !own.is_empty() {
            dir.push(own);
        }
        dir.push(format!("openbatch-{h:016x}"));
        Some(dir)
    }

    /// Whether attempts get cells (cgroups) rather than process groups only.
    pub fn enabled(&self) -> bool {
        self.base.is_some()
    }

    /// A cell for an attempt; `lingering` work shares the node's lingering
    /// cell (see the module's documentation).
    pub fn acquire(&self, lingering: bool) -> Option<Lease> {
        if lingering {
            return self.lingering.clone().map(|cell| Lease { cell, own: false });
        }
        let base = self.base.as_ref()?;
        {
            // A cell someone still holds (a stop under way) is not reused.
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = free.iter().position(|c| Arc::strong_count(c) == 1) {
                return Some(Lease { cell: free.swap_remove(i), own: true });
            }
        }
        let dir = base.join(format!("c{}", self.next.fetch_add(1, Ordering::Relaxed)));
        match std::fs::create_dir(&dir).or_else(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) }) {
            Ok(()) => Cell::open(dir).ok().map(|c| Lease { cell: Arc::new(c), own: true }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create an attempt's cgroup");
                None
            }
        }
    }

    /// An attempt's command ended: what it left behind is killed, and its
    /// cell goes back to the free list.
    pub fn end(&self, lease: Lease) {
        if lease.own {
            lease.cell.kill_all();
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(lease.cell);
        }
    }

    /// The agent exits: every cell's processes are killed and the cells and
    /// the agent's cgroup removed (a cgroup left behind per node root would
    /// pile up across nodes and slow every later cgroup operation).
    pub fn release(&self) {
        if let Some(base) = &self.base {
            self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
            clear(base);
            let _ = std::fs::remove_dir(base);
        }
    }

    /// Kills the lingering cell's processes (the node resets or stops).
    pub fn kill_lingering(&self) {
        if let Some(c) = &self.lingering {
            c.kill_all();
        }
    }
}

/// An attempt's use of a cell: its own, or the node's shared lingering one.
#[derive(Debug)]
pub struct Lease {
    pub cell: Arc<Cell>,
    own: bool,
}

impl Lease {
    /// The cell is the attempt's alone (not the lingering one).
    pub fn own(&self) -> bool {
        self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_and_own_cgroup_parse() {
        // Whatever this machine has, the parsers must not panic, and a
        // cgroup2 mount, when found, is an absolute path.
        if let Some(m) = cgroup2_mount() {
            assert!(m.is_absolute());
        }
        let _ = own_cgroup();
    }

    /// An agent that exits leaves no cgroup behind: its cells and its base go.
    #[test]
    fn release_removes_the_agents_cgroups() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("volatile")).unwrap();
        let (c, _) = Containment::new(root.path());
        let Some(base) = c.base.clone() else {
            eprintln!("skipped: no writable cgroup2 hierarchy here (not root, or no cgroup2)");
            return;
        };
        let lease = c.acquire(false).expect("a cell");
        let cell_dir = lease.cell.dir.clone();
        assert!(cell_dir.exists());
        c.end(lease);
        c.release();
        assert!(!cell_dir.exists(), "the attempt's cell is removed");
        assert!(!base.exists(), "the agent's cgroup is removed");
    }
}
