//! What `parse` refuses (400 AutoScalingFormulaSyntaxError with line and
//! column, or AutoScalingFormulaTooLong), and what it accepts.

use autoscale::{examples, parse, FormulaError, MAX_DEPTH};

/// (formula, line, column, part of the message).
const SYNTAX_ERRORS: &[(&str, u32, u32, &str)] = &[
    ("$TargetDedicatedNodes = ;", 1, 25, "Unexpected ';'"),
    ("a = 1 +", 1, 8, "Unexpected the end of the formula"),
    ("a = (1 + 2", 1, 11, "Expected ')' but found the end of the formula"),
    ("a = 1 b = 2", 1, 7, "Unexpected 'b'; statements are separated by ';'"),
    ("a = 1\n  b = 2", 2, 3, "Unexpected 'b'; statements are separated by ';'"),
    ("a = 1 % 2", 1, 7, "Unexpected character '%'"),
    ("a = 'x'", 1, 5, "Unexpected character '''"),
    ("a = 1 & 2", 1, 7, "Unexpected character '&'"),
    ("a = 1 | 2", 1, 7, "Unexpected character '|'"),
    ("a = \"abc", 1, 5, "Unterminated string"),
    ("a = \"ab\nc\"", 1, 5, "Unterminated string"),
    ("$ = 1", 1, 1, "A '$' must be followed by a variable name"),
    ("a = 12abc", 1, 7, "Unexpected character 'a' after number '12'"),
    ("a = foo(1)", 1, 5, "Unknown function 'foo'"),
    ("a = Max(1)", 1, 5, "Unknown function 'Max'"),
    ("a = $CPUPercent.GetSamples(1)", 1, 17, "Unknown method 'GetSamples'"),
    ("a = x.GetSample(1)", 1, 7, "GetSample() is a method of the sampled system variables"),
    ("a = $CurrentDedicatedNodes.GetSample(1)", 1, 28, "GetSample() is a method of the sampled system variables"),
    ("a = $TargetDedicatedNodes.Count()", 1, 27, "Count() is a method of the sampled system variables"),
    ("a = time().hours", 1, 12, "Unknown member 'hours'"),
    ("a = time().", 1, 12, "Expected a member or method name after '.'"),
    ("a = rand(1)", 1, 5, "rand() takes 0 arguments, not 1"),
    ("a = stop(0)", 1, 5, "stop() takes 0 arguments, not 1"),
    ("a = val(1)", 1, 5, "val() takes 2 arguments, not 1"),
    ("a = percentile(1, 2, 3)", 1, 5, "percentile() takes 2 arguments, not 3"),
    ("a = time(\"a\", \"b\")", 1, 5, "time() takes 0 to 1 argument, not 2"),
    ("a = $CPUPercent.GetSample()", 1, 26, "GetSample() takes 1 to 3 arguments, not 0"),
    ("a = $CPUPercent.GetSample(1, 2, 3, 4)", 1, 26, "GetSample() takes 1 to 3 arguments, not 4"),
    ("a = $CPUPercent.GetSamplePercent()", 1, 33, "GetSamplePercent() takes 1 to 2 arguments, not 0"),
    ("a = $CPUPercent.Count(1)", 1, 22, "Count() takes 0 arguments, not 1"),
    ("a = $CPUPercent.GetSamplePeriod(1)", 1, 32, "GetSamplePeriod() takes 0 arguments, not 1"),
    ("a = $CPUPercent.HistoryBeginTime(1)", 1, 33, "HistoryBeginTime() takes 0 arguments, not 1"),
    ("$ActiveTasks = 5", 1, 1, "$ActiveTasks is read-only"),
    ("x = 1;\n$CurrentDedicatedNodes = 5", 2, 1, "$CurrentDedicatedNodes is read-only"),
    ("$currentdedicatednodes = 5", 1, 1, "$CurrentDedicatedNodes is read-only"),
    ("$TaskSlotsPerNode = 2", 1, 1, "$TaskSlotsPerNode is read-only"),
    ("$UsableNodeCount = 2", 1, 1, "$UsableNodeCount is read-only"),
    ("$CurrentLowPriorityNodes = 2", 1, 1, "$CurrentLowPriorityNodes is read-only"),
    ("max = 5", 1, 1, "'max' is a built-in name and cannot be assigned"),
    ("TimeInterval_Hour = 5", 1, 1, "'TimeInterval_Hour' is a built-in name"),
    ("requeue = 1", 1, 1, "'requeue' is a built-in name"),
    ("a = +1", 1, 5, "Unary '+' is not an operator"),
    ("a = 1 ? 2", 1, 10, "Expected ':' but found the end of the formula"),
    ("a = 1 ? 2 ; 3", 1, 11, "Expected ':' but found ';'"),
    ("a = (1, 2)", 1, 7, "Expected ')' but found ','"),
    ("a = max(1,)", 1, 11, "Unexpected ')'"),
    ("a = 1 == = 2", 1, 10, "Unexpected '='"),
    ("1 = 2", 1, 3, "Unexpected '='"),
    ("a = 1.", 1, 7, "Expected a member or method name after '.'"),
    ("", 1, 1, "The formula has no statements"),
    ("// only a comment", 1, 1, "The formula has no statements"),
    (" ; ;; ", 1, 1, "The formula has no statements"),
    ("\tx = 1;\n\t\ty == ;", 2, 8, "Unexpected ';'"),
    ("x = 1;\r\ny = )", 2, 5, "Unexpected ')'"),
    ("/* block */ a = 1", 1, 1, "Unexpected '/'"),
];

