//! `GET /lifetimejobstats` and `GET /lifetimepoolstats` (api-versions up to
//! 2022-10-01.16.0): the account's statistics over its lifetime.
//!
//! Job statistics add up the jobs the store holds (a deleted job's tasks
//! leave with it); pool statistics add up the core-time the control plane
//! records for every pool, deleted ones included (`store::usage`). The
//! resource figures of pools (CPU, memory, disk and network averages) are
//! not recorded over time, so they are 0.

use crate::http::{Ctx, Reply};
use crate::state::App;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use store::ListQuery;
use wire::models::{CloudJob, JobStatistics};
use wire::time::{format_datetime, Duration, Timestamp};
use wire::Error;

fn with_metadata(ctx: &Ctx, kind: &str, v: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("odata.metadata".into(), json!(format!("{}/$metadata#{kind}/@Element", ctx.base_url)));
    if let Value::Object(o) = v {
        m.extend(o);
    }
    Value::Object(m)
}

/// Every job's statistics, added up.
pub async fn jobs(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let now = Timestamp::now();
    let mut s = JobStatistics {
        url: format!("{}/lifetimejobstats", ctx.base_url),
        start_time: now,
        last_update_time: now,
        user_cpu_time: Duration::ZERO,
        kernel_cpu_time: Duration::ZERO,
        wall_clock_time: Duration::ZERO,
        read_iops: 0,
        write_iops: 0,
        read_io_gib: 0.0,
        write_io_gib: 0.0,
        num_succeeded_tasks: 0,
        num_failed_tasks: 0,
        num_task_retries: 0,
        wait_time: Duration::ZERO,
    };
    let add = |a: Duration, b: Duration| Duration(a.0.saturating_add(b.0));
    let mut after = None;
    loop {
        let page = app.store.list_jobs(ListQuery { filter: None, after, limit: 1000 }).await?;
        for doc in &page.docs {
            let job: CloudJob = serde_json::from_str(doc).map_err(Error::internal)?;
            s.start_time = s.start_time.min(job.creation_time);
            let (counts, retries) = app.store.task_counts(&job.id).await?;
            s.num_succeeded_tasks += counts.task_counts.succeeded;
            s.num_failed_tasks += counts.task_counts.failed;
            s.num_task_retries += retries;
            if let Some(t) = app.store.job_task_stats(&job.id).await? {
                s.user_cpu_time = add(s.user_cpu_time, t.user_cpu_time);
                s.kernel_cpu_time = add(s.kernel_cpu_time, t.kernel_cpu_time);
                s.wall_clock_time = add(s.wall_clock_time, t.wall_clock_time);
                s.wait_time = add(s.wait_time, t.wait_time);
                s.read_iops += t.read_iops;
                s.write_iops += t.write_iops;
                s.read_io_gib += t.read_io_gib;
                s.write_io_gib += t.write_io_gib;
            }
        }
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    let v = serde_json::to_value(s).map_err(Error::internal)?;
    Ok(Reply::json(200, with_metadata(ctx, "lifetimejobstats", v).to_string()))
}

/// Every pool's core-time (`usageStats.dedicatedCoreTime`), from the hours
/// the server recorded; resource statistics are not recorded (0).
pub async fn pools(app: &App, ctx: &Ctx) -> Result<Reply, Error> {
    let now = Utc::now();
    app.cluster.record_usage(now).await?;
    let rows = app.store.pool_usage(i64::MIN, i64::MAX).await?;
    let first = rows.iter().map(|r| r.start).min();
    let start = first.and_then(|s| DateTime::from_timestamp(s, 0)).unwrap_or(now);
    let core_hours: f64 = rows.iter().map(|r| r.core_hours).sum();
    let core_time = Duration::from_std(std::time::Duration::from_secs_f64((core_hours * 3600.0).max(0.0)));
    let (start, now) = (format_datetime(&start), format_datetime(&now));
    let v = json!({
        "url": format!("{}/lifetimepoolstats", ctx.base_url),
        "startTime": start,
        "lastUpdateTime": now,
        "usageStats": {"startTime": start, "lastUpdateTime": now, "dedicatedCoreTime": core_time},
        "resourceStats": {
            "startTime": start, "lastUpdateTime": now,
            "avgCPUPercentage": 0.0, "avgMemoryGiB": 0.0, "peakMemoryGiB": 0.0, "avgDiskGiB": 0.0, "peakDiskGiB": 0.0,
            "diskReadIOps": 0, "diskWriteIOps": 0, "diskReadGiB": 0.0, "diskWriteGiB": 0.0,
            "networkReadGiB": 0.0, "networkWriteGiB": 0.0,
        },
    });
    Ok(Reply::json(200, with_metadata(ctx, "lifetimepoolstats", v).to_string()))
}
