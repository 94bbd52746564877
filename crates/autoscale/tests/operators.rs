//! Every operator of the documentation's operations table, with its result
//! type, and the combinations the table does not have (errors).

mod common;
use common::{render, value_of};

/// (expression, the value as results renders it, its type). Expected values
/// are derived by hand from the documented definitions.
const VALID: &[(&str, &str, &str)] = &[
    // double operator double: + - * / → double
    ("1 + 2", "3", "double"),
    ("5 - 7", "-2", "double"),
    ("6 * 7", "42", "double"),
    ("7 / 2", "3.5", "double"),
    ("1 / 3", "0.333333", "double"),
    ("1 / 0", "inf", "double"),
    ("-1 / 0", "-inf", "double"),
    ("0.1 + 0.2", "0.3", "double"),
    ("1e3 + 2.5E-1", "1000.25", "double"),
    (".5 + 1", "1.5", "double"),
    // double * timeinterval → timeinterval, timeinterval * / double → timeinterval
    ("2 * TimeInterval_Minute", "PT2M", "timeinterval"),
    ("TimeInterval_Hour * 1.5", "PT1H30M", "timeinterval"),
    ("TimeInterval_Hour / 4", "PT15M", "timeinterval"),
    ("TimeInterval_Hour / 3", "PT20M", "timeinterval"),
    ("180 * TimeInterval_Second", "PT3M", "timeinterval"),
    ("0.5 * TimeInterval_Second", "PT0.5S", "timeinterval"),
    // doubleVec operator double: + - * / → doubleVec (lg(1,2,4) is [0,1,2])
    ("lg(1, 2, 4) + 1", "[1,2,3]", "doubleVec"),
    ("lg(1, 2, 4) - 1", "[-1,0,1]", "doubleVec"),
    ("lg(1, 2, 4) * 2", "[0,2,4]", "doubleVec"),
    ("lg(1, 2, 4) / 2", "[0,0.5,1]", "doubleVec"),
    // doubleVec operator doubleVec: element-wise
    ("lg(1, 2, 4) + lg(2, 4, 8)", "[1,3,5]", "doubleVec"),
    ("lg(2, 4, 8) - lg(1, 2, 4)", "[1,1,1]", "doubleVec"),
    ("lg(2, 4, 8) * lg(2, 4, 8)", "[1,4,9]", "doubleVec"),
    ("lg(2, 4, 8) / lg(2, 4, 4)", "[1,1,1.5]", "doubleVec"),
    // timeinterval ± timeinterval
    ("TimeInterval_Hour + TimeInterval_Minute", "PT1H1M", "timeinterval"),
    ("TimeInterval_Day - TimeInterval_Hour", "PT23H", "timeinterval"),
    ("TimeInterval_Minute - TimeInterval_Hour", "-PT59M", "timeinterval"),
    // timeinterval + timestamp, timestamp + timeinterval → timestamp
    ("TimeInterval_Hour + time()", "2026-12-07T13:00:00.000Z", "timestamp"),
    ("time() + TimeInterval_Day", "2026-12-08T12:00:00.000Z", "timestamp"),
    ("time() + (-6 * TimeInterval_Hour)", "2026-12-07T06:00:00.000Z", "timestamp"),
    ("time() + 1500 * TimeInterval_Millisecond", "2026-12-07T12:00:01.500Z", "timestamp"),
    // timestamp - timestamp → timeinterval
    ("time() - time(\"2026-12-07T11:00:00Z\")", "PT1H", "timeinterval"),
    ("time(\"2026-12-06\") - time()", "-P1DT12H", "timeinterval"),
    // operator double: - ! ; operator timeinterval: -
    ("-3", "-3", "double"),
    ("- -3", "3", "double"),
    ("!0", "1", "double"),
    ("!5", "0", "double"),
    ("!!7", "1", "double"),
    ("!-0.5", "0", "double"),
    ("-TimeInterval_Minute", "-PT1M", "timeinterval"),
    ("-(-TimeInterval_Minute)", "PT1M", "timeinterval"),
    // comparisons → double 1/0: double, string, timestamp, timeinterval
    ("1 < 2", "1", "double"),
    ("2 < 1", "0", "double"),
    ("2 <= 2", "1", "double"),
    ("3 >= 4", "0", "double"),
    ("3 > 2", "1", "double"),
    ("2 == 2", "1", "double"),
    ("2 != 2", "0", "double"),
    ("0.1 + 0.2 == 0.3", "0", "double"),
    ("\"abc\" < \"abd\"", "1", "double"),
    ("\"b\" > \"a\"", "1", "double"),
    ("\"B\" < \"a\"", "1", "double"),
    ("\"x\" == \"x\"", "1", "double"),
    ("\"x\" != \"y\"", "1", "double"),
    ("\"x\" >= \"y\"", "0", "double"),
    ("\"x\" <= \"x\"", "1", "double"),
    ("requeue == \"requeue\"", "1", "double"),
    ("time() > time(\"2016-01-01\")", "1", "double"),
    ("time() == time()", "1", "double"),
    ("time() <= time(\"2016-01-01\")", "0", "double"),
    ("time() != time() + TimeInterval_100ns", "1", "double"),
    ("TimeInterval_Minute < TimeInterval_Hour", "1", "double"),
    ("TimeInterval_Minute >= TimeInterval_Hour", "0", "double"),
    ("60 * TimeInterval_Second == TimeInterval_Minute", "1", "double"),
    ("60 * TimeInterval_Minute == TimeInterval_Hour", "1", "double"),
    ("24 * TimeInterval_Hour == TimeInterval_Day", "1", "double"),
    ("TimeInterval_Week == 7 * TimeInterval_Day", "1", "double"),
    ("TimeInterval_Year == 365 * TimeInterval_Day", "1", "double"),
    ("TimeInterval_Zero == 0 * TimeInterval_Hour", "1", "double"),
    ("1000 * TimeInterval_Millisecond == TimeInterval_Second", "1", "double"),
    ("1000 * TimeInterval_Microsecond == TimeInterval_Millisecond", "1", "double"),
    ("10 * TimeInterval_100ns == TimeInterval_Microsecond", "1", "double"),
    ("TimeInterval_Zero < TimeInterval_100ns", "1", "double"),
    // && || → double; short-circuit: the right side is not evaluated
    ("1 && 2", "1", "double"),
    ("1 && 0", "0", "double"),
    ("0 || 0", "0", "double"),
    ("0 || 3", "1", "double"),
    ("0 && neverAssigned", "0", "double"),
    ("1 || neverAssigned", "1", "double"),
    // ?: (nonzero is true; only the branch taken is evaluated; right-associative)
    ("1 ? 2 : 3", "2", "double"),
    ("0 ? 2 : 3", "3", "double"),
    ("0.5 ? 2 : 3", "2", "double"),
    ("-1 ? 2 : 3", "2", "double"),
    ("1 ? 2 : 0 ? 3 : 4", "2", "double"),
    ("0 ? 2 : 0 ? 3 : 4", "4", "double"),
    ("0 ? 2 : 1 ? 3 : 4", "3", "double"),
    ("1 ? 7 : neverAssigned", "7", "double"),
    ("0 ? neverAssigned : \"s\"", "s", "string"),
    ("1 ? time() : 0", "2026-12-07T12:00:00.000Z", "timestamp"),
    // precedence (C's)
    ("1 + 2 * 3", "7", "double"),
    ("(1 + 2) * 3", "9", "double"),
    ("10 - 4 - 3", "3", "double"),
    ("64 / 4 / 2", "8", "double"),
    ("1 + 2 < 4", "1", "double"),
    ("1 < 2 == 1", "1", "double"),
    ("0 && 1 || 1", "1", "double"),
    ("1 || 0 && 0", "1", "double"),
    ("-2 * 3", "-6", "double"),
    ("!0 + 1", "2", "double"),
    ("2 * -3", "-6", "double"),
    ("1 - -1", "2", "double"),
    ("3 > 2 ? 10 : 20", "10", "double"),
    // timestamp members
    ("time().year", "2026", "double"),
    ("time().month", "12", "double"),
    ("time().day", "7", "double"),
    ("time().weekday", "1", "double"),
    ("time().hour", "12", "double"),
    ("time().minute", "0", "double"),
    ("time().second", "0", "double"),
    ("time(\"2026-12-06T23:59:58Z\").weekday", "0", "double"),
    ("time(\"2026-12-12T23:59:58Z\").weekday", "6", "double"),
    ("time(\"2026-12-06T23:59:58Z\").hour", "23", "double"),
    ("time(\"2026-12-06T23:59:58Z\").minute", "59", "double"),
    ("time(\"2026-12-06T23:59:58Z\").second", "58", "double"),
    ("(time() + 13 * TimeInterval_Hour).day", "8", "double"),
];

