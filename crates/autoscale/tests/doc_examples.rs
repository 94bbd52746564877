//! The documentation's example formulas, with the results the
//! documentation (or a recorded service answer) states, and with results
//! derived by hand from the documented definitions where it states none
//! (marked "derived").

mod common;
use autoscale::{examples, parse, Inputs, Metric, Samples, Tick};
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{add, empty, now, series};

fn eval_at(formula: &str, inputs: &Inputs, at: DateTime<Utc>) -> autoscale::Evaluation {
    parse(formula).unwrap_or_else(|e| panic!("{e}")).evaluate(inputs, at)
}

fn ms(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn working_hours_as_documented() {
    // "Successful evaluation of the formula shown in this code snippet produces results similar to:
    //  $TargetDedicatedNodes=10; $NodeDeallocationOption=requeue; $curTime=2016-10-13T19:18:47.805Z;
    //  $isWeekday=1; $isWorkingWeekdayHour=0; $workHours=0" (the service now also lists
    // $TargetLowPriorityNodes, as recorded SDK tests show).
    let samples = empty();
    let inputs = Inputs::new(&samples);
    let ev = eval_at(examples::WORKING_HOURS, &inputs, ms("2016-10-13T19:18:47.805Z"));
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=10;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$curTime=2016-10-13T19:18:47.805Z;$isWeekday=1;$isWorkingWeekdayHour=0;$workHours=0"
    );
    // "Sample output": Last execution: 10/14/2016 18:36:43 ... $curTime=2016-10-14T18:36:43.282Z
    let ev = eval_at(examples::WORKING_HOURS, &inputs, ms("2016-10-14T18:36:43.282Z"));
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=10;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$curTime=2016-10-14T18:36:43.282Z;$isWeekday=1;$isWorkingWeekdayHour=0;$workHours=0"
    );
    // Derived: a weekday inside working hours gives 20, a weekend day 10.
    let ev = eval_at(examples::WORKING_HOURS, &inputs, ms("2016-10-14T08:00:00Z"));
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 20);
    assert!(ev.results.ends_with(";$isWeekday=1;$isWorkingWeekdayHour=1;$workHours=1"), "{}", ev.results);
    let ev = eval_at(examples::WORKING_HOURS, &inputs, ms("2016-10-15T10:00:00Z"));
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 10);
    assert!(ev.results.ends_with(";$isWeekday=0;$isWorkingWeekdayHour=0;$workHours=1"), "{}", ev.results);
    // The Python example sets the alias: the same targets. Derived.
    let ev = eval_at(examples::WORKING_HOURS_ALIAS, &inputs, ms("2016-10-14T08:00:00Z"));
    assert!(
        ev.results.starts_with("$TargetDedicatedNodes=20;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$curTime="),
        "{}",
        ev.results
    );
    // Example 1 also asks for taskcompletion. Derived.
    let ev = eval_at(examples::EXAMPLE_1_TIME, &inputs, ms("2016-10-17T17:59:59Z"));
    let t = ev.targets.unwrap();
    assert_eq!((t.dedicated_nodes, t.node_deallocation_option.as_str()), (20, "taskcompletion"));
    // "$curTime = time() + (-6 * TimeInterval_Hour)" for Mountain Daylight Time. Derived.
    let ev = eval_at("$curTime = time() + (-6 * TimeInterval_Hour); h = $curTime.hour", &inputs, ms("2016-10-14T03:00:00Z"));
    assert!(ev.results.ends_with(";$curTime=2016-10-13T21:00:00.000Z;h=21"), "{}", ev.results);
}

#[test]
fn five_nodes_on_mondays() {
    // "sets the target number of dedicated nodes to 5 on Mondays, and 1 on every other day of the week".
    let samples = empty();
    let inputs = Inputs::new(&samples);
    for (day, want) in [(7, 5), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1), (13, 1), (14, 5)] {
        let at = Utc.with_ymd_and_hms(2026, 12, day, 23, 59, 59).unwrap();
        assert_eq!(eval_at(examples::MONDAYS, &inputs, at).targets.unwrap().dedicated_nodes, want, "Dec {day}");
    }
}

