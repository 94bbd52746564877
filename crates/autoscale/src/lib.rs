//! The Azure Batch autoscale formula language, as the Azure Batch
//! documentation ("Create a formula to automatically scale compute nodes in
//! a Batch pool") describes it: a parser, an evaluator, and the per-pool
//! store of the samples formulas read. No I/O, no clock, no threads: the
//! caller passes the time and the pool's state.
//!
//! # Use
//!
//! ```
//! use autoscale::{parse, Inputs, Metric, Samples, Tick};
//! use chrono::{Duration, TimeZone, Utc};
//!
//! let formula = parse("$TargetDedicatedNodes = max(0, avg($PendingTasks.GetSample(TimeInterval_Minute * 5)) / 10);")
//!     .expect("valid");
//! let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
//! let mut samples = Samples::with_period(std::time::Duration::from_secs(30));
//! for i in (0..10).rev() {
//!     samples.record(now - Duration::seconds(30 * i), &Tick::new().with(Metric::PendingTasks, 40.0));
//! }
//! let run = formula.evaluate(&Inputs::new(&samples), now);
//! assert_eq!(run.error, None);
//! assert_eq!(run.results, "$TargetDedicatedNodes=4;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue");
//! assert_eq!(run.targets.unwrap().dedicated_nodes, 4);
//! ```
//!
//! * [`parse`] checks a formula's syntax and limits: a [`FormulaError`]
//!   carries the line, column and message, and its [`code`](FormulaError::code)
//!   is the one the service answers with (400 `AutoScalingFormulaSyntaxError`,
//!   or `AutoScalingFormulaTooLong` beyond 8,192 characters or 100 statements).
//! * [`Formula::evaluate`] runs it against [`Inputs`] (the pool's counts and
//!   targets, its [`Samples`], a seed for `rand()`) at a given time and
//!   returns an [`Evaluation`]: `results` rendered exactly as the service's
//!   `AutoScaleRun.results`, the typed variables, the [`Targets`] to apply,
//!   and `error` as `AutoScaleRun.error` carries it (`InsufficientSampleData`
//!   or `AutoScalingFormulaEvaluationError`, with a `Message` value
//!   `Line L, Col C: …`). Errors are data; nothing panics.
//! * [`Samples`] is the ring of sample ticks a server keeps per pool (24 h
//!   of 30-second ticks by default), with [`Samples::memory_bytes`].
//!
//! # The language
//!
//! A formula is statements separated by `;` (the last one may omit it):
//! `name = expression` or a bare expression, evaluated in order. `//`
//! starts a comment to the end of the line (the only kind documented).
//! Line breaks are free. User variables are named with or without a `$`;
//! the name is kept as written (`x` and `$x` are two variables) and the
//! results show it as written, as the service does (`…;$tasks=0;cappedPoolSize=3`).
//! System variable names match in any case.
//!
//! Types: `double`; `doubleVec`; `doubleVecList` (a function's argument
//! list of doubles and doubleVecs, flattened into one doubleVec); `string`
//! (`"…"`, and the constants `requeue`, `terminate`, `taskcompletion`,
//! `retaineddata`); `timestamp` (`time()`, `time("…")` in W3C-DTF or
//! RFC 1123; members `.year .month .day .weekday .hour .minute .second`,
//! weekday 0 = Sunday, 1 = Monday); `timeinterval` (`TimeInterval_Zero`,
//! `_100ns`, `_Microsecond`, `_Millisecond`, `_Second`, `_Minute`, `_Hour`,
//! `_Day`, `_Week`, `_Year` = 365 days).
//!
//! Operators, by the documentation's table (anything else is an evaluation
//! error naming the operator and the types): `double ± * / double`;
//! `double * timeinterval`, `timeinterval * / double`; `doubleVec ± * /
//! double` and `doubleVec ± * / doubleVec` (element-wise, equal lengths);
//! `timeinterval ± timeinterval`; `timestamp + timeinterval` (either order);
//! `timestamp - timestamp`; unary `-` on double and timeinterval, `!` on
//! double; `< <= == >= > !=` on two doubles, strings, timestamps or
//! timeintervals; `&& ||` on doubles (short-circuit); `c ? a : b` (nonzero
//! is true; only the branch taken is evaluated). Comparisons and logic give
//! 1 or 0. The precedence is C's.
//!
//! Functions: `avg len max min norm range std sum` of a doubleVecList
//! (`std` is the sample deviation; `avg max min range` need one value, `std`
//! two); `lg ln log` of a double (a double) or of anything else (a
//! doubleVec); `percentile(v, p)` (nearest rank, p from 0 to 100); `val(v,
//! i)` (index from 0); `rand()` (0 ≤ x < 1, from the seed); `stop()` (ends
//! the evaluation; what was assigned so far applies); `time()`.
//!
//! System variables: writable `$TargetDedicatedNodes` (alias
//! `$TargetDedicated`), `$TargetLowPriorityNodes` (alias
//! `$TargetLowPriority`) — a full name set by the formula wins over its
//! alias — and `$NodeDeallocationOption` (default `requeue`); the targets
//! start at the pool's current targets. Read-only plain values
//! `$CurrentDedicatedNodes` (also `$CurrentDedicated`),
//! `$CurrentLowPriorityNodes`, `$UsableNodeCount`, `$TaskSlotsPerNode`.
//! Read-only sample series (see [`Metric`]) `$CPUPercent $WallClockSeconds
//! $MemoryBytes $DiskBytes $DiskReadBytes $DiskWriteBytes $DiskReadOps
//! $DiskWriteOps $NetworkInBytes $NetworkOutBytes $SampleNodeCount
//! $ActiveTasks $RunningTasks $PendingTasks $SucceededTasks $FailedTasks
//! $PreemptedNodeCount`, read only through their methods:
//!
//! * `GetSample(count)`: the last `count` samples (fewer if the history
//!   has fewer), oldest first.
//! * `GetSample(start[, pct])`, `GetSample(start, end[, pct])`: the samples
//!   in a window whose bounds are timestamps or timeintervals looking back
//!   from now (`GetSample(1 * TimeInterval_Minute, 6 * TimeInterval_Minute)`
//!   is from six to one minutes ago; the end defaults to now). It fails
//!   with `InsufficientSampleData` ("Insufficient data from data set:
//!   $RunningTasks wanted 70%, received 50%") when the samples present are
//!   fewer than `pct` percent of those possible (the window's length over
//!   the sample period); `pct` defaults to [`DEFAULT_SAMPLE_PERCENT`].
//! * `GetSamplePercent(start[, end])`: that percentage (a double).
//! * `GetSamplePeriod()` (a timeinterval), `Count()` (samples in the
//!   history), `HistoryBeginTime()` (the oldest sample's timestamp).
//!
//! Samples are available to a formula as soon as they are recorded
//! (the service delays them by about a minute).
//!
//! Results: `$TargetDedicatedNodes`, `$TargetLowPriorityNodes`,
//! `$NodeDeallocationOption`, then every user variable assigned, sorted by
//! name, joined by `;`; doubles as `%g` prints them (`96.6667`), vectors as
//! `[1,2]`, timestamps as `2016-10-13T19:18:47.805Z`. A target is a
//! non-negative double; its fraction is dropped when applied.

mod error;
mod eval;
pub mod examples;
mod lexer;
mod parser;
mod samples;
mod value;

pub use error::{FormulaError, Pos, SYNTAX_ERROR, TOO_LONG};
pub use eval::{
    DeallocationOption, Evaluation, EvaluationError, Inputs, Targets, DEFAULT_SAMPLE_PERCENT, EVALUATION_ERROR, INSUFFICIENT_SAMPLE_DATA,
};
pub use parser::{parse, Formula, MAX_DEPTH, MAX_LENGTH, MAX_STATEMENTS};
pub use samples::{Metric, Samples, Tick, METRIC_COUNT};
pub use value::{format_double, format_interval, format_timestamp, parse_time, TimeInterval, Timestamp, Value, TICKS_PER_SECOND};
