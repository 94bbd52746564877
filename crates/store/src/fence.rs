//! [`Fence`]: what fences a server's writes with the lease it holds. A leaf:
//! the backends and the handle share it.

use wire::Error;

/// What fences a server's writes with the lease it holds (leader election
/// among replicas): the lease's name and holder, the fencing token of the
/// current grant (0: not granted) and how long this process may act on it
/// by its own monotonic clock.
///
/// A backend that supports fencing ([`crate::Backend::set_fence`]) checks,
/// inside the transaction of every write except the lease operations
/// themselves, that the lease row still carries this holder and token (and
/// locks it against a change of hands until the commit); a write made after
/// another server took the lease is refused with 503 `ServerBusy`. The
/// control plane asks [`Fence::acting`] before it tells an agent anything.
#[derive(Debug)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    token: std::sync::atomic::AtomicU64,
    deadline: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Fence {
    /// A fence not granted yet.
    pub fn new(name: &str, holder: &str) -> std::sync::Arc<Fence> {
        std::sync::Arc::new(Fence {
            name: name.to_string(),
            holder: holder.to_string(),
            token: Default::default(),
            deadline: Default::default(),
        })
    }

    /// The token of the current grant; 0 when none.
    pub fn token(&self) -> u64 {
        self.token.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The lease was granted (or renewed) with `token`; this process may act
    /// until `until` (its own clock).
    pub fn grant(&self, token: u64, until: std::time::Instant) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
        self.token.store(token, std::sync::atomic::Ordering::Release);
    }

    /// The lease is lost or given up: nothing is done on it any more.
    pub fn revoke(&self) {
        self.token.store(0, std::sync::atomic::Ordering::Release);
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether the lease is held and its time, by this process's clock, has
    /// not run out. A process paused past its lease finds this false the
    /// moment it runs again.
    pub fn acting(&self) -> bool {
        self.token() != 0 && self.deadline.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|d| std::time::Instant::now() < d)
    }

    /// The error a fenced write or a stale leader's action gets.
    pub fn refused(&self) -> Error {
        Error::msg(wire::ErrorCode::ServerBusy, "This server is not the leader (any more). Please retry your request.")
    }
}
