//! Evaluating a parsed formula against a pool's inputs.

use crate::error::Pos;
use crate::parser::{BinOp, Expr, Formula, Func, Method, Plain, UnOp, Var, Writable};
use crate::samples::{Metric, Samples};
use crate::value::{format_double, parse_time, TimeInterval, Timestamp, Value};
use chrono::{DateTime, Utc};

/// The `samplePercent` a time-window `GetSample` requires when the formula
/// gives none. The documentation calls the argument optional without a
/// default; the service fails such a call with "wanted 70%" (a recorded
/// `InsufficientSampleData` message for `avg($PendingTasks.GetSample(sli))`
/// on a new pool), which is why every documented example checks
/// `GetSamplePercent(...) < 70` before calling it.
pub const DEFAULT_SAMPLE_PERCENT: f64 = 70.0;

/// The error code of an evaluation that lacked samples.
pub const INSUFFICIENT_SAMPLE_DATA: &str = "InsufficientSampleData";
/// The error code of any other failed evaluation (an undefined variable,
/// types that do not fit an operator or function, ...).
pub const EVALUATION_ERROR: &str = "AutoScalingFormulaEvaluationError";

/// What `$NodeDeallocationOption` may be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeallocationOption {
    /// The default: running tasks are stopped and requeued.
    #[default]
    Requeue,
    Terminate,
    TaskCompletion,
    RetainedData,
}

impl DeallocationOption {
    pub fn as_str(self) -> &'static str {
        match self {
            DeallocationOption::Requeue => "requeue",
            DeallocationOption::Terminate => "terminate",
            DeallocationOption::TaskCompletion => "taskcompletion",
            DeallocationOption::RetainedData => "retaineddata",
        }
    }
    /// The option a value names (case-insensitive).
    pub fn parse(s: &str) -> Option<DeallocationOption> {
        [DeallocationOption::Requeue, DeallocationOption::Terminate, DeallocationOption::TaskCompletion, DeallocationOption::RetainedData]
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(s))
    }
}

/// Everything a formula reads from its pool.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The sampled variables' history.
    pub samples: &'a Samples,
    /// `$CurrentDedicatedNodes`.
    pub current_dedicated_nodes: f64,
    /// `$CurrentLowPriorityNodes` (preempted nodes included).
    pub current_low_priority_nodes: f64,
    /// `$UsableNodeCount`.
    pub usable_node_count: f64,
    /// `$TaskSlotsPerNode`.
    pub task_slots_per_node: f64,
    /// The pool's target before the evaluation: the initial value of
    /// `$TargetDedicatedNodes` (and of its alias).
    pub target_dedicated_nodes: f64,
    /// The initial value of `$TargetLowPriorityNodes` (and of its alias).
    pub target_low_priority_nodes: f64,
    /// The initial value of `$NodeDeallocationOption`.
    pub node_deallocation_option: DeallocationOption,
    /// Seeds `rand()`: the same seed gives the same numbers.
    pub rand_seed: u64,
}

impl<'a> Inputs<'a> {
    /// A pool with no nodes, targets 0, one task slot per node.
    pub fn new(samples: &'a Samples) -> Inputs<'a> {
        Inputs {
            samples,
            current_dedicated_nodes: 0.0,
            current_low_priority_nodes: 0.0,
            usable_node_count: 0.0,
            task_slots_per_node: 1.0,
            target_dedicated_nodes: 0.0,
            target_low_priority_nodes: 0.0,
            node_deallocation_option: DeallocationOption::Requeue,
            rand_seed: 0,
        }
    }
}

/// The pool targets an evaluation decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub dedicated_nodes: u32,
    pub low_priority_nodes: u32,
    pub node_deallocation_option: DeallocationOption,
}

