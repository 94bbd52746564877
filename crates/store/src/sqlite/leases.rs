//! Named leases in the `leases` table: one row per name, kept after a
//! release so the fencing token only ever grows.

use super::{sql, Sqlite};
use crate::backend::Lease;
use rusqlite::{params, Connection, OptionalExtension};
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

/// The row of a lease: (holder, token, expires).
fn row(conn: &Connection, name: &str) -> Result<Option<(Option<String>, i64, i64)>, Error> {
    conn.prepare_cached("SELECT holder, token, expires FROM leases WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(sql)
}

impl Sqlite {
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
        self.write(move |conn| {
            let token = match row(conn, &name)? {
                // Held by someone else and not expired yet.
                Some((Some(h), _, e)) if e > now_ms && h != holder => return Ok(None),
                // Already ours: extended, same token.
                Some((Some(_), token, e)) if e > now_ms => token,
                // Free or expired: a new grant.
                Some((_, token, _)) => token + 1,
                None => 1,
            };
            conn.prepare_cached(
                "INSERT INTO leases (name, holder, token, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires = excluded.expires",
            )
            .and_then(|mut s| s.execute(params![name, holder, token, expires]))
            .map_err(sql)?;
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
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE leases SET expires = ?4 WHERE name = ?1 AND holder = ?2 AND token = ?3 AND expires > ?5")
                .and_then(|mut s| s.execute(params![name, holder, token, expires, now_ms]))
                .map_err(sql)?;
            Ok((n == 1).then(|| lease(&name, &holder, token, expires)))
        })
        .await
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str, token: u64) -> Result<bool, Error> {
        check_names(name, holder)?;
        let (name, holder) = (name.to_string(), holder.to_string());
        let token = i64::try_from(token).unwrap_or(-1);
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE leases SET holder = NULL, expires = 0 WHERE name = ?1 AND holder = ?2 AND token = ?3")
                .and_then(|mut s| s.execute(params![name, holder, token]))
                .map_err(sql)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn current_lease(&self, name: &str) -> Result<Option<Lease>, Error> {
        let name = name.to_string();
        let row = self.read(move |conn| row(conn, &name).map(|r| (name, r))).await?;
        let (name, row) = row;
        Ok(row.and_then(|(holder, token, expires)| holder.map(|h| lease(&name, &h, token, expires))))
    }
}
