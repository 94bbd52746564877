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

pub use crate::fence::Fence;

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
