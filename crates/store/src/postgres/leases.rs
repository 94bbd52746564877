//! Named leases in the `leases` table: one row per name, kept after a
//! release so the fencing token only ever grows. The row is read `FOR
//! UPDATE` inside the writer's transaction, so two servers sharing the
//! database cannot both be granted it.

use super::writer::PgConn;
use super::Postgres;
use crate::backend::Lease;
use wire::time::Timestamp;
use wire::Error;

/// Milliseconds since the Unix epoch.
fn millis(t: Timestamp) -> i64 {
    t.0.timestamp_millis()
}

/// `now + ttl` in milliseconds, saturating.
fn until(now: Timestamp, ttl: std::time::Duration) -> i64 {
    millis(now).saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

fn lease(name: &str, holder: &str, token: i64, expires: i64) -> Lease {
    let expires = chrono::DateTime::from_timestamp_millis(expires)
        .map(Timestamp)
        .unwrap_or_else(|| Timestamp(chrono::DateTime::<chrono::Utc>::MAX_UTC));
    Lease { name: name.to_string(), holder: holder.to_string(), token: token.max(0) as u64, expires }
}

fn check_names(name: &str, holder: &str) -> Result<(), Error> {
    if name.is_empty() || holder.is_empty() {
        return Err(Error::internal("a lease needs a name and a holder"));
    }
    Ok(())
}

/// The row of a lease, locked: (holder, token, expires).
fn row(c: &mut PgConn, name: &str) -> Result<Option<(Option<String>, i64, i64)>, Error> {
    Ok(c.query_opt("SELECT holder, token, expires FROM leases WHERE name = $1 FOR UPDATE", &[&name])?
        .map(|r| (r.get(0), r.get(1), r.get(2))))
}

impl Postgres {
    pub(crate) async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, Error> {
        check_names(name, holder)?;
        let (name, holder) = (name.to_string(), holder.to_string());
        let (now_ms, expires) = (millis(now), until(now, ttl));
        self.write_unfenced(move |c| {
            // A first grant races another server's: the row is created (or
            // found) before it is locked and read.
            c.execute("INSERT INTO leases (name, holder, token, expires) VALUES ($1, NULL, 0, 0) ON CONFLICT (name) DO NOTHING", &[&name])?;
            let token = match row(c, &name)? {
                // Held by someone else and not expired yet.
                Some((Some(h), _, e)) if e > now_ms && h != holder => return Ok(None),
                // Already ours: extended, same token.
                Some((Some(_), token, e)) if e > now_ms => token,
                // Free or expired: a new grant.
                Some((_, token, _)) => token + 1,
                None => 1,
            };
            c.execute("UPDATE leases SET holder = $2, token = $3, expires = $4 WHERE name = $1", &[&name, &holder, &token, &expires])?;
            Ok(Some(lease(&name, &holder, token, expires)))
        })
        .await
    }

    pub(crate) async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        token: u64,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>, Error> {
        check_names(name, holder)?;
        let (name, holder) = (name.to_string(), holder.to_string());
        let (now_ms, expires) = (millis(now), until(now, ttl));
        let token = i64::try_from(token).unwrap_or(-1);
        self.write_unfenced(move |c| {
            let n = c.execute(
                "UPDATE leases SET expires = $4 WHERE name = $1 AND holder = $2 AND token = $3 AND expires > $5",
                &[&name, &holder, &token, &expires, &now_ms],
            )?;
            Ok((n == 1).then(|| lease(&name, &holder, token, expires)))
        })
        .await
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str, token: u64) -> Result<bool, Error> {
        check_names(name, holder)?;
        let (name, holder) = (name.to_string(), holder.to_string());
        let token = i64::try_from(token).unwrap_or(-1);
        self.write_unfenced(move |c| {
            let n = c.execute(
                "UPDATE leases SET holder = NULL, expires = 0 WHERE name = $1 AND holder = $2 AND token = $3",
                &[&name, &holder, &token],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn current_lease(&self, name: &str) -> Result<Option<Lease>, Error> {
        let row = self.query_opt("SELECT holder, token, expires FROM leases WHERE name = $1", &[&name]).await?;
        Ok(row.and_then(|r| {
            let holder: Option<String> = r.get(0);
            holder.map(|h| lease(name, &h, r.get(1), r.get(2)))
        }))
    }
}
