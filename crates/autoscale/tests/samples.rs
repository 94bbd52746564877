//! The sample methods of the sampled system variables, the sample
//! percentage and its documented failure.

mod common;
use autoscale::{Inputs, Metric, Samples, Tick, INSUFFICIENT_SAMPLE_DATA};
use chrono::Duration;
use common::{add, empty, now, run_with, series, value_with};

fn ok(expr: &str, samples: &Samples) -> String {
    match value_with(expr, &Inputs::new(samples)) {
        Ok(v) => v.render(),
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn err(expr: &str, samples: &Samples) -> String {
    match value_with(expr, &Inputs::new(samples)) {
        Ok(v) => panic!("{expr}: evaluated to {}", v.render()),
        Err(e) => e,
    }
}

#[test]
fn get_sample_count_takes_the_most_recent_oldest_first() {
    let s = series(Metric::PendingTasks, 6, now(), |i| i as f64 * 10.0);
    assert_eq!(ok("$PendingTasks.GetSample(1)", &s), "[50]");
    assert_eq!(ok("$PendingTasks.GetSample(3)", &s), "[30,40,50]");
    assert_eq!(ok("$PendingTasks.GetSample(2.9)", &s), "[40,50]");
    assert_eq!(ok("$PendingTasks.GetSample(100)", &s), "[0,10,20,30,40,50]", "fewer samples than asked is not an error");
    assert_eq!(ok("$PendingTasks.GetSample(0)", &s), "[]");
    assert_eq!(ok("$PendingTasks.GetSample(5)", &empty()), "[]", "not even on an empty history");
    assert_eq!(ok("$RunningTasks.GetSample(5)", &s), "[]", "another metric's samples are not this one's");
    assert!(err("$PendingTasks.GetSample(-1)", &s).contains("the count must not be negative, not -1"));
    assert!(err("$PendingTasks.GetSample(5, 70)", &s).contains("GetSample(count) takes one argument"));
}

#[test]
fn the_documented_ten_minute_window() {
    // "$CPUPercent.GetSample(TimeInterval_Minute * 10) would return 20 samples if all
    // samples for the last 10 minutes are present."
    let full = series(Metric::CpuPercent, 40, now(), |_| 0.5);
    assert_eq!(ok("len($CPUPercent.GetSample(TimeInterval_Minute * 10))", &full), "20");
    assert_eq!(ok("$CPUPercent.GetSamplePercent(TimeInterval_Minute * 10)", &full), "100");
    // "If the last minute of history was not available, however, only 18 samples would be returned."
    let late = series(Metric::CpuPercent, 38, now() - Duration::seconds(60), |_| 0.5);
    assert_eq!(ok("len($CPUPercent.GetSample(TimeInterval_Minute * 10))", &late), "18");
    assert_eq!(ok("$CPUPercent.GetSamplePercent(TimeInterval_Minute * 10)", &late), "90");
    // "...GetSample(TimeInterval_Minute * 10, 95) would fail because only 90 percent of the samples are available."
    let e = err("$CPUPercent.GetSample(TimeInterval_Minute * 10, 95)", &late);
    assert!(e.ends_with("Insufficient data from data set: $CPUPercent wanted 95%, received 90%"), "{e}");
    // "...GetSample(TimeInterval_Minute * 10, 80) would succeed."
    assert_eq!(ok("len($CPUPercent.GetSample(TimeInterval_Minute * 10, 80))", &late), "18");
}

#[test]
fn a_window_between_two_look_backs() {
    // "$runningTasksSample = $RunningTasks.GetSample(1 * TimeInterval_Minute, 6 * TimeInterval_Minute);"
    // returns "for example: $runningTasksSample=[1,1,1,1,1,1,1,1,1,1];"
    let s = series(Metric::RunningTasks, 120, now(), |_| 1.0);
    let ev = run_with(autoscale::examples::RUNNING_TASKS_WINDOW, &Inputs::new(&s));
    assert_eq!(ev.error, None);
    assert!(ev.results.ends_with(";$runningTasksSample=[1,1,1,1,1,1,1,1,1,1]"), "{}", ev.results);
    // The window is (now - 6 min, now - 1 min]: the samples 1 to 5.5 minutes old.
    let ages = series(Metric::RunningTasks, 20, now(), |i| ((19 - i) * 30) as f64);
    assert_eq!(
        ok("$RunningTasks.GetSample(1 * TimeInterval_Minute, 6 * TimeInterval_Minute)", &ages),
        "[330,300,270,240,210,180,150,120,90,60]"
    );
    // The bounds may come in either order, and as timestamps.
    assert_eq!(
        ok("$RunningTasks.GetSample(6 * TimeInterval_Minute, 1 * TimeInterval_Minute)", &ages),
        "[330,300,270,240,210,180,150,120,90,60]"
    );
    assert_eq!(
        ok("$RunningTasks.GetSample(time() + (-6 * TimeInterval_Minute), time() + (-1 * TimeInterval_Minute))", &ages),
        "[330,300,270,240,210,180,150,120,90,60]"
    );
    assert_eq!(ok("$RunningTasks.GetSample(time() + (-2 * TimeInterval_Minute))", &ages), "[90,60,30,0]");
    assert_eq!(ok("$RunningTasks.GetSample(TimeInterval_Minute * 0, TimeInterval_Minute * 2)", &ages), "[90,60,30,0]");
    // "GetSample(60 * TimeInterval_Second, 120 * TimeInterval_Second, 75)": 2 of 2 samples.
    let ev = run_with(autoscale::examples::RUNNING_TASKS_WINDOW_75, &Inputs::new(&ages));
    assert!(ev.results.ends_with(";$runningTasksSample=[90,60]"), "{}", ev.results);
    let ev = run_with(autoscale::examples::RUNNING_TASKS_WINDOW_75, &Inputs::new(&empty()));
    let e = ev.error.expect("no samples");
    assert_eq!(e.code, INSUFFICIENT_SAMPLE_DATA);
    assert!(e.values[0].1.ends_with("$RunningTasks wanted 75%, received 0%"), "{:?}", e.values);
}

#[test]
fn the_sample_percent() {
    // 29 of the 30 samples of the last 15 minutes (a recorded results string shows `$samples=96.6667`).
    let mut s = series(Metric::ActiveTasks, 29, now() - Duration::seconds(30), |_| 0.0);
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15)", &s), "96.6667");
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15, TimeInterval_Minute * 0)", &s), "96.6667");
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Minute, TimeInterval_Minute * 15)", &s), "100");
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Minute, TimeInterval_Minute * 16)", &s), "93.3333");
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Minute * 60)", &s), "24.1667");
    assert_eq!(ok("$RunningTasks.GetSamplePercent(TimeInterval_Minute * 15)", &s), "0");
    // A tick without this metric is a missing sample.
    s.record(now(), &Tick::new().with(Metric::RunningTasks, 1.0));
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15)", &s), "96.6667");
    assert_eq!(ok("$RunningTasks.GetSamplePercent(TimeInterval_Minute * 15)", &s), "3.33333");
    // History only reaches back as far as it is kept (24 hours here).
    let day = series(Metric::ActiveTasks, 2880 * 2, now(), |_| 1.0);
    assert_eq!(day.len(), 2880);
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Day * 2)", &day), "50");
    assert_eq!(ok("$ActiveTasks.GetSamplePercent(TimeInterval_Day)", &day), "100");
}

