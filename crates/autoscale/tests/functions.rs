//! Every function of the documentation's functions table. Expected values
//! are derived by hand from the documented definitions.

mod common;
use autoscale::{parse, Inputs, Metric};
use common::{empty, now, series, value_of, value_with};

const VALID: &[(&str, &str, &str)] = &[
    // avg(doubleVecList): a list of doubles and doubleVecs, flattened
    ("avg(1, 2, 3, 4)", "2.5", "double"),
    ("avg(5)", "5", "double"),
    ("avg(lg(2, 4, 8))", "2", "double"),
    ("avg(lg(2, 4, 8), 6)", "3", "double"),
    ("avg(lg(2, 4), lg(8, 16))", "2.5", "double"),
    // len
    ("len(1, 2, 3)", "3", "double"),
    ("len(lg(1, 2), 7, lg(4))", "4", "double"),
    ("len()", "0", "double"),
    // lg / ln / log: a double gives a double; a doubleVec or a list gives a doubleVec
    ("lg(8)", "3", "double"),
    ("lg(0.5)", "-1", "double"),
    ("lg(lg(4, 16))", "[1,2]", "doubleVec"),
    ("lg(1, 1024)", "[0,10]", "doubleVec"),
    ("lg(lg(16, 4))", "[2,1]", "doubleVec"),
    ("lg(lg(4))", "1", "double"),
    ("ln(1)", "0", "double"),
    ("ln(2.718281828459045)", "1", "double"),
    ("ln(1, 1)", "[0,0]", "doubleVec"),
    ("log(1000)", "3", "double"),
    ("log(0.01)", "-2", "double"),
    ("log(10, 100)", "[1,2]", "doubleVec"),
    ("log(lg(1024, 2))", "[1,0]", "doubleVec"),
    ("lg(0)", "-inf", "double"),
    ("ln(-1)", "nan", "double"),
    // max / min / range
    ("max(3, 9, -2)", "9", "double"),
    ("max(lg(2, 4, 8), 2.5)", "3", "double"),
    ("min(3, 9, -2)", "-2", "double"),
    ("min(lg(2, 4, 8), 2.5)", "1", "double"),
    ("max(0, 5)", "5", "double"),
    ("range(3, 9, -2)", "11", "double"),
    ("range(4)", "0", "double"),
    // norm: the two-norm
    ("norm(3, 4)", "5", "double"),
    ("norm(lg(2), 2, 2, 4)", "5", "double"),
    ("norm()", "0", "double"),
    // percentile(v, p): nearest rank
    ("percentile(lg(2, 4, 8, 16, 32), 0)", "1", "double"),
    ("percentile(lg(2, 4, 8, 16, 32), 20)", "1", "double"),
    ("percentile(lg(2, 4, 8, 16, 32), 21)", "2", "double"),
    ("percentile(lg(2, 4, 8, 16, 32), 50)", "3", "double"),
    ("percentile(lg(32, 2, 16, 4, 8), 90)", "5", "double"),
    ("percentile(lg(2, 4, 8, 16, 32), 100)", "5", "double"),
    ("percentile(7, 50)", "7", "double"),
    // std: the sample standard deviation (n - 1)
    ("std(2, 4, 4, 4, 5, 5, 7, 9)", "2.13809", "double"),
    ("std(1, 1, 1)", "0", "double"),
    ("std(1, 3)", "1.41421", "double"),
    // sum
    ("sum(1, 2, 3.5)", "6.5", "double"),
    ("sum(lg(2, 4), 10)", "13", "double"),
    ("sum()", "0", "double"),
    // val(v, i): index from 0
    ("val(lg(2, 4, 8), 0)", "1", "double"),
    ("val(lg(2, 4, 8), 2)", "3", "double"),
    ("val(lg(2, 4, 8), 1.9)", "2", "double"),
    ("val(42, 0)", "42", "double"),
    // time(): now, or a W3C-DTF / RFC 1123 string
    ("time()", "2026-12-07T12:00:00.000Z", "timestamp"),
    ("time(\"\")", "2026-12-07T12:00:00.000Z", "timestamp"),
    ("time(\"Mon, 07 Dec 2026 05:40:15 GMT\")", "2026-12-07T05:40:15.000Z", "timestamp"),
    ("time(\"2026-12-07T05:40:15.25+01:00\")", "2026-12-07T04:40:15.250Z", "timestamp"),
    ("time(\"2026-12\")", "2026-12-01T00:00:00.000Z", "timestamp"),
    ("time(\"1997-07-16T19:20+01:00\")", "1997-07-16T18:20:00.000Z", "timestamp"),
];