#[test]
fn pending_tasks_sample() {
    // "the pool is initially created with a single VM ... finds the average number of pending
    // tasks in the last 180 seconds ... never exceeds 25 VMs". Derived values:
    let none = empty();
    let ev = eval_at(examples::PENDING_TASKS, &Inputs::new(&none), now());
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;maxNumberofVMs=25;pendingTaskSamplePercent=0;pendingTaskSamples=1;startingNumberOfVMs=1"
    );
    let seven = series(Metric::PendingTasks, 6, now(), |i| [4.0, 6.0, 8.0, 7.0, 9.0, 8.0][i as usize]);
    let ev = eval_at(examples::PENDING_TASKS, &Inputs::new(&seven), now());
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=7;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;maxNumberofVMs=25;pendingTaskSamplePercent=100;pendingTaskSamples=7;startingNumberOfVMs=1"
    );
    let many = series(Metric::PendingTasks, 6, now(), |_| 400.0);
    assert_eq!(eval_at(examples::PENDING_TASKS, &Inputs::new(&many), now()).targets.unwrap().dedicated_nodes, 25);
    // 4 of 6 samples is 66.6667 % < 70: the starting number.
    let few = series(Metric::PendingTasks, 4, now(), |_| 400.0);
    let ev = eval_at(examples::PENDING_TASKS, &Inputs::new(&few), now());
    assert!(ev.results.contains(";pendingTaskSamplePercent=66.6667;pendingTaskSamples=1;"), "{}", ev.results);
}

#[test]
fn preempted_nodes_sample() {
    // "starts with 25 low-priority nodes. Every time a low-priority node is preempted, it is
    // replaced with a dedicated node." Derived: 3 preempted → 3 dedicated, 22 low-priority.
    let s = series(Metric::PreemptedNodeCount, 6, now(), |_| 3.0);
    let ev = eval_at(examples::PREEMPTED_NODES, &Inputs::new(&s), now());
    assert_eq!(ev.error, None);
    assert_eq!(ev.results, "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=22;$NodeDeallocationOption=taskcompletion;maxNumberofVMs=25");
    let none = series(Metric::PreemptedNodeCount, 6, now(), |_| 0.0);
    let ev = eval_at(examples::PREEMPTED_NODES, &Inputs::new(&none), now());
    assert!(ev.results.starts_with("$TargetDedicatedNodes=0;$TargetLowPriorityNodes=25;"), "{}", ev.results);
    // Derived: without samples the window fails (70 % wanted).
    let ev = eval_at(examples::PREEMPTED_NODES, &Inputs::new(&empty()), now());
    let e = ev.error.expect("no samples");
    assert_eq!(e.values[0].1, "Line 2, Col 74: Insufficient data from data set: $PreemptedNodeCount wanted 70%, received 0%");
}

#[test]
fn cpu_usage_formula() {
    // "Increase ... if CPU usage is high ... 110 percent ... decrease ... 90 percent ...
    // maximum 400". Derived values:
    let high = series(Metric::CpuPercent, 120, now(), |_| 0.9);
    let inputs = Inputs { current_dedicated_nodes: 10.0, ..Inputs::new(&high) };
    let ev = eval_at(examples::CPU_USAGE, &inputs, now());
    assert_eq!(ev.results, "$TargetDedicatedNodes=11;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$totalDedicatedNodes=11");
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 11);
    let low = series(Metric::CpuPercent, 120, now(), |_| 0.1);
    let inputs = Inputs { current_dedicated_nodes: 10.0, ..Inputs::new(&low) };
    assert_eq!(eval_at(examples::CPU_USAGE, &inputs, now()).targets.unwrap().dedicated_nodes, 9);
    let mid = series(Metric::CpuPercent, 120, now(), |_| 0.5);
    let inputs = Inputs { current_dedicated_nodes: 1000.0, ..Inputs::new(&mid) };
    assert_eq!(eval_at(examples::CPU_USAGE, &inputs, now()).targets.unwrap().dedicated_nodes, 400);
}

