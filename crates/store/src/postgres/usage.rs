//! Pool usage in the `pool_usage` table (see [`crate::usage`]).

use super::Postgres;
use crate::backend::{Durability, PoolUsage};
use wire::Error;

impl Postgres {
    pub(crate) async fn add_pool_usage(&self, usage: Vec<PoolUsage>) -> Result<(), Error> {
        self.submit(
            move |c| {
                for u in &usage {
                    c.execute(
                        "INSERT INTO pool_usage (hour, pool, vm_size, core_hours) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (hour, pool) DO UPDATE SET
                           core_hours = pool_usage.core_hours + excluded.core_hours, vm_size = excluded.vm_size",
                        &[&u.start, &u.pool_id, &u.vm_size, &u.core_hours],
                    )?;
                }
                Ok(())
            },
            Durability::Relaxed,
        )
        .await
    }

    pub(crate) async fn pool_usage(&self, from: i64, to: i64) -> Result<Vec<PoolUsage>, Error> {
        let rows = self
            .query(
                "SELECT pool, hour, vm_size, core_hours FROM pool_usage WHERE hour >= $1 AND hour < $2 ORDER BY hour, pool",
                &[&from, &to],
            )
            .await?;
        Ok(rows.iter().map(|r| PoolUsage { pool_id: r.get(0), start: r.get(1), vm_size: r.get(2), core_hours: r.get(3) }).collect())
    }

    pub(crate) async fn latest_pool_usage(&self) -> Result<Option<i64>, Error> {
        let rows = self.query("SELECT max(hour) FROM pool_usage", &[]).await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<i64>>(0)))
    }
}