#[test]
fn every_documented_function() {
    let mut failures = Vec::new();
    for (expr, want, ty) in VALID {
        match value_of(expr) {
            Ok(v) if v.render() == *want && v.type_name() == *ty => {}
            Ok(v) => failures.push(format!("{expr}: got {} {}, want {ty} {want}", v.type_name(), v.render())),
            Err(e) => failures.push(format!("{expr}: failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), VALID.len(), failures.join("\n"));
}

const INVALID: &[(&str, &str)] = &[
    ("avg()", "avg() needs at least 1 value, got 0"),
    ("max()", "max() needs at least 1 value, got 0"),
    ("min()", "min() needs at least 1 value, got 0"),
    ("range()", "range() needs at least 1 value, got 0"),
    ("std(1)", "std() needs at least 2 values, got 1"),
    ("avg(1, time())", "avg() takes doubles and doubleVecs; argument 2 is a timestamp"),
    ("sum(\"1\")", "sum() takes doubles and doubleVecs; argument 1 is a string"),
    ("max(TimeInterval_Hour)", "max() takes doubles and doubleVecs; argument 1 is a timeinterval"),
    ("lg(time())", "lg() takes doubles and doubleVecs; argument 1 is a timestamp"),
    ("percentile(lg(2), 101)", "p must be from 0 to 100, not 101"),
    ("percentile(lg(2), -1)", "p must be from 0 to 100, not -1"),
    ("percentile(\"x\", 50)", "percentile() takes a doubleVec first, not string"),
    ("percentile(lg(2), time())", "percentile() takes a double second, not timestamp"),
    ("percentile(lg(), 50)", "percentile() of an empty vector"),
    ("val(lg(2, 4), 2)", "val(): index 2 is outside a vector of length 2"),
    ("val(lg(2, 4), -1)", "val(): index -1 is outside a vector of length 2"),
    ("val(time(), 0)", "val() takes a doubleVec first, not timestamp"),
    ("val(lg(2), \"0\")", "val() takes a double index, not string"),
    ("time(\"next tuesday\")", "time(): \"next tuesday\" is neither a W3C-DTF nor an RFC 1123 date-time"),
    ("time(5)", "time() takes a string, not double"),
];

#[test]
fn function_errors() {
    let mut failures = Vec::new();
    for (expr, want) in INVALID {
        match value_of(expr) {
            Ok(v) => failures.push(format!("{expr}: evaluated to {} {}", v.type_name(), v.render())),
            Err(e) if e.contains(want) => {}
            Err(e) => failures.push(format!("{expr}: error {e:?} does not contain {want:?}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), INVALID.len(), failures.join("\n"));
}

#[test]
fn functions_take_the_samples_of_a_variable() {
    // $ActiveTasks: 1, 2, ..., 10 over the last 5 minutes.
    let samples = series(Metric::ActiveTasks, 10, now(), |i| (i + 1) as f64);
    let inputs = Inputs::new(&samples);
    let cases: &[(&str, &str)] = &[
        ("avg($ActiveTasks.GetSample(10))", "5.5"),
        ("sum($ActiveTasks.GetSample(10))", "55"),
        ("max($ActiveTasks.GetSample(10))", "10"),
        ("min($ActiveTasks.GetSample(10))", "1"),
        ("range($ActiveTasks.GetSample(10))", "9"),
        ("len($ActiveTasks.GetSample(10), 0)", "11"),
        ("percentile($ActiveTasks.GetSample(10), 50)", "5"),
        ("percentile($ActiveTasks.GetSample(10), 95)", "10"),
        ("val($ActiveTasks.GetSample(3), 0)", "8"),
        ("val($ActiveTasks.GetSample(1), 0)", "10"),
        ("std($ActiveTasks.GetSample(10))", "3.02765"),
        ("norm($ActiveTasks.GetSample(2))", "13.4536"),
        ("avg($ActiveTasks.GetSample(TimeInterval_Minute * 5))", "5.5"),
        ("$ActiveTasks.GetSample(3) * 2", "[16,18,20]"),
    ];
    for (expr, want) in cases {
        let got = value_with(expr, &inputs).map(|v| v.render());
        assert_eq!(got.as_deref(), Ok(*want), "{expr}");
    }
}

#[test]
fn rand_is_uniform_in_zero_one_and_follows_the_seed() {
    let samples = empty();
    let f = parse("a = rand(); b = rand(); c = rand();").unwrap();
    let run = |seed: u64| {
        let mut inputs = Inputs::new(&samples);
        inputs.rand_seed = seed;
        f.evaluate(&inputs, now()).results
    };
    assert_eq!(run(7), run(7), "the same seed gives the same numbers");
    assert_ne!(run(7), run(8), "another seed gives others");
    let ev = parse("a = rand(); b = rand();").unwrap().evaluate(&Inputs::new(&samples), now());
    let nums: Vec<f64> = ev
        .variables
        .iter()
        .skip(3)
        .map(|(_, v)| match v {
            autoscale::Value::Double(d) => *d,
            other => panic!("rand() gave {other:?}"),
        })
        .collect();
    assert_eq!(nums.len(), 2);
    assert_ne!(nums[0], nums[1], "two calls give two numbers");
    // Over many seeds the values stay in [0, 1) and spread over it.
    let f = parse("r = rand();").unwrap();
    let mut lo = 0;
    for seed in 0..400u64 {
        let mut inputs = Inputs::new(&samples);
        inputs.rand_seed = seed;
        let ev = f.evaluate(&inputs, now());
        let autoscale::Value::Double(r) = ev.variables[3].1 else { panic!("not a double") };
        assert!((0.0..1.0).contains(&r), "{r}");
        lo += usize::from(r < 0.5);
    }
    assert!((120..280).contains(&lo), "{lo} of 400 below 0.5");
}

#[test]
fn stop_ends_the_evaluation_and_keeps_what_was_assigned() {
    let ev = common::run("$TargetDedicatedNodes = 3; a = 1; stop(); $TargetDedicatedNodes = 9; b = 2;");
    assert!(ev.stopped);
    assert_eq!(ev.error, None);
    assert_eq!(ev.results, "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;a=1");
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 3);
    // Inside a ternary, only when its branch is taken.
    let ev = common::run("x = 1; y = x > 5 ? stop() : 2; z = 3;");
    assert!(!ev.stopped);
    assert!(ev.results.ends_with(";x=1;y=2;z=3"), "{}", ev.results);
    let ev = common::run("x = 1; y = x < 5 ? stop() : 2; z = 3;");
    assert!(ev.stopped);
    assert!(ev.results.ends_with(";x=1"), "{}", ev.results);
}