#[test]
fn example_2_task_based() {
    // Derived: no samples → the last sample's max(0, []) is 0 → half the current target.
    let none = empty();
    let inputs = Inputs { target_dedicated_nodes: 4.0, ..Inputs::new(&none) };
    let ev = eval_at(examples::EXAMPLE_2_TASKS, &inputs, now());
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;$samples=0;$targetVMs=2;$tasks=0"
    );
    // Derived: a full history of 0..29 pending tasks → max(29, 14.5) = 29 → capped at 20.
    let full = series(Metric::PendingTasks, 30, now(), |i| i as f64);
    let ev = eval_at(examples::EXAMPLE_2_TASKS, &Inputs::new(&full), now());
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=20;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;$samples=100;$targetVMs=29;$tasks=29"
    );
    // Derived: the average wins when the last sample is lower.
    let falling = series(Metric::PendingTasks, 30, now(), |i| (30 - i) as f64);
    let ev = eval_at(examples::EXAMPLE_2_TASKS, &Inputs::new(&falling), now());
    assert!(ev.results.ends_with(";$samples=100;$targetVMs=15.5;$tasks=15.5"), "{}", ev.results);
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 15);
}

#[test]
fn a_recorded_autoscale_run() {
    // A pool's autoScaleRun recorded from the service in 2025 (a variant of Example 2 on
    // $ActiveTasks): results "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;
    // $NodeDeallocationOption=taskcompletion;$samples=96.6667;$targetVMs=0.5;$tasks=0;cappedPoolSize=3"
    // with targetDedicatedNodes 1 and no active tasks: 29 of the 30 samples of 15 minutes.
    let formula = "// Get pending tasks for the past 15 minutes.
$samples = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);
// If we have fewer than 70 percent data points, we use the last sample point, otherwise we use the maximum of last sample point and the history average.
$tasks = $samples < 70 ? max(0, $ActiveTasks.GetSample(1)) : 
max( $ActiveTasks.GetSample(1), avg($ActiveTasks.GetSample(TimeInterval_Minute * 15)));
// If number of pending tasks is not 0, set targetVM to pending tasks, otherwise half of current dedicated.
$targetVMs = $tasks > 0 ? $tasks : max(0, $TargetDedicatedNodes / 2);
// The pool size is capped at 20, if target VM value is more than that, set it to 20. This value should be adjusted according to your use case.
cappedPoolSize = 3;
$TargetDedicatedNodes = max(1, min($targetVMs, cappedPoolSize));
// Set node deallocation mode - keep nodes active only until tasks finish
$NodeDeallocationOption = taskcompletion;";
    let s = series(Metric::ActiveTasks, 29, now() - Duration::seconds(30), |_| 0.0);
    let inputs = Inputs { target_dedicated_nodes: 1.0, current_dedicated_nodes: 1.0, ..Inputs::new(&s) };
    let ev = eval_at(formula, &inputs, now());
    assert_eq!(ev.error, None);
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;$samples=96.6667;$targetVMs=0.5;$tasks=0;cappedPoolSize=3"
    );
}

#[test]
fn example_3_parallel_tasks() {
    // Derived: 10 active tasks, 1 node of 4 slots → (10 - 4 + 3) / 4 = 2.25 more → 3.25 → at most 3.
    let s = series(Metric::ActiveTasks, 30, now(), |_| 10.0);
    let inputs = Inputs { target_dedicated_nodes: 1.0, ..Inputs::new(&s) };
    let ev = eval_at(examples::EXAMPLE_3_PARALLEL, &inputs, now());
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;$cores=4;$extraVMs=2.25;$samples=100;$targetVMs=3.25;$tasks=10"
    );
    // Derived: 5 tasks on 1 node → (5 - 4 + 3) / 4 = 1 more: ceil((5 - 4) / 4) by integer truncation.
    let s = series(Metric::ActiveTasks, 30, now(), |_| 5.0);
    let ev = eval_at(examples::EXAMPLE_3_PARALLEL, &Inputs { target_dedicated_nodes: 1.0, ..Inputs::new(&s) }, now());
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 2);
    // Derived: no tasks on 2 nodes → 2 + (0 - 8 + 3) / 4 = 0.75 → 0 nodes.
    let s = series(Metric::ActiveTasks, 30, now(), |_| 0.0);
    let ev = eval_at(examples::EXAMPLE_3_PARALLEL, &Inputs { target_dedicated_nodes: 2.0, ..Inputs::new(&s) }, now());
    assert!(ev.results.starts_with("$TargetDedicatedNodes=0.75;"), "{}", ev.results);
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 0);
}