/// `AutoScaleRun.error`: a code, a message and name/value details (the
/// service puts the position and cause in a value named `Message`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationError {
    pub code: &'static str,
    pub message: String,
    pub values: Vec<(String, String)>,
    /// Where in the formula it failed.
    pub line: u32,
    pub col: u32,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// `AutoScaleRun.results`: `$TargetDedicatedNodes=…;$TargetLowPriorityNodes=…;$NodeDeallocationOption=…`
    /// then every user variable assigned, sorted by name, as written.
    pub results: String,
    /// The same variables with their typed values, in the same order.
    pub variables: Vec<(String, Value)>,
    /// The targets to apply; `None` when the evaluation failed (the
    /// service then leaves the pool as it is).
    pub targets: Option<Targets>,
    /// `AutoScaleRun.error`.
    pub error: Option<EvaluationError>,
    /// Whether `stop()` ended the evaluation (which is not an error).
    pub stopped: bool,
}

#[derive(Debug)]
enum Halt {
    Stop,
    Fail { insufficient: bool, pos: Pos, detail: String },
}

fn fail<T>(pos: Pos, detail: impl Into<String>) -> Result<T, Halt> {
    Err(Halt::Fail { insufficient: false, pos, detail: detail.into() })
}

struct Ctx<'f, 'a> {
    formula: &'f Formula,
    inputs: &'f Inputs<'a>,
    now: Timestamp,
    user: Vec<Option<Value>>,
    sys: [Value; 5],
    assigned: [Option<Pos>; 5],
    rng: fastrand::Rng,
}

impl Formula {
    /// Evaluates the statements in order against `inputs` at `now` (what
    /// `time()` returns and the end of every sample window). Never panics:
    /// a failure is the returned evaluation's `error`.
    pub fn evaluate(&self, inputs: &Inputs, now: DateTime<Utc>) -> Evaluation {
        let mut cx = Ctx {
            formula: self,
            inputs,
            now: Timestamp::from_datetime(now),
            user: vec![None; self.user_names.len()],
            sys: [
                Value::Double(inputs.target_dedicated_nodes),
                Value::Double(inputs.target_dedicated_nodes),
                Value::Double(inputs.target_low_priority_nodes),
                Value::Double(inputs.target_low_priority_nodes),
                Value::String(inputs.node_deallocation_option.as_str().to_string()),
            ],
            assigned: [None; 5],
            rng: fastrand::Rng::with_seed(inputs.rand_seed),
        };
        let mut outcome = cx.run();
        let mut targets = None;
        if matches!(outcome, Ok(()) | Err(Halt::Stop)) {
            match cx.targets() {
                Ok(t) => targets = Some(t),
                Err(h) => outcome = Err(h),
            }
        }
        let variables = cx.variables();
        let results = variables.iter().map(|(n, v)| format!("{n}={}", v.render())).collect::<Vec<_>>().join(";");
        let (error, stopped) = match outcome {
            Ok(()) => (None, false),
            Err(Halt::Stop) => (None, true),
            Err(Halt::Fail { insufficient, pos, detail }) => {
                let (code, message) = if insufficient {
                    (INSUFFICIENT_SAMPLE_DATA, "Autoscale evaluation failed due to insufficient sample data")
                } else {
                    (EVALUATION_ERROR, "Autoscale evaluation failed due to an error in the formula")
                };
                let values = vec![("Message".to_string(), format!("Line {}, Col {}: {detail}", pos.line, pos.col))];
                (Some(EvaluationError { code, message: message.to_string(), values, line: pos.line, col: pos.col }), false)
            }
        };
        Evaluation { results, variables, targets: if error.is_some() { None } else { targets }, error, stopped }
    }
}

impl Ctx<'_, '_> {
    fn run(&mut self) -> Result<(), Halt> {
        for stmt in &self.formula.stmts {
            let v = self.eval(&stmt.expr)?;
            if let Some((var, pos)) = stmt.target {
                self.assign(var, v, pos)?;
            }
        }
        Ok(())
    }

