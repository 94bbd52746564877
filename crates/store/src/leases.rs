//! Named leases with fencing tokens (see [`crate::Lease`]): the building
//! block of leader election among servers that share a database.

use crate::backend::Lease;
use crate::handle::Store;
use wire::time::Timestamp;
use wire::Error;

impl Store {
    /// Takes the lease `name` for `holder` until `now + ttl` when it is
    /// free, expired or already `holder`'s; None while another holder has
    /// it. A holder id names one process incarnation (a restarted server
    /// must use a new one, or it would inherit its predecessor's token).
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl: std::time::Duration, now: Timestamp) -> Result<Option<Lease>, Error> {
        self.backend.acquire_lease(name, holder, ttl, now).await
    }

    /// Extends a lease still held (same holder and token, not expired at
    /// `now`) to `now + ttl`; None when it was lost.
    pub async fn renew_lease(&self, lease: &Lease, ttl: std::time::Duration, now: Timestamp) -> Result<Option<Lease>, Error> {
        self.backend.renew_lease(&lease.name, &lease.holder, lease.token, ttl, now).await
    }

    /// Gives a lease up; false when it was not held with that token any more.
    pub async fn release_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.backend.release_lease(&lease.name, &lease.holder, lease.token).await
    }
}

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

impl Store {
    /// This handle with every write fenced by `fence` (see [`Fence`]); an
    /// error when the backend cannot fence (SQLite: one server per file).
    pub fn with_fence(mut self, fence: std::sync::Arc<Fence>) -> Result<Store, Error> {
        self.backend.set_fence(fence.clone())?;
        self.fence = Some(fence);
        Ok(self)
    }

    /// The fence of this store's writes, if it has one.
    pub fn fence(&self) -> Option<&std::sync::Arc<Fence>> {
        self.fence.as_ref()
    }

    /// Whether this server may act on the cluster: always without a fence,
    /// else while it holds the lease (see [`Fence::acting`]).
    pub fn acting(&self) -> bool {
        match &self.fence {
            Some(f) => f.acting(),
            None => true,
        }
    }

    /// The current state of the lease `name` (whoever holds it); None when
    /// it was never granted.
    pub async fn current_lease(&self, name: &str) -> Result<Option<Lease>, Error> {
        self.backend.current_lease(name).await
    }
}
