//! Helpers shared by the integration tests.
#![allow(dead_code)]

use autoscale::{parse, Evaluation, Inputs, Metric, Samples, Tick, Value};
use chrono::{DateTime, Duration, TimeZone, Utc};

/// Monday 2026-12-07 12:00:00 UTC.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

pub fn empty() -> Samples {
    Samples::with_period(std::time::Duration::from_secs(30))
}

/// `n` ticks, one a sample period, ending at `end` (the newest at `end`), `metric` set
/// to `f(i)` for the i-th tick, oldest first.
pub fn series(metric: Metric, n: i64, end: DateTime<Utc>, f: impl Fn(i64) -> f64) -> Samples {
    let mut s = empty();
    add(&mut s, metric, n, end, f);
    s
}

pub fn add(s: &mut Samples, metric: Metric, n: i64, end: DateTime<Utc>, f: impl Fn(i64) -> f64) {
    let period = Duration::milliseconds((s.period().as_secs_f64() * 1000.0) as i64);
    for i in 0..n {
        let at = end - period * (n - 1 - i) as i32;
        assert!(s.record(at, &Tick::new().with(metric, f(i))), "ticks must be recorded in order");
    }
}

/// Evaluates `formula` at `now()` with no samples and a pool of nothing.
pub fn run(formula: &str) -> Evaluation {
    run_with(formula, &Inputs::new(&empty()))
}

pub fn run_with(formula: &str, inputs: &Inputs) -> Evaluation {
    let f = parse(formula).unwrap_or_else(|e| panic!("{formula:?} does not parse: {e}"));
    f.evaluate(inputs, now())
}

/// The value of `expr`, or the evaluation error's `Message` value.
pub fn value_of(expr: &str) -> Result<Value, String> {
    value_with(expr, &Inputs::new(&empty()))
}

pub fn value_with(expr: &str, inputs: &Inputs) -> Result<Value, String> {
    let ev = run_with(&format!("result = {expr};"), inputs);
    if let Some(e) = ev.error {
        return Err(e.values[0].1.clone());
    }
    Ok(ev.variables.into_iter().find(|(n, _)| n == "result").expect("result assigned").1)
}

/// `expr` rendered as results renders it.
pub fn render(expr: &str) -> String {
    match value_of(expr) {
        Ok(v) => v.render(),
        Err(e) => panic!("{expr:?} failed: {e}"),
    }
}
