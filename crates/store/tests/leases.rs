//! Leases through the `Store` over SQLite and PostgreSQL: exclusive while held, taken over
//! with a higher fencing token once expired or released, renewed only by
//! their holder, and tokens that never repeat across a reopen.

use std::time::Duration;

mod common;
use common::Db;
use wire::time::Timestamp;

const TTL: Duration = Duration::from_secs(10);

fn at(secs: i64) -> Timestamp {
    Timestamp(chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap())
}

async fn a_held_lease_is_exclusive_and_its_holder_extends_it(db: Db) {
    let s = db.open().await;
    let a = s.acquire_lease("leader", "a", TTL, at(0)).await.unwrap().expect("a free lease is granted");
    assert_eq!((a.name.as_str(), a.holder.as_str(), a.token), ("leader", "a", 1));
    assert_eq!(a.expires, at(10));

    // Another holder cannot take it while it is held, up to the last moment.
    assert_eq!(s.acquire_lease("leader", "b", TTL, at(0)).await.unwrap(), None);
    assert_eq!(s.acquire_lease("leader", "b", TTL, at(9)).await.unwrap(), None);

    // Its holder acquiring again extends it and keeps the token.
    let again = s.acquire_lease("leader", "a", TTL, at(5)).await.unwrap().unwrap();
    assert_eq!((again.token, again.expires), (1, at(15)));
    assert_eq!(s.acquire_lease("leader", "b", TTL, at(12)).await.unwrap(), None, "the extension holds b off");

    // Leases of other names are independent.
    let other = s.acquire_lease("sweeper", "b", TTL, at(0)).await.unwrap().unwrap();
    assert_eq!(other.token, 1);
}

async fn an_expired_lease_passes_on_with_a_higher_token_and_the_old_holder_loses_it(db: Db) {
    let s = db.open().await;
    let a = s.acquire_lease("leader", "a", TTL, at(0)).await.unwrap().unwrap();
    // Expired at exactly `expires`.
    let b = s.acquire_lease("leader", "b", TTL, at(10)).await.unwrap().expect("an expired lease is granted");
    assert_eq!(b.holder, "b");
    assert!(b.token > a.token, "{} > {}", b.token, a.token);
    assert_eq!(b.expires, at(20));

    // The old holder can neither renew nor release it, nor take it back.
    assert_eq!(s.renew_lease(&a, TTL, at(11)).await.unwrap(), None);
    assert!(!s.release_lease(&a).await.unwrap());
    assert_eq!(s.acquire_lease("leader", "a", TTL, at(11)).await.unwrap(), None);
    // b still holds it, untouched by a's attempts.
    let renewed = s.renew_lease(&b, TTL, at(12)).await.unwrap().expect("b renews");
    assert_eq!((renewed.token, renewed.expires), (b.token, at(22)));
}

async fn only_the_holder_renews_and_not_after_expiry(db: Db) {
    let s = db.open().await;
    let a = s.acquire_lease("leader", "a", TTL, at(0)).await.unwrap().unwrap();
    let mut impostor = a.clone();
    impostor.holder = "b".into();
    assert_eq!(s.renew_lease(&impostor, TTL, at(1)).await.unwrap(), None, "another holder with the same token");
    let mut stale = a.clone();
    stale.token += 1;
    assert_eq!(s.renew_lease(&stale, TTL, at(1)).await.unwrap(), None, "the holder with a token it was not given");
    assert!(!s.release_lease(&impostor).await.unwrap());

    let r = s.renew_lease(&a, TTL, at(8)).await.unwrap().expect("the holder renews");
    assert_eq!(r.expires, at(18));
    // Renewed: b is still held off after the first term would have ended.
    assert_eq!(s.acquire_lease("leader", "b", TTL, at(15)).await.unwrap(), None);
    // Once expired it cannot be renewed, even by its holder.
    assert_eq!(s.renew_lease(&a, TTL, at(18)).await.unwrap(), None);
    // But the holder may acquire it afresh, with a new token.
    let fresh = s.acquire_lease("leader", "a", TTL, at(19)).await.unwrap().unwrap();
    assert!(fresh.token > a.token);
}

async fn a_released_lease_is_free_at_once_and_tokens_never_repeat(db: Db) {
    let last = {
        let s = db.open().await;
        let a = s.acquire_lease("leader", "a", TTL, at(0)).await.unwrap().unwrap();
        assert!(s.release_lease(&a).await.unwrap());
        assert!(!s.release_lease(&a).await.unwrap(), "released once");
        assert_eq!(s.renew_lease(&a, TTL, at(1)).await.unwrap(), None, "a released lease is not renewed");
        let b = s.acquire_lease("leader", "b", TTL, at(1)).await.unwrap().expect("free after the release");
        assert!(b.token > a.token);
        assert!(s.release_lease(&b).await.unwrap());
        b.token
    };
    // Across a reopen the next grant is still higher.
    let s = db.open().await;
    let c = s.acquire_lease("leader", "c", TTL, at(2)).await.unwrap().unwrap();
    assert!(c.token > last, "{} > {last}", c.token);
}

