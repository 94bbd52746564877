//! `AutoScaleRun.results` and `.error` as the service renders them, the
//! writable system variables and their aliases, and the read-only values.

mod common;
use autoscale::{parse, DeallocationOption, Inputs, Targets, Value, EVALUATION_ERROR};
use common::{empty, now, run, run_with};

#[test]
fn recorded_service_answers() {
    // The SDK test recordings: evaluate "$TargetDedicatedNodes=3" on a pool.
    let ev = run("$TargetDedicatedNodes=3");
    assert_eq!(ev.results, "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue");
    assert_eq!(ev.error, None);
    // ... and "$something_useless" on a pool whose target is 2.
    let samples = empty();
    let inputs = Inputs { target_dedicated_nodes: 2.0, ..Inputs::new(&samples) };
    for formula in ["$something_useless", "something_useless"] {
        let ev = run_with(formula, &inputs);
        let e = ev.error.expect("undefined variable");
        assert_eq!(e.code, "AutoScalingFormulaEvaluationError");
        assert_eq!(e.code, EVALUATION_ERROR);
        assert_eq!(e.values[0].0, "Message");
        assert_eq!(e.values[0].1, format!("Line 1, Col 1: Undefined variable {formula}"));
        assert_eq!(ev.results, "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue");
        assert_eq!(ev.targets, None);
    }
}

#[test]
fn user_variables_follow_sorted_by_name_as_written() {
    let ev = run("zeta = 1; $beta = 2; alpha = 3; $Alpha = 4; Beta = 5; $x = 6; x = 7;");
    assert_eq!(
        ev.results,
        "$TargetDedicatedNodes=0;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$Alpha=4;$beta=2;$x=6;Beta=5;alpha=3;x=7;zeta=1"
    );
    let names: Vec<&str> = ev.variables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[3..], ["$Alpha", "$beta", "$x", "Beta", "alpha", "x", "zeta"]);
    // The last value assigned counts, whatever its type.
    let ev = run("a = 1; a = time(); b = \"s\"; c = TimeInterval_Minute * 5; d = lg(2, 4);");
    assert!(ev.results.ends_with(";a=2026-12-07T12:00:00.000Z;b=s;c=PT5M;d=[1,2]"), "{}", ev.results);
    assert_eq!(ev.variables[3].1, Value::Timestamp(autoscale::Timestamp::from_datetime(now())));
    // A variable only read in a branch not taken is not shown.
    let ev = run("a = 0 ? b : 1;");
    assert!(ev.results.ends_with(";a=1"), "{}", ev.results);
}

fn targets(formula: &str, inputs: &Inputs) -> (Option<Targets>, String) {
    let ev = run_with(formula, inputs);
    (ev.targets, ev.results)
}

#[test]
fn targets_start_at_the_pools_and_full_names_win_over_aliases() {
    let samples = empty();
    let inputs = Inputs { target_dedicated_nodes: 4.0, target_low_priority_nodes: 7.0, ..Inputs::new(&samples) };
    let t = |d, l, o| Some(Targets { dedicated_nodes: d, low_priority_nodes: l, node_deallocation_option: o });
    use DeallocationOption::*;
    let cases: &[(&str, Option<Targets>, &str)] = &[
        ("x = 1", t(4, 7, Requeue), "$TargetDedicatedNodes=4;$TargetLowPriorityNodes=7;$NodeDeallocationOption=requeue;x=1"),
        ("$TargetDedicated = 2", t(2, 7, Requeue), "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=7;$NodeDeallocationOption=requeue"),
        ("$TargetDedicated = 2; $TargetDedicatedNodes = 6", t(6, 7, Requeue), "$TargetDedicatedNodes=6;"),
        ("$TargetDedicatedNodes = 6; $TargetDedicated = 2", t(6, 7, Requeue), "$TargetDedicatedNodes=6;"),
        ("$TargetLowPriority = 1", t(4, 1, Requeue), "$TargetLowPriorityNodes=1;"),
        ("$TargetLowPriority = 1; $TargetLowPriorityNodes = 3", t(4, 3, Requeue), "$TargetLowPriorityNodes=3;"),
        ("$TargetLowPriorityNodes = 3; $TargetLowPriority = 1", t(4, 3, Requeue), "$TargetLowPriorityNodes=3;"),
        ("$TargetDedicated = 2; x = $TargetDedicatedNodes; y = $TargetDedicated", t(2, 7, Requeue), ";x=4;y=2"),
        ("$targetdedicatednodes = 5; $TARGETLOWPRIORITYNODES = 0", t(5, 0, Requeue), "$TargetDedicatedNodes=5;$TargetLowPriorityNodes=0;"),
        ("$TargetDedicatedNodes = 2.9", t(2, 7, Requeue), "$TargetDedicatedNodes=2.9;"),
        ("$TargetDedicatedNodes = 0.999", t(0, 7, Requeue), "$TargetDedicatedNodes=0.999;"),
        ("$TargetDedicatedNodes = $TargetDedicatedNodes * 2", t(8, 7, Requeue), "$TargetDedicatedNodes=8;"),
        ("$NodeDeallocationOption = requeue", t(4, 7, Requeue), "$NodeDeallocationOption=requeue"),
        ("$NodeDeallocationOption = terminate", t(4, 7, Terminate), "$NodeDeallocationOption=terminate"),
        ("$NodeDeallocationOption = taskcompletion", t(4, 7, TaskCompletion), "$NodeDeallocationOption=taskcompletion"),
        ("$NodeDeallocationOption = retaineddata", t(4, 7, RetainedData), "$NodeDeallocationOption=retaineddata"),
        ("$NodeDeallocationOption = \"TaskCompletion\"", t(4, 7, TaskCompletion), "$NodeDeallocationOption=taskcompletion"),
        ("o = terminate; $NodeDeallocationOption = o", t(4, 7, Terminate), "$NodeDeallocationOption=terminate;o=terminate"),
        ("x = $NodeDeallocationOption", t(4, 7, Requeue), ";x=requeue"),
    ];
    for (formula, want, results) in cases {
        let (got, r) = targets(formula, &inputs);
        assert_eq!(got, *want, "{formula}");
        assert!(r.contains(results), "{formula}: {r}");
    }
    // The pool's current option is the initial value.
    let inputs = Inputs { node_deallocation_option: DeallocationOption::Terminate, ..Inputs::new(&samples) };
    let (got, r) = targets("x = 1", &inputs);
    assert_eq!(got.unwrap().node_deallocation_option, DeallocationOption::Terminate);
    assert!(r.contains("$NodeDeallocationOption=terminate"), "{r}");
}