    fn assign(&mut self, var: Var, v: Value, pos: Pos) -> Result<(), Halt> {
        match var {
            Var::User(i) => self.user[i] = Some(v),
            Var::Writable(Writable::NodeDeallocationOption) => {
                let opt = match &v {
                    Value::String(s) => DeallocationOption::parse(s),
                    _ => None,
                };
                let Some(opt) = opt else {
                    let msg = format!(
                        "$NodeDeallocationOption must be requeue, terminate, taskcompletion or retaineddata, not {} {}",
                        v.type_name(),
                        v.render()
                    );
                    return fail(pos, msg);
                };
                let w = Writable::NodeDeallocationOption.index();
                self.sys[w] = Value::String(opt.as_str().to_string());
                self.assigned[w] = Some(pos);
            }
            Var::Writable(w) => {
                if !matches!(v, Value::Double(_)) {
                    return fail(pos, format!("{} must be a double, not {}", w.name(), v.type_name()));
                }
                self.sys[w.index()] = v;
                self.assigned[w.index()] = Some(pos);
            }
            Var::Plain(_) | Var::Metric(_) => unreachable!("the parser refuses assignments to read-only variables"),
        }
        Ok(())
    }

    /// The final targets: a full name wins over its alias when both were set.
    fn targets(&self) -> Result<Targets, Halt> {
        let pick = |full: Writable, alias: Writable| {
            if self.assigned[full.index()].is_none() && self.assigned[alias.index()].is_some() {
                alias
            } else {
                full
            }
        };
        let count = |w: Writable, name: &str| -> Result<u32, Halt> {
            let pos = self.assigned[w.index()].unwrap_or(Pos { line: 1, col: 1 });
            match self.sys[w.index()] {
                // A fraction is dropped: the documentation's `(n + 3) / 4` rounds up this way.
                Value::Double(d) if (0.0..4_294_967_296.0).contains(&d) => Ok(d as u32),
                ref v => fail(pos, format!("{name} must be a number of nodes from 0 to 4294967295, not {}", v.render())),
            }
        };
        let dedicated = count(pick(Writable::TargetDedicatedNodes, Writable::TargetDedicated), "$TargetDedicatedNodes")?;
        let low = count(pick(Writable::TargetLowPriorityNodes, Writable::TargetLowPriority), "$TargetLowPriorityNodes")?;
        let option = match &self.sys[Writable::NodeDeallocationOption.index()] {
            Value::String(s) => DeallocationOption::parse(s).unwrap_or_default(),
            _ => DeallocationOption::Requeue,
        };
        Ok(Targets { dedicated_nodes: dedicated, low_priority_nodes: low, node_deallocation_option: option })
    }

    fn variables(&self) -> Vec<(String, Value)> {
        let effective = |full: Writable, alias: Writable| {
            if self.assigned[full.index()].is_none() && self.assigned[alias.index()].is_some() {
                self.sys[alias.index()].clone()
            } else {
                self.sys[full.index()].clone()
            }
        };
        let mut out = vec![
            ("$TargetDedicatedNodes".to_string(), effective(Writable::TargetDedicatedNodes, Writable::TargetDedicated)),
            ("$TargetLowPriorityNodes".to_string(), effective(Writable::TargetLowPriorityNodes, Writable::TargetLowPriority)),
            ("$NodeDeallocationOption".to_string(), self.sys[Writable::NodeDeallocationOption.index()].clone()),
        ];
        let mut users: Vec<(String, Value)> =
            self.formula.user_names.iter().zip(&self.user).filter_map(|(n, v)| v.clone().map(|v| (n.clone(), v))).collect();
        users.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(users);
        out
    }

    fn eval(&mut self, e: &Expr) -> Result<Value, Halt> {
        match e {
            Expr::Num(n) => Ok(Value::Double(*n)),
            Expr::Str(s) => Ok(Value::String(s.clone())),
            Expr::Interval(i) => Ok(Value::TimeInterval(*i)),
            Expr::Var(v, pos) => self.read(*v, *pos),
            Expr::Unary(op, e, pos) => {
                let v = self.eval(e)?;
                unary(*op, v, *pos)
            }
            Expr::Binary(op @ (BinOp::And | BinOp::Or), l, r, pos) => {
                let l = as_bool(self.eval(l)?, *pos, op.symbol())?;
                if (*op == BinOp::And && !l) || (*op == BinOp::Or && l) {
                    return Ok(Value::Double(if l { 1.0 } else { 0.0 }));
                }
                let r = as_bool(self.eval(r)?, *pos, op.symbol())?;
                Ok(Value::Double(if r { 1.0 } else { 0.0 }))
            }
            Expr::Binary(op, l, r, pos) => {
                let l = self.eval(l)?;
                let r = self.eval(r)?;
                binary(*op, l, r, *pos)
            }
            Expr::Ternary(c, yes, no, pos) => {
                if as_bool(self.eval(c)?, *pos, "?:")? {
                    self.eval(yes)
                } else {
                    self.eval(no)
                }
            }
            Expr::Member(e, member, pos) => match self.eval(e)? {
                Value::Timestamp(t) => match t.to_datetime() {
                    Some(dt) => Ok(Value::Double(member.of(dt))),
                    None => fail(*pos, "The timestamp is out of range"),
                },
                v => fail(*pos, format!("A {} has no members; only a timestamp has", v.type_name())),
            },
            Expr::Call(f, args, pos) => self.call(*f, args, *pos),
            Expr::Method(m, method, args, pos) => self.method(*m, *method, args, *pos),
        }
    }