#[test]
fn without_a_percentage_a_window_needs_seventy_percent() {
    let s = series(Metric::PendingTasks, 7, now(), |_| 3.0); // 7 of the 10 samples of 5 minutes
    assert_eq!(ok("$PendingTasks.GetSample(TimeInterval_Minute * 5)", &s), "[3,3,3,3,3,3,3]");
    let s = series(Metric::PendingTasks, 6, now(), |_| 3.0);
    let e = err("$PendingTasks.GetSample(TimeInterval_Minute * 5)", &s);
    assert!(e.ends_with("Insufficient data from data set: $PendingTasks wanted 70%, received 60%"), "{e}");
    assert_eq!(ok("$PendingTasks.GetSample(TimeInterval_Minute * 5, 60)", &s), "[3,3,3,3,3,3]");
    assert_eq!(ok("$PendingTasks.GetSample(TimeInterval_Minute * 5, 0)", &empty()), "[]");
    assert_eq!(ok("$PendingTasks.GetSample(TimeInterval_Minute * 0, TimeInterval_Minute * 5, 60)", &s), "[3,3,3,3,3,3]");
}

#[test]
fn insufficient_sample_data_is_reported_as_the_service_does() {
    // The documented PoolAutoScaleEvent error: "Line 15, Col 44: Insufficient data from data
    // set: $RunningTasks wanted 70%, received 50%". Line 15 holds the call; its '(' is column 44.
    let mut formula = String::new();
    for i in 1..=14 {
        formula.push_str(&format!("// comment line {i}\n"));
    }
    formula.push_str("runningAvg    = avg($RunningTasks.GetSample(TimeInterval_Minute * 10, 70));\n$TargetDedicatedNodes = runningAvg;");
    let s = series(Metric::RunningTasks, 10, now(), |_| 1.0); // 10 of 20
    let ev = run_with(&formula, &Inputs { target_dedicated_nodes: 2.0, ..Inputs::new(&s) });
    let e = ev.error.expect("fails");
    assert_eq!(e.code, "InsufficientSampleData");
    assert_eq!(e.message, "Autoscale evaluation failed due to insufficient sample data");
    assert_eq!(
        e.values,
        vec![(
            "Message".to_string(),
            "Line 15, Col 44: Insufficient data from data set: $RunningTasks wanted 70%, received 50%".to_string()
        )]
    );
    assert_eq!((e.line, e.col), (15, 44));
    assert_eq!(ev.targets, None, "a failed evaluation changes nothing");
    assert_eq!(ev.results, "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue");
}

