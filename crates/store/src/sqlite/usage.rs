//! Pool usage in the `pool_usage` table (see [`crate::usage`]).

use super::{sql, Sqlite};
use crate::backend::{Durability, PoolUsage};
use rusqlite::params;
use wire::Error;

impl Sqlite {
    pub(crate) async fn add_pool_usage(&self, usage: Vec<PoolUsage>) -> Result<(), Error> {
        self.submit(
            move |conn| {
                let mut s = conn
                    .prepare_cached(
                        "INSERT INTO pool_usage (hour, pool, vm_size, core_hours) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (hour, pool) DO UPDATE SET
                           core_hours = core_hours + excluded.core_hours, vm_size = excluded.vm_size",
                    )
                    .map_err(sql)?;
                for u in &usage {
                    s.execute(params![u.start, u.pool_id, u.vm_size, u.core_hours]).map_err(sql)?;
                }
                Ok(())
            },
            Durability::Relaxed,
        )
        .await
    }

    pub(crate) async fn pool_usage(&self, from: i64, to: i64) -> Result<Vec<PoolUsage>, Error> {
        self.read(move |conn| {
            let mut s = conn
                .prepare_cached("SELECT pool, hour, vm_size, core_hours FROM pool_usage WHERE hour >= ?1 AND hour < ?2 ORDER BY hour, pool")
                .map_err(sql)?;
            let rows = s
                .query_map(params![from, to], |r| {
                    Ok(PoolUsage { pool_id: r.get(0)?, start: r.get(1)?, vm_size: r.get(2)?, core_hours: r.get(3)? })
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })
        .await
    }

    pub(crate) async fn latest_pool_usage(&self) -> Result<Option<i64>, Error> {
        self.read(|conn| conn.query_row("SELECT max(hour) FROM pool_usage", [], |r| r.get(0)).map_err(sql)).await
    }
}
