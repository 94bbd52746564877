//! `GET /poolusagemetrics`: the core-hours each pool's nodes were allocated,
//! per hour, from what the control plane records (`control::usage`,
//! `store::usage`).

use crate::http::{Ctx, Reply};
use crate::render::{self, apply_select, list_options};
use crate::state::App;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use store::usage::INTERVAL_SECS;
use wire::time::{format_datetime, parse_datetime};
use wire::{Error, ErrorCode};

fn bad_time(name: &str) -> Error {
    Error::new(ErrorCode::InvalidQueryParameterValue)
        .with("QueryParameterName", name)
        .with("Reason", "The value must be a date-time (ISO 8601, e.g. 2026-01-01T00:00:00Z).")
}

/// A time query parameter, if given.
fn time(ctx: &Ctx, name: &str) -> Result<Option<DateTime<Utc>>, Error> {
    ctx.q(name).map(|v| parse_datetime(v.trim()).ok_or_else(|| bad_time(name))).transpose()
}

/// The paging key of an entry: by hour, then pool id (the store's order).
fn key(start: i64, pool: &str) -> String {
    format!("{start:020}:{pool}")
}

/// The entries whose hour starts at or after `starttime`'s hour and before
/// `endtime`. Without either, as the service documents, only the last
/// interval that has usage; with `starttime` alone, every interval from
/// there on. Intervals are hours; the current one is included as far as it
/// has gone (what the nodes used is recorded first).
pub async fn list(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let opts = list_options(ctx)?;
    let (start, end) = (time(ctx, "starttime")?, time(ctx, "endtime")?);
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(Error::new(ErrorCode::InvalidQueryParameterValue)
                .with("QueryParameterName", "endtime")
                .with("Reason", "endtime must not be before starttime."));
        }
    }
    app.cluster.record_usage(Utc::now()).await?;
    let from = match start {
        Some(s) => s.timestamp().div_euclid(INTERVAL_SECS) * INTERVAL_SECS,
        None => match app.store.latest_pool_usage().await? {
            Some(latest) => latest,
            None => return Ok(Reply::json(200, render::list(ctx, "poolusagemetrics", Vec::new(), None))),
        },
    };
    let to = match (start, end) {
        // Buckets that start before `endtime` (a bucket starting exactly at
        // it is after it).
        (_, Some(e)) => e.timestamp() + i64::from(e.timestamp_subsec_nanos() > 0),
        (Some(_), None) => i64::MAX,
        (None, None) => from + INTERVAL_SECS,
    };
    let rows = if from < to { app.store.pool_usage(from, to).await? } else { Vec::new() };
    let after = opts.after.clone().unwrap_or_default();
    let mut items: Vec<(String, Map<String, Value>)> = Vec::new();
    for r in rows {
        let k = key(r.start, &r.pool_id);
        if k.as_str() <= after.as_str() {
            continue;
        }
        let at = |secs: i64| DateTime::from_timestamp(secs, 0).map(|t| format_datetime(&t)).unwrap_or_default();
        let m = json!({
            "poolId": r.pool_id,
            "startTime": at(r.start),
            "endTime": at(r.start + INTERVAL_SECS),
            "vmSize": r.vm_size,
            // As the service reports them: a few decimals.
            "totalCoreHours": (r.core_hours * 1e6).round() / 1e6,
        });
        let Value::Object(m) = m else { continue };
        if opts.filter.as_ref().is_none_or(|(_, f)| render::matches(f, &m)) {
            items.push((k, m));
        }
    }
    let limit = opts.limit();
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(k, _)| opts.next_link(ctx, k))
    } else {
        None
    };
    let select = opts.select.as_ref().map(|s| s.1.as_slice());
    let values = items
        .into_iter()
        .map(|(_, mut m)| {
            apply_select(&mut m, select);
            Value::Object(m)
        })
        .collect();
    Ok(Reply::json(200, render::list(ctx, "poolusagemetrics", values, next)))
}
