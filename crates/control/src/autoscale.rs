//! Autoscale on pools: samples and the periodic evaluation of formulas.
//!
//! Every `autoscale_sample_interval` (`sample_pools`) each pool gets one
//! sample tick: its task counts from the store (`Store::pool_task_counts`)
//! and the resource figures its nodes' agents measured (`node_measured`,
//! from their heartbeats), kept in `state::autoscale`. A pool with
//! `enableAutoScale` has its formula evaluated when it is enabled and then
//! every `autoScaleEvaluationInterval` (`autoscale_due`, `autoscale_pool`):
//! the run is recorded in the pool's `autoScaleRun`, and the targets it
//! sets become the pool's, which the node provider's reconciliation then
//! follows, removing nodes as `$NodeDeallocationOption` says. Time is a
//! parameter of every entry point (`now`); the formula language is the
//! `autoscale` crate.

use crate::cluster::Cluster;
use crate::state::autoscale::PoolScale;
use ::autoscale::{DeallocationOption, Evaluation, EvaluationError, Formula, FormulaError, Inputs, Samples};
use chrono::{DateTime, Utc};
use proto::NodeUsage;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wire::enums::ComputeNodeState;
use wire::{Error, ErrorCode};

/// The evaluation interval of a pool that names none (the service's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The service's shortest evaluation interval (enforced with `--strict-limits`).
pub const SERVICE_MIN_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// openbatch's shortest evaluation interval by default, so that formulas
/// can be tried quickly.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// The longest evaluation interval (the service's: 168 hours).
pub const MAX_INTERVAL: Duration = Duration::from_secs(168 * 3600);
/// The most nodes a formula's target may ask for (as a resize may); more is
/// applied as this many.
pub const MAX_TARGET: u32 = 1000;
/// The member of the stored pool document (hidden from clients, as every
/// `_` member is) holding the `nodeDeallocationOption` of the latest
/// resize or evaluation: how the reconciliation removes nodes.
pub const DEALLOCATION_MEMBER: &str = "_nodeDeallocationOption";

/// Reads a formula as pool add, enable and evaluate do: a syntax error is
/// 400 `AutoScalingFormulaSyntaxError` whose `Message` value names the line
/// and column (`Line 1, Col 5: …`), as `AutoScaleRun.error` does; one over
/// the limits is 400 `AutoScalingFormulaTooLong`.
pub fn parse_formula(text: &str) -> Result<Formula, Error> {
    ::autoscale::parse(text).map_err(|e| formula_error(&e))
}

fn formula_error(e: &FormulaError) -> Error {
    let code = match e {
        FormulaError::Syntax { .. } => ErrorCode::AutoScalingFormulaSyntaxError,
        FormulaError::TooLong(_) => ErrorCode::AutoScalingFormulaTooLong,
    };
    let mut err = Error::new(code).with("Message", e.to_string());
    if let Some(p) = e.position() {
        err = err.with("Line", p.line.to_string()).with("Column", p.col.to_string());
    }
    err
}

/// The `autoScaleEvaluationInterval` of a request: an ISO 8601 duration
/// from 5 minutes (`strict`, the service's minimum) or 5 seconds (else) to
/// 168 hours; anything else is 400 `InvalidPropertyValue` naming it.
pub fn evaluation_interval(v: Option<&Value>, strict: bool) -> Result<Option<wire::time::Duration>, Error> {
    const NAME: &str = "autoScaleEvaluationInterval";
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let d = v
        .as_str()
        .and_then(wire::time::Duration::parse)
        .ok_or_else(|| Error::invalid_property(NAME, "The value must be an ISO 8601 duration such as PT15M."))?;
    let min = if strict { SERVICE_MIN_INTERVAL } else { MIN_INTERVAL };
    let ticks = |d: Duration| wire::time::Duration::from_std(d).ticks();
    if d.ticks() < ticks(min) || d.ticks() > ticks(MAX_INTERVAL) {
        let least = if strict { "5 minutes (PT5M)" } else { "5 seconds (PT5S; the service's minimum, 5 minutes, with --strict-limits)" };
        return Err(Error::invalid_property(NAME, format!("The value must be from {least} to 168 hours (PT168H).")));
    }
    Ok(Some(d))
}

