//! Replicas: several `openbatch serve` processes on one PostgreSQL database.
//!
//! One of them leads: it holds the lease [`LEASE`] (see `store::Fence`),
//! renewed every quarter of its time to live, and only it runs the control
//! plane (scheduler, agent connections, lifecycle, schedules, autoscale,
//! retention) and answers API requests itself. The others are standbys:
//! they try to take the lease every [`POLL`], refuse agents with 503 and a
//! pointer to the leader ([`LEADER_HEADER`]), and forward every
//! authenticated API request to the leader (whose URL is in the lease's
//! holder, `"<incarnation> <advertised URL>"`), streaming the body both
//! ways, so a client may send any request to any replica and gets the
//! leader's answer. While no leader is reachable a standby answers 503
//! `ServerBusy` (the SDKs retry it).
//!
//! A leader that cannot renew in time, or finds the lease taken, stops
//! acting at once (its fence refuses writes and messages to agents) and the
//! process exits with status 3: its in-memory control state is not worth
//! keeping, and a restarted process rejoins as a standby.

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Fence, Store};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

/// The name of the leader's lease.
pub const LEASE: &str = "leader";
/// A standby's answer to an agent names the leader's URL in this header.
pub const LEADER_HEADER: &str = "x-openbatch-leader";
/// Marks a forwarded request (a replica never forwards one again).
const FORWARDED_HEADER: &str = "x-openbatch-forwarded";
/// How often a standby tries to take the lease.
pub const POLL: Duration = Duration::from_millis(250);
/// How long a new leader lets agents rejoin before it schedules (see
/// `control::Cluster::hold_scheduling`).
pub const REJOIN_GRACE: Duration = Duration::from_millis(1000);
/// Exit status of a leader that lost its lease.
pub const LOST_LEASE_EXIT: i32 = 3;

/// A replica's settings and role.
pub struct Replica {
    /// The fence of this process's store: holder and token of its grant.
    pub fence: Arc<Fence>,
    /// Where the other replicas and agents reach this one.
    pub advertise_url: String,
    ttl: Duration,
    /// The leader's URL as last read from the lease.
    leader_url: Mutex<Option<String>>,
    leading: tokio::sync::watch::Sender<bool>,
    client: Client<HttpConnector, Body>,
}

/// The lease holder for an incarnation advertised at `url`.
pub fn holder(url: &str) -> String {
    format!("{} {}", uuid::Uuid::new_v4(), url.trim_end_matches('/'))
}

/// The URL a lease holder advertises.
fn url_of(holder: &str) -> Option<&str> {
    holder.split_once(' ').map(|(_, url)| url).filter(|u| !u.is_empty())
}