    fn read(&self, v: Var, pos: Pos) -> Result<Value, Halt> {
        Ok(match v {
            Var::User(i) => match &self.user[i] {
                Some(v) => v.clone(),
                None => return fail(pos, format!("Undefined variable {}", self.formula.user_names[i])),
            },
            Var::Writable(w) => self.sys[w.index()].clone(),
            Var::Plain(p) => Value::Double(match p {
                Plain::CurrentDedicatedNodes => self.inputs.current_dedicated_nodes,
                Plain::CurrentLowPriorityNodes => self.inputs.current_low_priority_nodes,
                Plain::UsableNodeCount => self.inputs.usable_node_count,
                Plain::TaskSlotsPerNode => self.inputs.task_slots_per_node,
            }),
            Var::Metric(m) => {
                let msg = format!("{} is a series of samples: read it with GetSample(), GetSamplePercent(), Count(), ...", m.name());
                return fail(pos, msg);
            }
        })
    }

    fn call(&mut self, f: Func, args: &[Expr], pos: Pos) -> Result<Value, Halt> {
        match f {
            Func::Rand => return Ok(Value::Double(self.rng.f64())),
            Func::Stop => return Err(Halt::Stop),
            _ => {}
        }
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.eval(a)?);
        }
        let name = f.name();
        match f {
            Func::Time => match vals.pop() {
                None => Ok(Value::Timestamp(self.now)),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(Value::Timestamp(self.now)),
                Some(Value::String(s)) => match parse_time(&s) {
                    Some(t) => Ok(Value::Timestamp(t)),
                    None => fail(pos, format!("time(): \"{s}\" is neither a W3C-DTF nor an RFC 1123 date-time")),
                },
                Some(v) => fail(pos, format!("time() takes a string, not {}", v.type_name())),
            },
            Func::Lg | Func::Ln | Func::Log => {
                let op: fn(f64) -> f64 = match f {
                    Func::Lg => f64::log2,
                    Func::Ln => f64::ln,
                    _ => f64::log10,
                };
                // lg(double) is a double; a doubleVec or a list gives a doubleVec.
                if let [Value::Double(d)] = vals.as_slice() {
                    return Ok(Value::Double(op(*d)));
                }
                Ok(Value::DoubleVec(flatten(name, vals, pos)?.into_iter().map(op).collect()))
            }
            Func::Percentile => {
                let mut it = vals.into_iter();
                let (v, p) = (it.next(), it.next());
                let mut v = match v {
                    Some(Value::DoubleVec(v)) => v,
                    Some(Value::Double(d)) => vec![d],
                    Some(other) => return fail(pos, format!("percentile() takes a doubleVec first, not {}", other.type_name())),
                    None => unreachable!("arity checked by the parser"),
                };
                let p = match p {
                    Some(Value::Double(p)) if (0.0..=100.0).contains(&p) => p,
                    Some(Value::Double(p)) => return fail(pos, format!("percentile(): p must be from 0 to 100, not {}", format_double(p))),
                    Some(other) => return fail(pos, format!("percentile() takes a double second, not {}", other.type_name())),
                    None => unreachable!("arity checked by the parser"),
                };
                if v.is_empty() {
                    return fail(pos, "percentile() of an empty vector");
                }
                v.sort_by(f64::total_cmp);
                // Nearest rank: the smallest element with at least p% of the elements at or below it.
                let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
                Ok(Value::Double(v[rank.clamp(1, v.len()) - 1]))
            }
            Func::Val => {
                let mut it = vals.into_iter();
                let v = match it.next() {
                    Some(Value::DoubleVec(v)) => v,
                    Some(Value::Double(d)) => vec![d],
                    Some(other) => return fail(pos, format!("val() takes a doubleVec first, not {}", other.type_name())),
                    None => unreachable!("arity checked by the parser"),
                };
                let i = match it.next() {
                    Some(Value::Double(i)) => i,
                    Some(other) => return fail(pos, format!("val() takes a double index, not {}", other.type_name())),
                    None => unreachable!("arity checked by the parser"),
                };
                if !(i >= 0.0 && (i.trunc() as usize) < v.len()) {
                    return fail(pos, format!("val(): index {} is outside a vector of length {}", format_double(i), v.len()));
                }
                Ok(Value::Double(v[i.trunc() as usize]))
            }
            _ => {
                let v = flatten(name, vals, pos)?;
                let need = |n: usize| -> Result<(), Halt> {
                    if v.len() < n {
                        fail(pos, format!("{name}() needs at least {n} value{}, got {}", if n == 1 { "" } else { "s" }, v.len()))
                    } else {
                        Ok(())
                    }
                };
                let d = match f {
                    Func::Len => v.len() as f64,
                    Func::Sum => v.iter().sum(),
                    Func::Norm => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
                    Func::Avg => {
                        need(1)?;
                        v.iter().sum::<f64>() / v.len() as f64
                    }
                    Func::Max => {
                        need(1)?;
                        v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    }
                    Func::Min => {
                        need(1)?;
                        v.iter().copied().fold(f64::INFINITY, f64::min)
                    }
                    Func::Range => {
                        need(1)?;
                        v.iter().copied().fold(f64::NEG_INFINITY, f64::max) - v.iter().copied().fold(f64::INFINITY, f64::min)
                    }
                    Func::Std => {
                        // The sample standard deviation (n - 1 in the denominator).
                        need(2)?;
                        let mean = v.iter().sum::<f64>() / v.len() as f64;
                        (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
                    }
                    _ => unreachable!("every other function is handled above"),
                };
                Ok(Value::Double(d))
            }
        }
    }

    fn method(&mut self, m: Metric, method: Method, args: &[Expr], pos: Pos) -> Result<Value, Halt> {
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.eval(a)?);
        }
        let samples = self.inputs.samples;
        match method {
            Method::GetSamplePeriod => Ok(Value::TimeInterval(samples.period())),
            Method::Count => Ok(Value::Double(samples.count(m) as f64)),
            Method::HistoryBeginTime => match samples.begin_time(m) {
                Some(t) => Ok(Value::Timestamp(t)),
                None => Err(Halt::Fail {
                    insufficient: true,
                    pos,
                    detail: format!("Insufficient data from data set: {} has no samples", m.name()),
                }),
            },
            Method::GetSamplePercent => {
                let (from, to) = self.window(&vals[0], vals.get(1), pos)?;
                Ok(Value::Double(self.percent(m, from, to)))
            }
            Method::GetSample => {
                if let [Value::Double(count)] = vals.as_slice() {
                    if count.is_nan() || *count < 0.0 {
                        return fail(pos, format!("GetSample(): the count must not be negative, not {}", format_double(*count)));
                    }
                    let n = count.trunc().min(usize::MAX as f64) as usize;
                    return Ok(Value::DoubleVec(samples.last(m, n)));
                }
                if let Value::Double(_) = vals[0] {
                    return fail(pos, "GetSample(count) takes one argument; a time window starts with a timestamp or timeinterval");
                }
                // (start[, pct]) or (start, end[, pct]).
                let (end, pct) = match vals.as_slice() {
                    [_] => (None, None),
                    [_, Value::Double(p)] => (None, Some(*p)),
                    [_, end] => (Some(end), None),
                    [_, end, Value::Double(p)] => (Some(end), Some(*p)),
                    [_, _, other] => return fail(pos, format!("GetSample(): samplePercent must be a double, not {}", other.type_name())),
                    _ => unreachable!("arity checked by the parser"),
                };
                let pct = pct.unwrap_or(DEFAULT_SAMPLE_PERCENT);
                if !(0.0..=100.0).contains(&pct) {
                    return fail(pos, format!("GetSample(): samplePercent must be from 0 to 100, not {}", format_double(pct)));
                }
                let (from, to) = self.window(&vals[0], end, pos)?;
                let got = self.percent(m, from, to);
                if got < pct {
                    let detail = format!(
                        "Insufficient data from data set: {} wanted {}%, received {}%",
                        m.name(),
                        format_double(pct),
                        format_double(got)
                    );
                    return Err(Halt::Fail { insufficient: true, pos, detail });
                }
                Ok(Value::DoubleVec(samples.window(m, from, to)))
            }
        }
    }

    /// The window between two bounds (a timestamp, or a time interval
    /// looking back from now), the second defaulting to now; either order.
    fn window(&self, start: &Value, end: Option<&Value>, pos: Pos) -> Result<(Timestamp, Timestamp), Halt> {
        let instant = |v: &Value| -> Result<Timestamp, Halt> {
            match v {
                Value::Timestamp(t) => Ok(*t),
                Value::TimeInterval(i) => match self.now.0.checked_sub(i.0) {
                    Some(t) => Ok(Timestamp(t)),
                    None => fail(pos, "The time window is out of range"),
                },
                other => fail(pos, format!("A sample window is bounded by timestamps or timeintervals, not a {}", other.type_name())),
            }
        };
        let a = instant(start)?;
        let b = match end {
            Some(e) => instant(e)?,
            None => self.now,
        };
        Ok((a.min(b), a.max(b)))
    }

    /// The percentage of the samples possible in `(from, to]` (one per
    /// sample period) that are available, at most 100.
    fn percent(&self, m: Metric, from: Timestamp, to: Timestamp) -> f64 {
        let samples = self.inputs.samples;
        let n = samples.count_window(m, from, to) as f64;
        let period = samples.period().0.max(1);
        let possible = (to.0.saturating_sub(from.0) / period) as f64;
        if possible == 0.0 {
            return if n > 0.0 { 100.0 } else { 0.0 };
        }
        (n / possible * 100.0).min(100.0)
    }
}

