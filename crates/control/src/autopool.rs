//! Auto pools: a pool the service creates for a job whose `poolInfo` has an
//! `autoPoolSpecification`, and deletes when the pool's lifetime ends.
//!
//! - `poolLifetimeOption: job`: each job gets its own pool, created with
//!   the job (before it is stored: a job is never without its pool) and
//!   deleted when the job completes or is deleted.
//! - `poolLifetimeOption: jobschedule`: the jobs of one job schedule share a
//!   pool, created with the schedule's first job and deleted when the
//!   schedule completes or is deleted. Its id is derived from the schedule
//!   (id and creation time), so every job of the schedule finds it without
//!   another record.
//! - `keepAlive: true`: the pool stays when its lifetime ends.
//!
//! The job's `executionInfo.poolId` names the pool (the store schedules the
//! job's tasks on it); `poolInfo` stays as the client sent it. Creating a
//! pool is the API's business (validation, defaults, the first autoscale
//! evaluation): the API gives the control plane a [`PoolMaker`] at start.

use crate::cluster::Cluster;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wire::models::CloudJob;
use wire::{Error, ErrorCode};

pub use crate::pool::PoolMaker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    Job,
    JobSchedule,
}

/// A job's `autoPoolSpecification`, checked.
#[derive(Debug, Clone)]
pub struct AutoPool {
    pub prefix: Option<String>,
    pub lifetime: Lifetime,
    pub keep_alive: bool,
    /// The `PoolSpecification`.
    pub pool: Value,
}

const SPEC: &str = "poolInfo.autoPoolSpecification";

/// Checks an `autoPoolSpecification` (the pool itself is checked when it is
/// created, as a pool add is).
pub fn parse(spec: &Value) -> Result<AutoPool, Error> {
    let Some(m) = spec.as_object() else { return Err(Error::invalid_property(SPEC, "The value must be an object.")) };
    let lifetime = match m.get("poolLifetimeOption").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
        Some("job") => Lifetime::Job,
        Some("jobschedule") => Lifetime::JobSchedule,
        Some(_) => {
            return Err(Error::invalid_property(&format!("{SPEC}.poolLifetimeOption"), "The value must be job or jobSchedule."));
        }
        None => return Err(Error::new(ErrorCode::MissingRequiredProperty).with("PropertyName", format!("{SPEC}.poolLifetimeOption"))),
    };
    let prefix = match m.get("autoPoolIdPrefix") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.len() <= 20 && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
            Some(p.clone()).filter(|p| !p.is_empty())
        }
        Some(_) => {
            return Err(Error::invalid_property(
                &format!("{SPEC}.autoPoolIdPrefix"),
                "The prefix may have up to 20 letters, digits, hyphens and underscores.",
            ))
        }
    };
    let keep_alive = match m.get("keepAlive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::invalid_property(&format!("{SPEC}.keepAlive"), "The value must be a boolean.")),
    };
    let pool = match m.get("pool") {
        Some(p @ Value::Object(_)) => p.clone(),
        None | Some(Value::Null) => return Err(Error::new(ErrorCode::MissingRequiredProperty).with("PropertyName", format!("{SPEC}.pool"))),
        Some(_) => return Err(Error::invalid_property(&format!("{SPEC}.pool"), "The value must be an object.")),
    };
    Ok(AutoPool { prefix, lifetime, keep_alive, pool })
}

/// The job's auto pool, if it has one.
pub fn of(job: &CloudJob) -> Option<AutoPool> {
    job.pool_info.auto_pool_specification.as_ref().and_then(|s| parse(s).ok())
}

fn with_prefix(prefix: Option<&str>, guid: String) -> String {
    match prefix {
        Some(p) => format!("{p}_{guid}"),
        None => guid,
    }
}

/// A new pool's id for one job: the prefix and a random GUID.
pub fn job_pool_id(prefix: Option<&str>) -> String {
    with_prefix(prefix, uuid::Uuid::new_v4().hyphenated().to_string().to_ascii_uppercase())
}

/// The pool the jobs of a schedule share: the prefix and a GUID derived
/// from the schedule's id and creation time (a schedule deleted and created
/// again under the same id gets another pool).
pub fn schedule_pool_id(prefix: Option<&str>, schedule_id: &str, created: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{created}", store::key_of(schedule_id)).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    with_prefix(prefix, uuid::Builder::from_bytes(bytes).into_uuid().hyphenated().to_string().to_ascii_uppercase())
}