/// A pool's evaluation interval as stored (the default when absent).
fn interval_of(doc: &Map<String, Value>) -> Duration {
    doc.get("autoScaleEvaluationInterval")
        .and_then(Value::as_str)
        .and_then(wire::time::Duration::parse)
        .map(|d| d.to_std())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// `AutoScaleRun` as the API shows it: `timestamp`, `results`, and `error`
/// (`code`, `message`, `values` as name/value pairs) when it failed.
pub fn run_json(e: &Evaluation, now: DateTime<Utc>) -> Value {
    let mut run = json!({"timestamp": wire::time::Timestamp(now), "results": e.results});
    if let Some(err) = &e.error {
        let values: Vec<Value> = err.values.iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
        run["error"] = json!({"code": err.code, "message": err.message, "values": values});
    }
    run
}

/// An evaluation that could not run: the stored formula does not parse.
fn failed(e: &FormulaError) -> Evaluation {
    let pos = e.position().unwrap_or_default();
    Evaluation {
        results: String::new(),
        variables: Vec::new(),
        targets: None,
        error: Some(EvaluationError {
            code: e.code(),
            message: ErrorCode::AutoScalingFormulaSyntaxError.default_message().to_string(),
            values: vec![("Message".into(), e.to_string())],
            line: pos.line,
            col: pos.col,
        }),
        stopped: false,
    }
}

fn is_enabled(doc: &Map<String, Value>) -> bool {
    doc.get("enableAutoScale").and_then(Value::as_bool) == Some(true) && doc.get("state").and_then(Value::as_str) != Some("deleting")
}

fn key(pool_id: &str) -> String {
    pool_id.to_ascii_lowercase()
}

impl Cluster {
    /// A node's agent reported what it measured (with its heartbeat).
    pub fn node_measured(&self, node_id: &str, usage: NodeUsage) {
        if let Some(n) = self.core().nodes.get_mut(node_id) {
            n.load = crate::state::node::NodeLoad::between(n.usage.as_ref(), &usage);
            n.usage = Some(usage);
        }
    }

    /// Each node's load, with its pool: (pool id, node id, load).
    pub fn node_loads(&self) -> Vec<(String, String, crate::state::node::NodeLoad)> {
        self.core().nodes.values().map(|n| (n.pool_id.clone(), n.id.clone(), n.load)).collect()
    }

    /// What each node of a pool last measured of itself (`None` for a node
    /// whose agent has not said yet), by node id.
    pub fn pool_usage(&self, pool_id: &str) -> Vec<(String, Option<NodeUsage>)> {
        self.core().nodes.values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| (n.id.clone(), n.usage)).collect()
    }

    /// Takes a sample of every pool at `now` (pools being deleted, and
    /// those gone, lose their history). Returns how many were sampled.
    pub async fn sample_pools(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let pools = self.store.pool_summaries().await?;
        let mut live = HashSet::new();
        for p in &pools {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
            if p.get("state").and_then(Value::as_str) == Some("deleting") {
                continue;
            }
            live.insert(key(id));
            if let Err(e) = self.sample_pool(id, now).await {
                tracing::warn!(pool = %id, error = %e, "cannot take the pool's autoscale sample");
            }
        }
        let mut core = self.core();
        core.autoscale.pools.retain(|k, _| live.contains(k));
        core.autoscale.enabled_at.retain(|k, _| live.contains(k));
        drop(core);
        Ok(live.len())
    }

    /// Takes one sample of a pool at `now` (none if it has one as late).
    pub async fn sample_pool(&self, pool_id: &str, now: DateTime<Utc>) -> Result<(), Error> {
        let counts = self.store.pool_task_counts(pool_id).await?;
        let period = self.config.autoscale_sample_interval;
        let mut guard = self.core();
        let core = &mut *guard;
        let of_pool =
            || core.nodes.values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id) && n.state != ComputeNodeState::LeavingPool);
        // A preempted node measures nothing (its machine is gone, on Azure).
        let nodes: Vec<(String, NodeUsage)> =
            of_pool().filter(|n| n.state != ComputeNodeState::Preempted).filter_map(|n| n.usage.map(|u| (n.id.clone(), u))).collect();
        let preempted = of_pool().filter(|n| n.state == ComputeNodeState::Preempted).count();
        core.autoscale.pools.entry(key(pool_id)).or_insert_with(|| PoolScale::new(period)).sample(now, counts, &nodes, preempted);
        Ok(())
    }

    /// How many samples a pool's history holds.
    /// The service's limit on `enableautoscale`, applied with
    /// `--strict-limits`: one call per pool every 30 seconds (503
    /// `TooManyEnableAutoScaleRequests` otherwise).
    pub fn check_enable_autoscale(&self, pool_id: &str, now: DateTime<Utc>) -> Result<(), Error> {
        if !self.config.strict_limits || self.core().autoscale.enable_allowed(&key(pool_id), now) {
            return Ok(());
        }
        Err(Error::new(ErrorCode::TooManyEnableAutoScaleRequests)
            .with("Reason", "autoscale can be enabled on a pool at most once every 30 seconds."))
    }

    pub fn sample_count(&self, pool_id: &str) -> usize {
        self.core().autoscale.pools.get(&key(pool_id)).map_or(0, |p| p.samples.len())
    }

    /// Evaluates `formula` for the pool `doc` (its stored document) at
    /// `now`, against its samples and nodes, without applying anything.
    pub fn evaluate_formula(&self, doc: &Map<String, Value>, formula: &Formula, now: DateTime<Utc>) -> Evaluation {
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
        let num = |k: &str| doc.get(k).and_then(Value::as_f64);
        let option = doc.get(DEALLOCATION_MEMBER).and_then(Value::as_str).and_then(DeallocationOption::parse).unwrap_or_default();
        let empty = Samples::with_period(self.config.autoscale_sample_interval);
        let core = self.core();
        let nodes: Vec<(ComputeNodeState, bool)> = core
            .nodes
            .values()
            .filter(|n| n.pool_id.eq_ignore_ascii_case(id) && n.state != ComputeNodeState::LeavingPool)
            .map(|n| (n.state, n.is_dedicated))
            .collect();
        let usable = nodes.iter().filter(|(s, _)| matches!(s, ComputeNodeState::Idle | ComputeNodeState::Running)).count();
        // Low-priority nodes include the preempted ones (as documented).
        let dedicated = nodes.iter().filter(|(_, d)| *d).count();
        let inputs = Inputs {
            samples: core.autoscale.pools.get(&key(id)).map_or(&empty, |p| &p.samples),
            current_dedicated_nodes: dedicated as f64,
            current_low_priority_nodes: (nodes.len() - dedicated) as f64,
            usable_node_count: usable as f64,
            task_slots_per_node: num("taskSlotsPerNode").unwrap_or(1.0),
            target_dedicated_nodes: num("targetDedicatedNodes").unwrap_or(0.0),
            target_low_priority_nodes: num("targetLowPriorityNodes").unwrap_or(0.0),
            node_deallocation_option: option,
            rand_seed: now.timestamp_nanos_opt().unwrap_or_default() as u64,
        };
        formula.evaluate(&inputs, now)
    }

    /// Evaluates the formula of every autoscale pool whose evaluation is
    /// due at `now` (see `autoscale_pool`). Returns how many were evaluated.
    pub async fn autoscale_due(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let pools = self.store.pool_summaries().await?;
        let mut done = 0;
        let mut enabled = HashSet::new();
        for p in pools.iter().filter(|p| is_enabled(p)) {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
            enabled.insert(key(id));
            let due = self.core().autoscale.pools.get(&key(id)).and_then(|s| s.next_eval).is_none_or(|t| t <= now);
            if !due {
                continue;
            }
            match self.autoscale_pool(id, now).await {
                Ok(Some(_)) => done += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(pool = %id, error = %e, "autoscale evaluation failed");
                    // Tried again a sample period later, not at once.
                    let period = self.config.autoscale_sample_interval;
                    if let Some(s) = self.core().autoscale.pools.get_mut(&key(id)) {
                        s.next_eval = Some(now + period);
                    }
                }
            }
        }
        // A pool whose autoscale was turned off is evaluated at once when
        // it is turned on again.
        for (k, s) in self.core().autoscale.pools.iter_mut() {
            if !enabled.contains(k) {
                s.next_eval = None;
            }
        }
        Ok(done)
    }

    /// When the next evaluation of an autoscale pool is due, if one is
    /// scheduled.
    pub fn next_autoscale(&self) -> Option<DateTime<Utc>> {
        self.core().autoscale.pools.values().filter_map(|s| s.next_eval).min()
    }

    /// Evaluates a pool's formula at `now` and applies it: the run becomes
    /// the pool's `autoScaleRun`; its targets (at most [`MAX_TARGET`]) and
    /// `$NodeDeallocationOption` become the pool's, and the reconciliation
    /// is woken when they changed. A failed evaluation changes no target.
    /// The next evaluation is due an evaluation interval later. `None`
    /// when the pool has autoscale off (or the formula changed meanwhile:
    /// the new one is evaluated by whoever changed it).
    pub async fn autoscale_pool(&self, pool_id: &str, now: DateTime<Utc>) -> Result<Option<Evaluation>, Error> {
        let stored = self.store.get_pool(pool_id).await?;
        let doc: Map<String, Value> = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
        if !is_enabled(&doc) {
            return Ok(None);
        }
        let text = doc.get("autoScaleFormula").and_then(Value::as_str).unwrap_or_default().to_string();
        // A pool that has no sample yet (just created) gets one first.
        if self.sample_count(pool_id) == 0 {
            self.sample_pool(pool_id, now).await?;
        }
        let eval = match ::autoscale::parse(&text) {
            Ok(f) => self.evaluate_formula(&doc, &f, now),
            Err(e) => failed(&e),
        };
        let period = self.config.autoscale_sample_interval;
        self.core().autoscale.pools.entry(key(pool_id)).or_insert_with(|| PoolScale::new(period)).next_eval = Some(now + interval_of(&doc));
        let run = run_json(&eval, now);
        let targets = eval.targets;
        let changed = Arc::new(AtomicBool::new(false));
        let changed_in = changed.clone();
        let r = self
            .store
            .update_pool(pool_id, Default::default(), move |doc, ts| {
                if !is_enabled(doc) || doc.get("autoScaleFormula").and_then(Value::as_str) != Some(text.as_str()) {
                    return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                }
                doc.insert("autoScaleRun".into(), run);
                if let Some(t) = targets {
                    let (d, l) = (t.dedicated_nodes.min(MAX_TARGET), t.low_priority_nodes.min(MAX_TARGET));
                    let now_d = doc.get("targetDedicatedNodes").and_then(Value::as_u64);
                    let now_l = doc.get("targetLowPriorityNodes").and_then(Value::as_u64);
                    if now_d != Some(d as u64) || now_l != Some(l as u64) {
                        doc.insert("targetDedicatedNodes".into(), json!(d));
                        doc.insert("targetLowPriorityNodes".into(), json!(l));
                        doc.insert("allocationStateTransitionTime".into(), json!(ts));
                        changed_in.store(true, Ordering::Relaxed);
                    }
                    doc.insert(DEALLOCATION_MEMBER.into(), json!(t.node_deallocation_option.as_str()));
                }
                Ok(())
            })
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::OperationInvalidForCurrentState => return Ok(None),
            Err(e) => return Err(e),
        }
        if changed.load(Ordering::Relaxed) {
            self.reconcile.notify_one();
        }
        Ok(Some(eval))
    }
}