fn as_bool(v: Value, pos: Pos, op: &str) -> Result<bool, Halt> {
    match v {
        Value::Double(d) => Ok(d != 0.0),
        other => fail(pos, format!("'{op}' tests a double, not a {}", other.type_name())),
    }
}

/// A doubleVecList's arguments flattened into one vector.
fn flatten(name: &str, vals: Vec<Value>, pos: Pos) -> Result<Vec<f64>, Halt> {
    let mut out = Vec::new();
    for (i, v) in vals.into_iter().enumerate() {
        match v {
            Value::Double(d) => out.push(d),
            Value::DoubleVec(v) => out.extend(v),
            other => return fail(pos, format!("{name}() takes doubles and doubleVecs; argument {} is a {}", i + 1, other.type_name())),
        }
    }
    Ok(out)
}

fn unary(op: UnOp, v: Value, pos: Pos) -> Result<Value, Halt> {
    match (op, v) {
        (UnOp::Neg, Value::Double(d)) => Ok(Value::Double(-d)),
        (UnOp::Not, Value::Double(d)) => Ok(Value::Double(if d == 0.0 { 1.0 } else { 0.0 })),
        (UnOp::Neg, Value::TimeInterval(i)) => match i.0.checked_neg() {
            Some(t) => Ok(Value::TimeInterval(TimeInterval(t))),
            None => fail(pos, "The time interval is out of range"),
        },
        (op, v) => {
            let sym = if op == UnOp::Neg { "-" } else { "!" };
            fail(pos, format!("Operator '{sym}' is not defined for a {}", v.type_name()))
        }
    }
}

