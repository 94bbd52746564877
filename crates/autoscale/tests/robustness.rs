//! Whatever the text, parsing and evaluating end with a value or an error,
//! never a panic, and in bounded time.

mod common;
use autoscale::{parse, Inputs, Metric, Samples, Tick};
use chrono::Duration;
use common::now;

const PIECES: &[&str] = &[
    "a",
    "$b",
    "x",
    "$TargetDedicatedNodes",
    "$TargetDedicated",
    "$TargetLowPriorityNodes",
    "$NodeDeallocationOption",
    "$CPUPercent",
    "$ActiveTasks",
    "$PendingTasks",
    "$CurrentDedicatedNodes",
    "$TaskSlotsPerNode",
    ".GetSample(",
    ".GetSamplePercent(",
    ".Count()",
    ".HistoryBeginTime()",
    ".GetSamplePeriod()",
    ".hour",
    ".weekday",
    "avg(",
    "len(",
    "lg(",
    "ln(",
    "log(",
    "max(",
    "min(",
    "norm(",
    "percentile(",
    "rand()",
    "range(",
    "std(",
    "stop()",
    "sum(",
    "time(",
    "val(",
    "TimeInterval_Zero",
    "TimeInterval_100ns",
    "TimeInterval_Second",
    "TimeInterval_Minute",
    "TimeInterval_Day",
    "TimeInterval_Year",
    "requeue",
    "taskcompletion",
    "\"2016-10-13\"",
    "\"Thu, 13 Oct 2016 19:18:47 GMT\"",
    "\"\"",
    "0",
    "1",
    "-1",
    "0.5",
    "70",
    "100",
    "1e308",
    "9e18",
    "-9e18",
    "3",
    "+",
    "-",
    "*",
    "/",
    "!",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "?",
    ":",
    "=",
    ";",
    ",",
    "(",
    ")",
    " ",
    "\n",
    "// c\n",
];