async fn a_lease_needs_a_name_and_a_holder(db: Db) {
    let s = db.open().await;
    assert!(s.acquire_lease("", "a", TTL, at(0)).await.is_err());
    assert!(s.acquire_lease("leader", "", TTL, at(0)).await.is_err());
    // Nothing was granted by the refused calls.
    assert_eq!(s.acquire_lease("leader", "a", TTL, at(0)).await.unwrap().unwrap().token, 1);
}

async fn concurrent_acquirers_get_one_grant(db: Db) {
    let s = db.open().await;
    let mut handles = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        handles.push(tokio::spawn(async move { s.acquire_lease("leader", &format!("h{i}"), TTL, at(0)).await.unwrap() }));
    }
    let mut granted = Vec::new();
    for h in handles {
        if let Some(l) = h.await.unwrap() {
            granted.push(l);
        }
    }
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0].token, 1);
}

both!(a_held_lease_is_exclusive_and_its_holder_extends_it);
both!(an_expired_lease_passes_on_with_a_higher_token_and_the_old_holder_loses_it);
both!(only_the_holder_renews_and_not_after_expiry);
both!(a_released_lease_is_free_at_once_and_tokens_never_repeat);
both!(a_lease_needs_a_name_and_a_holder);
both!(concurrent_acquirers_get_one_grant);

async fn the_current_lease_names_its_holder(db: Db) {
    let s = db.open().await;
    assert_eq!(s.current_lease("leader").await.unwrap(), None, "never granted");
    let a = s.acquire_lease("leader", "a http://a", TTL, at(0)).await.unwrap().unwrap();
    assert_eq!(s.current_lease("leader").await.unwrap(), Some(a.clone()));
    assert!(s.release_lease(&a).await.unwrap());
    assert_eq!(s.current_lease("leader").await.unwrap(), None, "released");
}

both!(the_current_lease_names_its_holder);

fn pool(id: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({"id": id, "vmSize": "small"}).as_object().unwrap().clone()
}

/// Two servers on one PostgreSQL database: the first's writes are fenced by
/// the lease it holds; once the second takes the lease over, the first's
/// next write is refused in its own transaction (503 ServerBusy) and
/// changes nothing, while the new holder's go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_leaders_writes_are_refused_by_the_fencing_token() {
    let Some(db) = common::postgres().await else { return };
    let fence = store::Fence::new("leader", "a http://a");
    let a = db.open().await.with_fence(fence.clone()).unwrap();
    let b = db.open().await;
    // Not granted yet: nothing is written.
    let e = a.create_pool("p0", pool("p0")).await.unwrap_err();
    assert_eq!((e.status(), e.code), (503, wire::ErrorCode::ServerBusy));
    assert!(!a.acting());

    let now = Timestamp::now();
    let lease = a.acquire_lease("leader", "a http://a", Duration::from_secs(2), now).await.unwrap().unwrap();
    fence.grant(lease.token, std::time::Instant::now() + Duration::from_secs(60));
    assert!(a.acting());
    a.create_pool("p1", pool("p1")).await.expect("the holder writes");

    // b takes the expired lease over (its clock says 3 s later); a still
    // believes it leads (its own deadline has not passed).
    let later = Timestamp(now.0 + chrono::Duration::seconds(3));
    let taken = b.acquire_lease("leader", "b http://b", Duration::from_secs(10), later).await.unwrap().expect("expired: b takes it");
    assert!(taken.token > lease.token);
    assert!(a.acting(), "a's own clock has not run out");
    let e = a.create_pool("p2", pool("p2")).await.unwrap_err();
    assert_eq!((e.status(), e.code), (503, wire::ErrorCode::ServerBusy));
    assert!(b.get_pool("p2").await.is_err(), "the refused write left nothing");
    assert!(!a.acting(), "a refused write revokes the fence");
    // The lease operations are not fenced; b's writes are not refused.
    b.create_pool("p3", pool("p3")).await.expect("the new holder writes");
    assert_eq!(a.current_lease("leader").await.unwrap().map(|l| l.holder), Some("b http://b".to_string()));
}

/// A fence needs a store several servers can share.
#[tokio::test]
async fn sqlite_cannot_be_fenced() {
    let db = common::sqlite();
    assert!(db.open().await.with_fence(store::Fence::new("leader", "a")).is_err());
}