fn arith(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        _ => a / b,
    }
}

fn scale(i: TimeInterval, d: f64, pos: Pos) -> Result<Value, Halt> {
    let t = (i.0 as f64 * d).round();
    if !t.is_finite() || t.abs() >= 9.2e18 {
        return fail(pos, "The time interval is out of range");
    }
    Ok(Value::TimeInterval(TimeInterval(t as i64)))
}

fn timestamp(ticks: Option<i64>, pos: Pos) -> Result<Value, Halt> {
    match ticks.map(Timestamp) {
        Some(t) if t.to_datetime().is_some() => Ok(Value::Timestamp(t)),
        _ => fail(pos, "The timestamp is out of range"),
    }
}

fn compare<T: PartialOrd>(op: BinOp, a: T, b: T) -> Value {
    let r = match op {
        BinOp::Lt => a < b,
        BinOp::Le => a <= b,
        BinOp::Gt => a > b,
        BinOp::Ge => a >= b,
        BinOp::Eq => a == b,
        _ => a != b,
    };
    Value::Double(if r { 1.0 } else { 0.0 })
}

/// The operations table of the documentation; any other combination is an error.
fn binary(op: BinOp, l: Value, r: Value, pos: Pos) -> Result<Value, Halt> {
    use BinOp::*;
    use Value as V;
    match (op, l, r) {
        (Add | Sub | Mul | Div, V::Double(a), V::Double(b)) => Ok(V::Double(arith(op, a, b))),
        (Mul, V::Double(d), V::TimeInterval(i)) | (Mul, V::TimeInterval(i), V::Double(d)) => scale(i, d, pos),
        (Div, V::TimeInterval(i), V::Double(d)) => {
            if d == 0.0 {
                return fail(pos, "Division of a timeinterval by zero");
            }
            let t = (i.0 as f64 / d).round();
            if !t.is_finite() || t.abs() >= 9.2e18 {
                return fail(pos, "The time interval is out of range");
            }
            Ok(V::TimeInterval(TimeInterval(t as i64)))
        }
        (Add | Sub | Mul | Div, V::DoubleVec(v), V::Double(d)) => Ok(V::DoubleVec(v.into_iter().map(|x| arith(op, x, d)).collect())),
        (Add | Sub | Mul | Div, V::DoubleVec(a), V::DoubleVec(b)) => {
            if a.len() != b.len() {
                return fail(
                    pos,
                    format!("Operator '{}' needs doubleVecs of the same length, not {} and {}", op.symbol(), a.len(), b.len()),
                );
            }
            Ok(V::DoubleVec(a.into_iter().zip(b).map(|(x, y)| arith(op, x, y)).collect()))
        }
        (Add, V::TimeInterval(a), V::TimeInterval(b)) => match a.0.checked_add(b.0) {
            Some(t) => Ok(V::TimeInterval(TimeInterval(t))),
            None => fail(pos, "The time interval is out of range"),
        },
        (Sub, V::TimeInterval(a), V::TimeInterval(b)) => match a.0.checked_sub(b.0) {
            Some(t) => Ok(V::TimeInterval(TimeInterval(t))),
            None => fail(pos, "The time interval is out of range"),
        },
        (Add, V::TimeInterval(i), V::Timestamp(t)) | (Add, V::Timestamp(t), V::TimeInterval(i)) => timestamp(t.0.checked_add(i.0), pos),
        (Sub, V::Timestamp(a), V::Timestamp(b)) => match a.0.checked_sub(b.0) {
            Some(t) => Ok(V::TimeInterval(TimeInterval(t))),
            None => fail(pos, "The time interval is out of range"),
        },
        (Lt | Le | Gt | Ge | Eq | Ne, V::Double(a), V::Double(b)) => Ok(compare(op, a, b)),
        (Lt | Le | Gt | Ge | Eq | Ne, V::String(a), V::String(b)) => Ok(compare(op, a, b)),
        (Lt | Le | Gt | Ge | Eq | Ne, V::Timestamp(a), V::Timestamp(b)) => Ok(compare(op, a, b)),
        (Lt | Le | Gt | Ge | Eq | Ne, V::TimeInterval(a), V::TimeInterval(b)) => Ok(compare(op, a, b)),
        (op, l, r) => fail(pos, format!("Operator '{}' is not defined for {} and {}", op.symbol(), l.type_name(), r.type_name())),
    }
}