#[test]
fn every_documented_operation_gives_its_documented_type() {
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

/// (expression, a part of the error message). Combinations missing from
/// the operations table are errors, as are domain errors.
const INVALID: &[(&str, &str)] = &[
    ("1 + TimeInterval_Minute", "Operator '+' is not defined for double and timeinterval"),
    ("TimeInterval_Minute + 1", "Operator '+' is not defined for timeinterval and double"),
    ("TimeInterval_Minute - 1", "Operator '-' is not defined for timeinterval and double"),
    ("TimeInterval_Minute / TimeInterval_Second", "Operator '/' is not defined for timeinterval and timeinterval"),
    ("TimeInterval_Minute * TimeInterval_Second", "Operator '*' is not defined for timeinterval and timeinterval"),
    ("1 / TimeInterval_Second", "Operator '/' is not defined for double and timeinterval"),
    ("1 - TimeInterval_Second", "Operator '-' is not defined for double and timeinterval"),
    ("time() - TimeInterval_Hour", "Operator '-' is not defined for timestamp and timeinterval"),
    ("TimeInterval_Hour - time()", "Operator '-' is not defined for timeinterval and timestamp"),
    ("time() + time()", "Operator '+' is not defined for timestamp and timestamp"),
    ("time() * 2", "Operator '*' is not defined for timestamp and double"),
    ("time() + 1", "Operator '+' is not defined for timestamp and double"),
    ("1 + lg(1, 2)", "Operator '+' is not defined for double and doubleVec"),
    ("2 * lg(1, 2)", "Operator '*' is not defined for double and doubleVec"),
    ("lg(1, 2) + lg(1, 2, 4)", "needs doubleVecs of the same length, not 2 and 3"),
    ("lg(1, 2) * TimeInterval_Hour", "Operator '*' is not defined for doubleVec and timeinterval"),
    ("lg(1, 2) < 1", "Operator '<' is not defined for doubleVec and double"),
    ("lg(1, 2) == lg(1, 2)", "Operator '==' is not defined for doubleVec and doubleVec"),
    ("\"a\" + \"b\"", "Operator '+' is not defined for string and string"),
    ("\"a\" < 1", "Operator '<' is not defined for string and double"),
    ("1 == \"1\"", "Operator '==' is not defined for double and string"),
    ("time() < TimeInterval_Hour", "Operator '<' is not defined for timestamp and timeinterval"),
    ("TimeInterval_Hour > 1", "Operator '>' is not defined for timeinterval and double"),
    ("-\"a\"", "Operator '-' is not defined for a string"),
    ("!TimeInterval_Hour", "Operator '!' is not defined for a timeinterval"),
    ("-time()", "Operator '-' is not defined for a timestamp"),
    ("-lg(1, 2)", "Operator '-' is not defined for a doubleVec"),
    ("!lg(1, 2)", "Operator '!' is not defined for a doubleVec"),
    ("\"a\" && 1", "'&&' tests a double, not a string"),
    ("1 && time()", "'&&' tests a double, not a timestamp"),
    ("0 || TimeInterval_Hour", "'||' tests a double, not a timeinterval"),
    ("time() ? 1 : 2", "'?:' tests a double, not a timestamp"),
    ("lg(1, 2) ? 1 : 2", "'?:' tests a double, not a doubleVec"),
    ("(1).hour", "A double has no members"),
    ("TimeInterval_Hour.hour", "A timeinterval has no members"),
    ("\"2016-01-01\".year", "A string has no members"),
    ("TimeInterval_Hour / 0", "Division of a timeinterval by zero"),
    ("1e300 * TimeInterval_Year", "The time interval is out of range"),
    ("TimeInterval_Year * 30000", "The time interval is out of range"),
    ("neverAssigned + 1", "Undefined variable neverAssigned"),
    ("$neverAssigned", "Undefined variable $neverAssigned"),
    ("1 ? neverAssigned : 2", "Undefined variable neverAssigned"),
];

#[test]
fn combinations_outside_the_table_are_evaluation_errors() {
    let mut failures = Vec::new();
    for (expr, want) in INVALID {
        match value_of(expr) {
            Ok(v) => failures.push(format!("{expr}: evaluated to {} {}", v.type_name(), v.render())),
            Err(e) if e.contains(want) && e.starts_with("Line 1, Col ") => {}
            Err(e) => failures.push(format!("{expr}: error {e:?} does not contain {want:?}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), INVALID.len(), failures.join("\n"));
}

#[test]
fn an_operator_error_names_the_operators_position() {
    // `result = ` is 9 characters: the '+' of "1 + time()" is at column 12.
    let e = value_of("1 + time()").unwrap_err();
    assert!(e.starts_with("Line 1, Col 12: "), "{e}");
    let e = value_of("1 +\n   time() * 2").unwrap_err();
    assert!(e.starts_with("Line 2, Col 11: Operator '*'"), "{e}");
}

#[test]
fn rendering_of_a_vector_of_samples() {
    assert_eq!(render("log(1, 10, 100, 1000)"), "[0,1,2,3]");
    assert_eq!(render("ln(1)"), "0");
}
