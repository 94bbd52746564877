//! Job rules that do not depend on the database: state changes and the
//! checks on a job's pool, run inside the transaction that changes the job.

use crate::backend::Txn;
use wire::enums::JobState;
use wire::models::CloudJob;
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

/// Moves a job to a new state, recording the previous one.
pub fn set_state(job: &mut CloudJob, state: JobState, now: Timestamp) {
    if job.state != state {
        job.previous_state = Some(job.state);
        job.previous_state_transition_time = Some(job.state_transition_time);
        job.state = state;
        job.state_transition_time = now;
    }
}

/// A job's pool must exist and not be on its way out (checked inside the
/// transaction that creates or changes the job).
pub fn check_pool(tx: &dyn Txn, pool_id: &str) -> Result<(), Error> {
    match tx.pool_state(pool_id)?.as_deref() {
        None => Err(Error::new(ErrorCode::PoolNotFound).with("PoolId", pool_id)),
        Some("deleting") => Err(Error::new(ErrorCode::PoolBeingDeleted).with("PoolId", pool_id)),
        Some(_) => Ok(()),
    }
}

/// A job may name a pool that does not exist yet (its tasks wait until a
/// pool of that id exists, as the service documents for `poolInfo.poolId`),
/// but not one on its way out.
pub fn check_pool_usable(tx: &dyn Txn, pool_id: &str) -> Result<(), Error> {
    match tx.pool_state(pool_id)?.as_deref() {
        Some("deleting") => Err(Error::new(ErrorCode::PoolBeingDeleted).with("PoolId", pool_id)),
        _ => Ok(()),
    }
}

/// The pool a job's tasks run on: `poolInfo.poolId`, or for a job with an
/// auto pool, the pool made for it (`executionInfo.poolId`).
pub fn pool_of(job: &CloudJob) -> Option<&str> {
    job.pool_info.pool_id.as_deref().or(job.execution_info.pool_id.as_deref())
}