#[test]
fn a_window_without_a_percentage_on_a_new_pool() {
    // A formula of the shape a public project shipped in 2017, whose evaluation on a new pool
    // the service failed with "Line 9, Col 43: Insufficient data from data set: $PendingTasks
    // wanted 70%, received 0%": the call on line 9 gives no percentage.
    let formula = "maxTasksPerNode = 1;
minNodes = 0;
maxNodes = 10;
$NodeDeallocationOption = taskcompletion;
sli = TimeInterval_Second * 900;
samplepercent = $PendingTasks.GetSamplePercent(sli);
lastsample = samplepercent > 0 ? val($PendingTasks.GetSample(1), 0) : 0;
req = 0;
samplevecavg = avg($PendingTasks.GetSample(sli));
$TargetDedicatedNodes = max(minNodes, min(maxNodes, samplevecavg / maxTasksPerNode));";
    let ev = run_with(formula, &Inputs::new(&empty()));
    let e = ev.error.expect("fails");
    assert_eq!(e.values[0].1, "Line 9, Col 43: Insufficient data from data set: $PendingTasks wanted 70%, received 0%");
    assert!(ev.results.contains(";samplepercent=0;"), "{}", ev.results);
}

#[test]
fn period_count_and_history_begin_time() {
    let mut s = Samples::with_period(std::time::Duration::from_secs(10));
    add(&mut s, Metric::DiskReadOps, 5, now(), |i| i as f64);
    assert_eq!(ok("$DiskReadOps.GetSamplePeriod()", &s), "PT10S");
    assert_eq!(ok("$DiskReadOps.GetSamplePeriod() == 10 * TimeInterval_Second", &s), "1");
    assert_eq!(ok("$DiskReadOps.Count()", &s), "5");
    assert_eq!(ok("$DiskWriteOps.Count()", &s), "0");
    assert_eq!(ok("$DiskReadOps.HistoryBeginTime()", &s), "2026-12-07T11:59:20.000Z");
    assert_eq!(ok("time() - $DiskReadOps.HistoryBeginTime()", &s), "PT40S");
    assert_eq!(ok("$CPUPercent.GetSamplePeriod()", &empty()), "PT30S");
    let e = err("$DiskWriteOps.HistoryBeginTime()", &s);
    assert!(e.ends_with("Insufficient data from data set: $DiskWriteOps has no samples"), "{e}");
    // A percentage over a 10-second period.
    assert_eq!(ok("$DiskReadOps.GetSamplePercent(TimeInterval_Minute)", &s), "83.3333");
}

#[test]
fn every_sampled_variable_is_a_series() {
    for (k, m) in Metric::ALL.iter().enumerate() {
        let s = series(*m, 4, now(), |i| (k * 10) as f64 + i as f64);
        let name = m.name();
        assert_eq!(ok(&format!("{name}.GetSample(2)"), &s), format!("[{},{}]", k * 10 + 2, k * 10 + 3), "{name}");
        assert_eq!(ok(&format!("{name}.Count()"), &s), "4", "{name}");
        let e = err(&format!("{name} + 1"), &s);
        assert!(e.contains(&format!("{name} is a series of samples")), "{e}");
    }
    assert_eq!(Metric::ALL.len(), 17);
}

#[test]
fn window_argument_errors() {
    let s = series(Metric::CpuPercent, 10, now(), |_| 1.0);
    let cases: &[(&str, &str)] = &[
        ("$CPUPercent.GetSample(\"x\")", "not a string"),
        ("$CPUPercent.GetSample(TimeInterval_Minute, 101)", "samplePercent must be from 0 to 100, not 101"),
        ("$CPUPercent.GetSample(TimeInterval_Minute, -5)", "samplePercent must be from 0 to 100, not -5"),
        ("$CPUPercent.GetSample(TimeInterval_Minute, TimeInterval_Hour, \"70\")", "samplePercent must be a double, not string"),
        ("$CPUPercent.GetSample(TimeInterval_Minute, 5 < 3 ? 1 : \"x\")", "not a string"),
        ("$CPUPercent.GetSamplePercent(1)", "bounded by timestamps or timeintervals, not a double"),
        ("$CPUPercent.GetSamplePercent(TimeInterval_Minute, 5)", "not a double"),
    ];
    for (expr, want) in cases {
        let e = err(expr, &s);
        assert!(e.contains(want), "{expr}: {e}");
    }
}
