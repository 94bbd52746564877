//! Pool usage through the `Store` over SQLite and PostgreSQL: additions to
//! one (hour, pool) bucket sum, the range is by the hour's start, and what
//! was added survives a reopen.

mod common;
use common::Db;
use store::usage::PoolUsage;

const H: i64 = 3600;
const T0: i64 = 1_800_000_000 / H * H;

fn u(pool: &str, start: i64, vm: &str, core_hours: f64) -> PoolUsage {
    PoolUsage { pool_id: pool.into(), start, vm_size: vm.into(), core_hours }
}

async fn usage_sums_per_pool_and_hour(db: Db) {
    let s = db.open().await;
    assert_eq!(s.latest_pool_usage().await.unwrap(), None);
    assert_eq!(s.pool_usage(0, i64::MAX).await.unwrap(), vec![]);
    s.add_pool_usage(vec![u("b", T0, "small", 0.25), u("a", T0, "small", 0.5), u("a", T0 + H, "small", 1.0)]).await.unwrap();
    s.add_pool_usage(vec![u("a", T0, "large", 0.125)]).await.unwrap();
    s.add_pool_usage(vec![]).await.unwrap();
    let all = s.pool_usage(T0, T0 + 2 * H).await.unwrap();
    assert_eq!(all, vec![u("a", T0, "large", 0.625), u("b", T0, "small", 0.25), u("a", T0 + H, "small", 1.0)]);
    // [from, to): by the hour's start.
    assert_eq!(s.pool_usage(T0 + H, T0 + 2 * H).await.unwrap(), vec![u("a", T0 + H, "small", 1.0)]);
    assert_eq!(s.pool_usage(T0 + 1, T0 + H).await.unwrap(), vec![]);
    assert_eq!(s.latest_pool_usage().await.unwrap(), Some(T0 + H));
    // A bucket must start on the hour.
    assert!(s.add_pool_usage(vec![u("a", T0 + 5, "small", 1.0)]).await.is_err());
    assert!(s.add_pool_usage(vec![u("a", T0, "small", f64::NAN)]).await.is_err());
    drop(s);
    let s = db.open().await;
    assert_eq!(s.pool_usage(T0, T0 + 2 * H).await.unwrap(), all, "kept across a reopen");
}

both!(usage_sums_per_pool_and_hour);