impl Cluster {
    /// The API's way of creating pools, given once at start.
    pub fn set_pool_maker(&self, maker: PoolMaker) {
        let _ = self.pool_maker.set(maker);
    }

    /// Creates the pool a job about to be stored runs on (its
    /// `executionInfo.poolId`). A schedule's shared pool may exist already.
    pub(crate) async fn make_auto_pool(&self, job: &CloudJob, auto: &AutoPool) -> Result<(), Error> {
        let Some(id) = job.execution_info.pool_id.clone() else { return Err(Error::internal("an auto pool job has no pool id")) };
        let Some(maker) = self.pool_maker.get() else {
            return Err(Error::new(ErrorCode::NotImplemented).with("Reason", "this server cannot create auto pools"));
        };
        match maker(id.clone(), auto.pool.clone()).await {
            Ok(()) => {
                tracing::info!(pool = %id, job = %job.id, "created an auto pool");
                Ok(())
            }
            Err(e) if e.code == ErrorCode::PoolExists && auto.lifetime == Lifetime::JobSchedule => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A job's lifetime ended (it completed or is being deleted): its own
    /// auto pool goes, unless kept alive.
    pub async fn job_ended_auto_pool(&self, job: &CloudJob) {
        let Some(auto) = of(job) else { return };
        if auto.lifetime != Lifetime::Job || auto.keep_alive {
            return;
        }
        if let Some(pool) = &job.execution_info.pool_id {
            self.delete_auto_pool(pool).await;
        }
    }

    /// A schedule's lifetime ended: the pool its jobs shared goes, unless kept alive.
    pub async fn schedule_ended_auto_pool(&self, schedule: &serde_json::Map<String, Value>) {
        let spec = schedule.get("jobSpecification").and_then(|s| s.get("poolInfo")).and_then(|p| p.get("autoPoolSpecification"));
        let Some(auto) = spec.and_then(|s| parse(s).ok()) else { return };
        if auto.lifetime != Lifetime::JobSchedule || auto.keep_alive {
            return;
        }
        let id = schedule.get("id").and_then(Value::as_str).unwrap_or_default();
        let created = schedule.get("creationTime").and_then(Value::as_str).unwrap_or_default();
        self.delete_auto_pool(&schedule_pool_id(auto.prefix.as_deref(), id, created)).await;
    }

    /// Deletes a pool as `DELETE /pools/{id}` does (its nodes leave, then it goes).
    async fn delete_auto_pool(&self, id: &str) {
        let r = self
            .store
            .update_pool(id, Default::default(), |doc, now| {
                if doc.get("state").and_then(Value::as_str) != Some("deleting") {
                    doc.insert("state".into(), json!("deleting"));
                    doc.insert("stateTransitionTime".into(), json!(now));
                }
                Ok(())
            })
            .await;
        match r {
            Ok(_) => {
                tracing::info!(pool = %id, "deleting an auto pool: its lifetime ended");
                self.reconcile.notify_one();
            }
            Err(e) if e.code == ErrorCode::PoolNotFound => {}
            Err(e) => tracing::warn!(pool = %id, error = %e, "cannot delete an auto pool"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let ok =
            parse(&json!({"poolLifetimeOption": "jobSchedule", "autoPoolIdPrefix": "ab-1", "keepAlive": true, "pool": {"vmSize": "x"}}))
                .unwrap();
        assert_eq!((ok.lifetime, ok.keep_alive, ok.prefix.as_deref()), (Lifetime::JobSchedule, true, Some("ab-1")));
        for bad in [
            json!({"pool": {"vmSize": "x"}}),
            json!({"poolLifetimeOption": "forever", "pool": {}}),
            json!({"poolLifetimeOption": "job"}),
            json!({"poolLifetimeOption": "job", "pool": {}, "autoPoolIdPrefix": "x".repeat(21)}),
            json!({"poolLifetimeOption": "job", "pool": {}, "keepAlive": "yes"}),
            json!([]),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids() {
        let a = job_pool_id(Some("pre"));
        assert!(a.starts_with("pre_") && a.len() == 4 + 36, "{a}");
        assert_ne!(a, job_pool_id(Some("pre")));
        let s = schedule_pool_id(None, "Sched", "2026-01-01T00:00:00Z");
        assert_eq!(s, schedule_pool_id(None, "sched", "2026-01-01T00:00:00Z"), "ids are case-insensitive");
        assert_ne!(s, schedule_pool_id(None, "sched", "2026-01-02T00:00:00Z"));
        assert_eq!(s.len(), 36);
    }
}