impl Replica {
    /// A standby whose store is fenced with `fence` (holder from [`holder`]).
    pub fn new(fence: Arc<Fence>, ttl: Duration) -> Arc<Replica> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        http.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(http);
        let advertise_url = url_of(&fence.holder).unwrap_or_default().to_string();
        Arc::new(Replica { fence, advertise_url, ttl, leader_url: Mutex::new(None), leading: tokio::sync::watch::channel(false).0, client })
    }

    /// Whether this replica leads now (holds the lease, by its own clock).
    pub fn leading(&self) -> bool {
        self.fence.acting()
    }

    /// Resolves once this replica has become the leader.
    pub async fn became_leader(&self) {
        let mut rx = self.leading.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// The leader's URL as last read, unless it is this replica's own.
    pub fn leader_url(&self) -> Option<String> {
        let url = self.leader_url.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        (url != self.advertise_url).then_some(url)
    }

    fn set_leader(&self, lease: Option<&store::Lease>) {
        *self.leader_url.lock().unwrap_or_else(|p| p.into_inner()) = lease.and_then(|l| url_of(&l.holder)).map(str::to_string);
    }

    /// How long this process acts on a grant asked for at `asked`: a
    /// quarter of the time to live short of its expiry, for clock skew
    /// between machines and the time the answer took.
    fn act_until(&self, asked: Instant) -> Instant {
        asked + self.ttl - self.ttl / 4
    }

    /// The lease loop: as a standby, tries to take the lease every [`POLL`]
    /// (and notes who leads); as the leader, renews it every quarter of its
    /// time to live. Losing it ends the process (see the module's comment).
    pub async fn run(self: Arc<Self>, store: Store) {
        loop {
            let asked = Instant::now();
            match store.acquire_lease(LEASE, &self.fence.holder, self.ttl, Timestamp::now()).await {
                Ok(Some(lease)) => {
                    self.fence.grant(lease.token, self.act_until(asked));
                    self.set_leader(Some(&lease));
                    tracing::info!(token = lease.token, "this replica is the leader now");
                    self.leading.send_replace(true);
                    break;
                }
                Ok(None) => match store.current_lease(LEASE).await {
                    Ok(lease) => self.set_leader(lease.as_ref()),
                    Err(e) => tracing::warn!(error = %e, "cannot read who leads"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot try to take the leader's lease"),
            }
            tokio::time::sleep(POLL).await;
        }
        loop {
            tokio::time::sleep(self.ttl / 4).await;
            let token = self.fence.token();
            let lease = store::Lease { name: LEASE.into(), holder: self.fence.holder.clone(), token, expires: Timestamp::now() };
            let asked = Instant::now();
            // Bounded by what is left of the grant: a renewal that comes
            // back later than that would be acted on too late anyway.
            let left = self.act_until(asked).saturating_duration_since(asked);
            match tokio::time::timeout(left, store.renew_lease(&lease, self.ttl, Timestamp::now())).await {
                Ok(Ok(Some(l))) if self.fence.token() == token && token != 0 => self.fence.grant(l.token, self.act_until(asked)),
                Ok(Ok(_)) => return self.lost("another replica holds the lease"),
                Ok(Err(e)) if self.fence.acting() => tracing::warn!(error = %e, "cannot renew the leader's lease; retrying"),
                Ok(Err(e)) => return self.lost(&format!("the lease could not be renewed in time: {e}")),
                Err(_) => return self.lost("the lease could not be renewed in time"),
            }
        }
    }

    fn lost(&self, why: &str) {
        self.fence.revoke();
        tracing::error!("lost the leadership ({why}): stopping at once; a restarted process rejoins as a standby");
        std::process::exit(LOST_LEASE_EXIT);
    }

    /// Gives the lease up (a clean shutdown) so that a standby takes over at once.
    pub async fn release(&self, store: &Store) {
        let token = self.fence.token();
        self.fence.revoke();
        if token == 0 {
            return;
        }
        let lease = store::Lease { name: LEASE.into(), holder: self.fence.holder.clone(), token, expires: Timestamp::now() };
        match store.release_lease(&lease).await {
            Ok(_) => tracing::info!("gave up the leader's lease"),
            Err(e) => tracing::warn!(error = %e, "cannot give up the leader's lease; it expires by itself"),
        }
    }

    /// The answer to an agent (or its file stream) that reached a standby:
    /// 503 with the leader's URL, where it should go instead.
    pub fn refuse_agent(&self) -> Response<Body> {
        let mut b = Response::builder().status(503);
        if let Some(url) = self.leader_url() {
            b = b.header(LEADER_HEADER, url);
        }
        b.body(Body::from("this server is a standby replica; connect to the leader")).unwrap_or_default()
    }

    /// Sends the request to the leader and returns its answer; 503
    /// `ServerBusy` when no leader is known or reachable.
    pub async fn forward(&self, parts: axum::http::request::Parts, body: Body) -> Result<Response<Body>, Error> {
        let busy = |why: &str| Error::msg(ErrorCode::ServerBusy, format!("No leader is reachable ({why}). Please retry your request."));
        if parts.headers.contains_key(FORWARDED_HEADER) {
            return Err(busy("this replica was named the leader but is not"));
        }
        let Some(leader) = self.leader_url() else { return Err(busy("no replica leads")) };
        let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri: axum::http::Uri = format!("{leader}{target}").parse().map_err(|_| busy("bad leader URL"))?;
        let mut req = Request::builder().method(parts.method).uri(uri).version(axum::http::Version::HTTP_11);
        if let Some(h) = req.headers_mut() {
            for (name, value) in parts.headers.iter() {
                if !hop_by_hop(name.as_str()) {
                    h.append(name, value.clone());
                }
            }
            if let Ok(v) = HeaderValue::from_str(&self.advertise_url) {
                h.insert(FORWARDED_HEADER, v);
            }
        }
        let req = req.body(body).map_err(|_| busy("bad request head"))?;
        match self.client.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                let hop: Vec<_> = parts.headers.keys().filter(|n| hop_by_hop(n.as_str())).cloned().collect();
                for n in hop {
                    parts.headers.remove(n);
                }
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            Err(e) => {
                tracing::debug!(error = %e, leader = %leader, "forwarding to the leader failed");
                Err(busy("the leader did not answer"))
            }
        }
    }
}

/// Headers of one connection, not passed on by a proxy.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-authenticate" | "proxy-authorization" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_carry_their_url() {
        let h = holder("http://10.0.0.5:8520/");
        assert_eq!(url_of(&h), Some("http://10.0.0.5:8520"));
        assert_ne!(holder("http://a"), holder("http://a"), "each incarnation is its own holder");
        assert_eq!(url_of("no-url"), None);
    }

    #[test]
    fn connection_headers_are_not_forwarded() {
        assert!(hop_by_hop("transfer-encoding") && hop_by_hop("connection"));
        assert!(!hop_by_hop("host") && !hop_by_hop("authorization") && !hop_by_hop("content-length"));
    }
}
