//! `openbatch-bench autoscale-eval`: the cost of evaluating an autoscale
//! formula against a pool's full sample history, and of keeping it.

use autoscale::{examples, parse, Formula, Inputs, Metric, Samples, Tick};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// 24 hours of ticks every 30 s, every metric set (deterministic values).
fn day_of_samples(now: DateTime<Utc>) -> Samples {
    let mut s = Samples::with_period(Duration::from_secs(30));
    let n = s.capacity() as i64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        let at = now - chrono::Duration::seconds(30 * (n - 1 - i));
        let mut tick = Tick::new();
        for m in Metric::ALL {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match m {
                Metric::CpuPercent => (x % 10_000) as f64 / 100.0,
                Metric::ActiveTasks | Metric::RunningTasks | Metric::PendingTasks => (x % 40) as f64,
                Metric::SampleNodeCount | Metric::PreemptedNodeCount => (x % 4) as f64,
                _ => (x % 1_000_000_000) as f64,
            };
            tick.set(*m, v);
        }
        s.record(at, &tick);
    }
    s
}

/// The median and 99th percentile.
fn median_us(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    (at(0.5), at(0.99))
}

pub fn run(runs: usize) -> Value {
    let runs = runs.max(1);
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).single().expect("valid date");
    let samples = day_of_samples(now);
    let inputs = Inputs { target_dedicated_nodes: 1.0, current_dedicated_nodes: 1.0, task_slots_per_node: 4.0, ..Inputs::new(&samples) };
    // The longest of the documentation's example formulas.
    let (name, text) = examples::ALL.iter().copied().max_by_key(|(_, f)| f.len()).expect("examples");
    let baseline_text = "$TargetDedicatedNodes = 1;";
    let day_text = "$TargetDedicatedNodes = avg($CPUPercent.GetSample(TimeInterval_Day)) / 10;";
    let (Ok(formula), Ok(baseline), Ok(day)) = (parse(text), parse(baseline_text), parse(day_text)) else {
        return json!({"error": "a benchmark formula does not parse"});
    };
    let check = formula.evaluate(&inputs, now);
    if let Some(e) = &check.error {
        return json!({"error": format!("the example fails: {e:?}")});
    }
    let time = |f: &Formula| {
        let start = Instant::now();
        black_box(f.evaluate(black_box(&inputs), now));
        start.elapsed().as_secs_f64() * 1e6
    };
    let (mut eval, mut base, mut full, mut parse_us) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        // Interleaved, so that drift in the machine's speed hits all alike.
        eval.push(time(&formula));
        base.push(time(&baseline));
        full.push(time(&day));
        let start = Instant::now();
        black_box(parse(black_box(text)).ok());
        parse_us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let (eval_p50, eval_p99) = median_us(eval);
    let (base_p50, base_p99) = median_us(base);
    let (full_p50, _) = median_us(full);
    let (parse_p50, _) = median_us(parse_us);
    json!({
        "formula": name,
        "formula_chars": text.chars().count(),
        "statements": formula.statement_count(),
        "results": check.results,
        "samples_per_variable": samples.len(),
        "sampled_variables": Metric::ALL.len(),
        "sample_bytes_per_pool": samples.memory_bytes(),
        "runs": runs,
        "eval_median_us": eval_p50,
        "eval_p99_us": eval_p99,
        "baseline_median_us": base_p50,
        "baseline_p99_us": base_p99,
        "full_day_window_median_us": full_p50,
        "parse_median_us": parse_p50,
    })
}