const ATOMS: &[&str] = &[
    "a",
    "$b",
    "$TargetDedicatedNodes",
    "$TargetLowPriority",
    "$NodeDeallocationOption",
    "$CurrentDedicatedNodes",
    "$TaskSlotsPerNode",
    "rand()",
    "time()",
    "TimeInterval_Zero",
    "TimeInterval_100ns",
    "TimeInterval_Second",
    "TimeInterval_Minute",
    "TimeInterval_Year",
    "requeue",
    "\"2016-10-13\"",
    "\"x\"",
    "0",
    "1",
    "-1",
    "0.5",
    "70",
    "1e308",
    "9e18",
    "$CPUPercent",
    "$ActiveTasks.GetSample(1)",
    "$ActiveTasks.Count()",
    "$CPUPercent.HistoryBeginTime()",
    "$PendingTasks.GetSamplePeriod()",
];
const UNARY: &[&str] = &["-", "!"];
const BINARY: &[&str] = &["+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "&&", "||"];
const CALLS: &[&str] = &["avg", "len", "lg", "ln", "log", "max", "min", "norm", "percentile", "range", "std", "sum", "time", "val"];
const METHODS: &[&str] = &["GetSample", "GetSamplePercent"];
const JUNK: &[&str] = &["(", ")", ",", ";", "?", ":", "=", ".", ".hour", "stop()", "$"];

/// A random expression, mostly well formed.
fn expr(rng: &mut fastrand::Rng, depth: u32) -> String {
    if rng.u8(..100) < 2 {
        return JUNK[rng.usize(..JUNK.len())].to_string();
    }
    let leaf = depth == 0 || rng.u8(..100) < 35;
    if leaf {
        return ATOMS[rng.usize(..ATOMS.len())].to_string();
    }
    let d = depth - 1;
    let args = |rng: &mut fastrand::Rng| (0..rng.usize(0..4)).map(|_| expr(rng, d)).collect::<Vec<_>>().join(", ");
    match rng.u8(..7) {
        0 => format!("{}{}", UNARY[rng.usize(..UNARY.len())], expr(rng, d)),
        1 | 2 => format!("{} {} {}", expr(rng, d), BINARY[rng.usize(..BINARY.len())], expr(rng, d)),
        3 => format!("({} ? {} : {})", expr(rng, d), expr(rng, d), expr(rng, d)),
        4 => format!("{}({})", CALLS[rng.usize(..CALLS.len())], args(rng)),
        5 => {
            let m = ["$CPUPercent", "$ActiveTasks", "$RunningTasks"][rng.usize(..3)];
            format!("{m}.{}({})", METHODS[rng.usize(..METHODS.len())], args(rng))
        }
        _ => format!("({}).{}", expr(rng, d), ["year", "month", "day", "weekday", "hour", "minute", "second"][rng.usize(..7)]),
    }
}

#[test]
fn random_formulas_never_panic() {
    let mut samples = Samples::with_period(std::time::Duration::from_secs(30));
    for i in (0..200).rev() {
        let tick = Tick::new().with(Metric::CpuPercent, (i % 7) as f64).with(Metric::ActiveTasks, (i % 3) as f64);
        samples.record(now() - Duration::seconds(30 * i), &tick);
    }
    let inputs = Inputs { target_dedicated_nodes: 2.0, current_dedicated_nodes: 2.0, ..Inputs::new(&samples) };
    let mut rng = fastrand::Rng::with_seed(15);
    let (mut parsed, mut evaluated_ok) = (0, 0);
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..rng.usize(1..5) {
            let target = ["a", "$b", "$TargetDedicatedNodes", "$TargetLowPriorityNodes", "$NodeDeallocationOption", "$TargetDedicated"]
                [rng.usize(..6)];
            text.push_str(&format!("{target} = {};\n", expr(&mut rng, 4)));
        }
        if let Ok(f) = parse(&text) {
            parsed += 1;
            let ev = f.evaluate(&inputs, now());
            assert!(ev.results.starts_with("$TargetDedicatedNodes="), "{text:?}: {}", ev.results);
            assert_eq!(ev.targets.is_some(), ev.error.is_none(), "{text:?}");
            if ev.error.is_none() {
                evaluated_ok += 1;
            }
        }
        // Token soup, for the parser.
        let soup: String = (0..rng.usize(1..30)).map(|_| PIECES[rng.usize(..PIECES.len())]).collect();
        if let Ok(f) = parse(&soup) {
            f.evaluate(&inputs, now());
        }
    }
    eprintln!("{parsed} parsed, {evaluated_ok} evaluated without error");
    // The generator reaches past the parser, and some of it evaluates.
    assert!(parsed > 5_000, "{parsed} parsed");
    assert!(evaluated_ok > 500, "{evaluated_ok} evaluated");
}

#[test]
fn extreme_windows_and_numbers() {
    let samples = Samples::with_period(std::time::Duration::from_secs(30));
    let inputs = Inputs::new(&samples);
    for f in [
        "a = $CPUPercent.GetSamplePercent(TimeInterval_Year * 29000, -29000 * TimeInterval_Year)",
        "a = $CPUPercent.GetSample(TimeInterval_Year * 29000, -29000 * TimeInterval_Year, 0)",
        "a = $CPUPercent.GetSample(1e308)",
        "a = $CPUPercent.GetSample(0 / 0)",
        "a = time() + 29000 * TimeInterval_Year",
        "a = time(\"0001-01-01\") - time(\"9999-12-31\")",
        "a = -(time(\"0001-01-01\") - time() + (time() - time(\"9999-12-31\")))",
        "a = val(lg(2), 1e300)",
        "a = percentile(lg(2, 4), 0 / 0)",
        "$TargetDedicatedNodes = 1e308 * 10",
    ] {
        let ev = parse(f).unwrap().evaluate(&inputs, now());
        assert!(ev.results.starts_with("$TargetDedicatedNodes="), "{f}");
    }
}