#[test]
fn example_4_initial_size() {
    // "Sets the initial pool size to four nodes. Does not adjust the pool size within the first
    // 10 minutes ... After 10 minutes, obtains the max value of the number of running and active
    // tasks within the past 60 minutes. If both values are 0 ... the pool size is set to 0. If
    // either value is greater than zero, no change is made." Derived values:
    let start = |ago: i64| (now() - Duration::minutes(ago)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let none = empty();
    let ev = eval_at(&examples::example_4_initial_size(&start(5)), &Inputs::new(&none), now());
    assert_eq!(ev.error, None, "no sample is read in the first 10 minutes");
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=4;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;lifespan=PT5M;ratio=50;span=PT1H;startup=PT10M"
    );
    let ev = eval_at(&examples::example_4_initial_size(&start(20)), &Inputs::new(&none), now());
    let e = ev.error.expect("no samples after 10 minutes");
    assert_eq!(e.code, "InsufficientSampleData");
    assert!(e.values[0].1.ends_with("Insufficient data from data set: $RunningTasks wanted 50%, received 0%"), "{:?}", e.values);
    let mut idle = Samples::with_period(std::time::Duration::from_secs(30));
    for i in (0..120).rev() {
        idle.record(now() - Duration::seconds(30 * i), &Tick::new().with(Metric::RunningTasks, 0.0).with(Metric::ActiveTasks, 0.0));
    }
    let ev = eval_at(&examples::example_4_initial_size(&start(70)), &Inputs::new(&idle), now());
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 0);
    let mut busy = idle.clone();
    busy.record(now() + Duration::seconds(1), &Tick::new().with(Metric::RunningTasks, 0.0).with(Metric::ActiveTasks, 3.0));
    let later = now() + Duration::seconds(1);
    let ev = eval_at(&examples::example_4_initial_size(&start(70)), &Inputs::new(&busy), later);
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 4, "no change from the 4 set by the first statement");
}

#[test]
fn rest_and_powershell_references() {
    // PowerShell's Test-AzBatchAutoScale example shows "$TargetDedicated=5;$NodeDeallocationOption=requeue;totalNodes=5"
    // for this formula on a pool without CPU samples (the service now names the full variables).
    let none = empty();
    let inputs = Inputs { current_dedicated_nodes: 3.0, ..Inputs::new(&none) };
    let ev = eval_at(examples::REST_EVALUATE, &inputs, now());
    assert_eq!(ev.results, "$TargetDedicatedNodes=5;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;totalNodes=5");
    // Derived: with 10 minutes of CPU at 0.9 on 10 nodes, 110 %.
    let mut busy = empty();
    add(&mut busy, Metric::CpuPercent, 21, now(), |_| 0.9);
    let inputs = Inputs { current_dedicated_nodes: 10.0, ..Inputs::new(&busy) };
    let ev = eval_at(examples::REST_EVALUATE, &inputs, now());
    assert_eq!(ev.results, "$TargetDedicatedNodes=11;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;totalNodes=11");
    // The evaluate page's formula that enables autoscale without resizing the pool.
    let inputs = Inputs { current_dedicated_nodes: 6.0, ..Inputs::new(&none) };
    assert_eq!(eval_at("$TargetDedicatedNodes = $CurrentDedicatedNodes;", &inputs, now()).targets.unwrap().dedicated_nodes, 6);
}