#[test]
fn syntax_errors_carry_line_column_and_message() {
    let mut failures = Vec::new();
    for (formula, line, col, msg) in SYNTAX_ERRORS {
        match parse(formula) {
            Ok(_) => failures.push(format!("{formula:?}: parsed")),
            Err(e) => {
                let pos = e.position().expect("a syntax error has a position");
                if e.code() != "AutoScalingFormulaSyntaxError" || (pos.line, pos.col) != (*line, *col) || !e.message().contains(msg) {
                    failures.push(format!("{formula:?}: got {} {e} (want {line}:{col} {msg:?})", e.code()));
                }
                if e.to_string() != format!("Line {line}, Col {col}: {}", e.message()) {
                    failures.push(format!("{formula:?}: displays as {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} wrong:\n{}", failures.len(), SYNTAX_ERRORS.len(), failures.join("\n"));
}

#[test]
fn the_documented_formula_with_a_missing_semicolon_is_refused() {
    let e = parse(examples::CPU_USAGE_MISSING_SEMICOLON).unwrap_err();
    assert_eq!(e.to_string(), "Line 8, Col 1: Unexpected '$NodeDeallocationOption'; statements are separated by ';'");
    assert!(parse(examples::CPU_USAGE).is_ok(), "the last statement needs no ';'");
}

#[test]
fn the_length_and_statement_limits() {
    let pad = |n: usize| format!("a=1;//{}", "x".repeat(n - 6));
    assert!(parse(&pad(8192)).is_ok());
    let e = parse(&pad(8193)).unwrap_err();
    assert_eq!(e.code(), "AutoScalingFormulaTooLong");
    assert_eq!(e.position(), None);
    assert!(e.message().contains("8193 characters long; at most 8192"), "{e}");
    // Characters, not bytes: '€' is three bytes and one character.
    let euro = format!("a=1;//{}", "€".repeat(8186));
    assert_eq!(euro.chars().count(), 8192);
    assert!(parse(&euro).is_ok());
    let stmts = |n: usize| (0..n).map(|i| format!("v{i} = {i}")).collect::<Vec<_>>().join(";");
    assert_eq!(parse(&stmts(100)).unwrap().statement_count(), 100);
    let e = parse(&stmts(101)).unwrap_err();
    assert_eq!(e.code(), "AutoScalingFormulaTooLong");
    assert!(e.message().contains("more than 100 statements"), "{e}");
    // Empty statements do not count.
    assert!(parse(&format!("{};;;;", stmts(100))).is_ok());
}

#[test]
fn nesting_is_bounded_and_never_overflows_the_stack() {
    let nested = |n: usize| format!("a = {}1{}", "(".repeat(n), ")".repeat(n));
    assert!(parse(&nested(MAX_DEPTH - 1)).is_ok());
    let e = parse(&nested(MAX_DEPTH + 1)).unwrap_err();
    assert!(e.message().contains("nested more than 64 levels"), "{e}");
    let unary = format!("a = {}1", "-".repeat(MAX_DEPTH + 1));
    assert!(parse(&unary).unwrap_err().message().contains("nested more than"));
    let calls = format!("a = {}1{}", "max(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
    assert!(parse(&calls).unwrap_err().message().contains("nested more than"));
    let ternaries = format!("a = {}1", "1 ? 1 : ".repeat(MAX_DEPTH + 1));
    assert!(parse(&ternaries).unwrap_err().message().contains("nested more than"));
    // 8 KB of parentheses, and the deepest accepted formula parsed and evaluated, on a thread
    // with half the stack of a tokio worker (2 MiB), in debug builds too.
    let worst = "(".repeat(8000);
    let deepest = format!("a = {}-{}5", "0 ? 1 : ".repeat(MAX_DEPTH / 2), "-".repeat(MAX_DEPTH / 2 - 2));
    let r = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            assert!(parse(&worst).is_err());
            let f = parse(&deepest).expect("within the bound");
            let samples = autoscale::Samples::with_period(std::time::Duration::from_secs(30));
            let ev = f.evaluate(&autoscale::Inputs::new(&samples), chrono::Utc::now());
            ev.error.is_none()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(r);
}

#[test]
fn accepted_forms() {
    let ok: &[&str] = &[
        "$TargetDedicatedNodes=3",
        "$TargetDedicatedNodes = 3;",
        "a = 1;;b = 2;",
        "a = 1 // trailing comment",
        "// leading\na = 1; // and\n// trailing",
        "a =\n  1\n  +\n  2;",
        "a = 1;\r\nb = 2;\r\n",
        "$something_useless",
        "something_useless",
        "1 + 1;",
        "a = $CPUPercent.GetSample(1);",
        "a = $cpupercent.getSample",
        "x = 1e-3; y = 2E+2; z = .25;",
        "a = (((((((1)))))));",
        "a = time(\"2016-10-13T19:18:47Z\").hour;",
        "$NodeDeallocationOption = retaineddata;",
        "débit = 1;",
        "_x = 1; x_1 = _x;",
    ];
    let mut failures = Vec::new();
    for f in ok {
        if let Err(e) = parse(f) {
            if !(*f == "a = $cpupercent.getSample" && e.message().contains("Unknown member 'getSample'")) {
                failures.push(format!("{f:?}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_documented_example_parses() {
    for (name, f) in examples::ALL {
        let formula = parse(f).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(formula.statement_count() >= 1, "{name}");
    }
    assert!(parse(&examples::example_4_initial_size("Mon, 07 Dec 2026 11:50:00 GMT")).is_ok());
    let f = parse(examples::EXAMPLE_3_PARALLEL).unwrap();
    assert_eq!(f.statement_count(), 7);
    assert_eq!(f.user_variables(), &["$samples", "$tasks", "$cores", "$extraVMs", "$targetVMs"]);
}

#[test]
fn the_error_type_reads_as_the_service_reports_it() {
    let e = parse("a = ").unwrap_err();
    assert!(matches!(e, FormulaError::Syntax { .. }));
    assert_eq!(e.code(), autoscale::SYNTAX_ERROR);
    assert_eq!(autoscale::TOO_LONG, "AutoScalingFormulaTooLong");
}