#[test]
fn invalid_targets_are_evaluation_errors() {
    let cases: &[(&str, &str)] = &[
        ("$TargetDedicatedNodes = -1", "Line 1, Col 1: $TargetDedicatedNodes must be a number of nodes from 0 to 4294967295, not -1"),
        (
            "x = 1;\n$TargetLowPriorityNodes = 0 / 0",
            "Line 2, Col 1: $TargetLowPriorityNodes must be a number of nodes from 0 to 4294967295, not nan",
        ),
        ("$TargetDedicated = 1 / 0", "Line 1, Col 1: $TargetDedicatedNodes must be a number of nodes from 0 to 4294967295, not inf"),
        ("$TargetDedicatedNodes = 5e9", "not 5e+09"),
        ("$TargetDedicatedNodes = time()", "Line 1, Col 1: $TargetDedicatedNodes must be a double, not timestamp"),
        ("$TargetLowPriority = \"3\"", "$TargetLowPriority must be a double, not string"),
        (
            "$NodeDeallocationOption = \"drain\"",
            "$NodeDeallocationOption must be requeue, terminate, taskcompletion or retaineddata, not string drain",
        ),
        ("$NodeDeallocationOption = 1", "not double 1"),
    ];
    for (formula, want) in cases {
        let ev = run(formula);
        let e = ev.error.unwrap_or_else(|| panic!("{formula}: no error, {}", ev.results));
        assert_eq!(e.code, EVALUATION_ERROR, "{formula}");
        assert!(e.values[0].1.contains(want), "{formula}: {}", e.values[0].1);
        assert_eq!(ev.targets, None, "{formula}");
    }
    // A negative value set on the way is fine if the final one is not.
    let ev = run("$TargetDedicatedNodes = -1; $TargetDedicatedNodes = max(0, $TargetDedicatedNodes);");
    assert_eq!(ev.error, None);
    assert_eq!(ev.targets.unwrap().dedicated_nodes, 0);
}

#[test]
fn read_only_values_come_from_the_pool() {
    let samples = empty();
    let inputs = Inputs {
        current_dedicated_nodes: 3.0,
        current_low_priority_nodes: 5.0,
        usable_node_count: 7.0,
        task_slots_per_node: 4.0,
        ..Inputs::new(&samples)
    };
    let ev = run_with(
        "a = $CurrentDedicatedNodes; b = $CurrentLowPriorityNodes; c = $UsableNodeCount; d = $TaskSlotsPerNode; e = $CurrentDedicated; f = $usablenodecount",
        &inputs,
    );
    assert!(ev.results.ends_with(";a=3;b=5;c=7;d=4;e=3;f=7"), "{}", ev.results);
}

#[test]
fn a_failure_keeps_what_was_assigned_before_it() {
    let ev = run("$TargetDedicatedNodes = 5; a = 1; b = undefinedThing; c = 3;");
    let e = ev.error.expect("fails");
    assert_eq!(e.values[0].1, "Line 1, Col 39: Undefined variable undefinedThing");
    assert_eq!((e.line, e.col), (1, 39));
    assert_eq!(ev.results, "$TargetDedicatedNodes=5;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;a=1");
    assert_eq!(ev.targets, None);
    assert!(!ev.stopped);
}

#[test]
fn a_formula_evaluates_again_and_again() {
    let f = parse("$TargetDedicatedNodes = time().hour;").unwrap();
    let samples = empty();
    let inputs = Inputs::new(&samples);
    let at = |h: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 7, h, 30, 0).unwrap();
    assert_eq!(f.evaluate(&inputs, at(3)).targets.unwrap().dedicated_nodes, 3);
    assert_eq!(f.evaluate(&inputs, at(17)).targets.unwrap().dedicated_nodes, 17);
    assert_eq!(f.evaluate(&inputs, at(3)).results, f.evaluate(&inputs, at(3)).results);
}
