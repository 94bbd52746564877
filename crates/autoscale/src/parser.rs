//! The formula grammar (a recursive-descent parser) and its syntax tree.
//!
//! ```text
//! formula    := statement (';' statement)*          -- at most 100 non-empty statements
//! statement  := ε | name '=' expr | expr
//! expr       := or ('?' expr ':' expr)?             -- right-associative
//! or         := and ('||' and)*
//! and        := equality ('&&' equality)*
//! equality   := relation (('==' | '!=') relation)*
//! relation   := additive (('<' | '<=' | '>' | '>=') additive)*
//! additive   := term (('+' | '-') term)*
//! term       := unary (('*' | '/') unary)*
//! unary      := ('-' | '!') unary | postfix
//! postfix    := primary ('.' member | '.' method '(' args ')')*
//! primary    := number | string | name | function '(' args ')' | '(' expr ')'
//! ```
//!
//! The precedence is C's (the documentation gives none). Names are checked
//! here only where the grammar fixes them (functions, methods, timestamp
//! members, constants, read-only variables); whether a variable is defined
//! and whether types fit is decided when the formula is evaluated, as the
//! service does (`$something_useless` evaluates to an error, it is not
//! refused).

use crate::error::{FormulaError, Pos};
use crate::lexer::{lex, Tok};
use crate::samples::Metric;
use crate::value::{TimeInterval, TimestampMember, TICKS_PER_SECOND};

/// Most statements in a formula.
pub const MAX_STATEMENTS: usize = 100;
/// Longest formula, in UTF-16 code units as the service counts a string's length.
pub const MAX_LENGTH: usize = 8192;
/// Deepest nesting of parentheses, unary operators, ternaries and calls.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writable {
    TargetDedicatedNodes,
    TargetDedicated,
    TargetLowPriorityNodes,
    TargetLowPriority,
    NodeDeallocationOption,
}

impl Writable {
    pub(crate) const ALL: [Writable; 5] = [
        Writable::TargetDedicatedNodes,
        Writable::TargetDedicated,
        Writable::TargetLowPriorityNodes,
        Writable::TargetLowPriority,
        Writable::NodeDeallocationOption,
    ];
    pub(crate) fn name(self) -> &'static str {
        match self {
            Writable::TargetDedicatedNodes => "$TargetDedicatedNodes",
            Writable::TargetDedicated => "$TargetDedicated",
            Writable::TargetLowPriorityNodes => "$TargetLowPriorityNodes",
            Writable::TargetLowPriority => "$TargetLowPriority",
            Writable::NodeDeallocationOption => "$NodeDeallocationOption",
        }
    }
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Read-only system variables that are plain values, not sample series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plain {
    CurrentDedicatedNodes,
    CurrentLowPriorityNodes,
    UsableNodeCount,
    TaskSlotsPerNode,
}

impl Plain {
    const ALL: [Plain; 4] = [Plain::CurrentDedicatedNodes, Plain::CurrentLowPriorityNodes, Plain::UsableNodeCount, Plain::TaskSlotsPerNode];
    pub(crate) fn name(self) -> &'static str {
        match self {
            Plain::CurrentDedicatedNodes => "$CurrentDedicatedNodes",
            Plain::CurrentLowPriorityNodes => "$CurrentLowPriorityNodes",
            Plain::UsableNodeCount => "$UsableNodeCount",
            Plain::TaskSlotsPerNode => "$TaskSlotsPerNode",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    User(usize),
    Writable(Writable),
    Plain(Plain),
    Metric(Metric),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Avg,
    Len,
    Lg,
    Ln,
    Log,
    Max,
    Min,
    Norm,
    Percentile,
    Rand,
    Range,
    Std,
    Stop,
    Sum,
    Time,
    Val,
}

impl Func {
    fn from_name(s: &str) -> Option<Func> {
        Some(match s {
            "avg" => Func::Avg,
            "len" => Func::Len,
            "lg" => Func::Lg,
            "ln" => Func::Ln,
            "log" => Func::Log,
            "max" => Func::Max,
            "min" => Func::Min,
            "norm" => Func::Norm,
            "percentile" => Func::Percentile,
            "rand" => Func::Rand,
            "range" => Func::Range,
            "std" => Func::Std,
            "stop" => Func::Stop,
            "sum" => Func::Sum,
            "time" => Func::Time,
            "val" => Func::Val,
            _ => return None,
        })
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::Avg => "avg",
            Func::Len => "len",
            Func::Lg => "lg",
            Func::Ln => "ln",
            Func::Log => "log",
            Func::Max => "max",
            Func::Min => "min",
            Func::Norm => "norm",
            Func::Percentile => "percentile",
            Func::Rand => "rand",
            Func::Range => "range",
            Func::Std => "std",
            Func::Stop => "stop",
            Func::Sum => "sum",
            Func::Time => "time",
            Func::Val => "val",
        }
    }
    /// Allowed argument counts (`None`: any, a doubleVecList).
    fn arity(self) -> Option<(usize, usize)> {
        match self {
            Func::Percentile | Func::Val => Some((2, 2)),
            Func::Rand | Func::Stop => Some((0, 0)),
            Func::Time => Some((0, 1)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    GetSample,
    GetSamplePercent,
    GetSamplePeriod,
    Count,
    HistoryBeginTime,
}

impl Method {
    fn from_name(s: &str) -> Option<Method> {
        Some(match s {
            "GetSample" => Method::GetSample,
            "GetSamplePercent" => Method::GetSamplePercent,
            "GetSamplePeriod" => Method::GetSamplePeriod,
            "Count" => Method::Count,
            "HistoryBeginTime" => Method::HistoryBeginTime,
            _ => return None,
        })
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::GetSample => "GetSample",
            Method::GetSamplePercent => "GetSamplePercent",
            Method::GetSamplePeriod => "GetSamplePeriod",
            Method::Count => "Count",
            Method::HistoryBeginTime => "HistoryBeginTime",
        }
    }
    fn arity(self) -> (usize, usize) {
        match self {
            Method::GetSample => (1, 3),
            Method::GetSamplePercent => (1, 2),
            Method::GetSamplePeriod | Method::Count | Method::HistoryBeginTime => (0, 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Num(f64),
    Str(String),
    Interval(TimeInterval),
    Var(Var, Pos),
    Unary(UnOp, Box<Expr>, Pos),
    Binary(BinOp, Box<Expr>, Box<Expr>, Pos),
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>, Pos),
    Call(Func, Vec<Expr>, Pos),
    /// `pos` is the `(` after the method name, where the service reports
    /// sample errors ("Line 9, Col 43" for `…$PendingTasks.GetSample(sli)`).
    Method(Metric, Method, Vec<Expr>, Pos),
    Member(Box<Expr>, TimestampMember, Pos),
}

#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub target: Option<(Var, Pos)>,
    pub expr: Expr,
}

/// A parsed formula, ready to evaluate any number of times.
#[derive(Debug, Clone)]
pub struct Formula {
    pub(crate) stmts: Vec<Stmt>,
    /// User variable names as written (with their `$` when they have one).
    pub(crate) user_names: Vec<String>,
}

impl Formula {
    /// Non-empty statements.
    pub fn statement_count(&self) -> usize {
        self.stmts.len()
    }
    /// The user variables the formula names, as written.
    pub fn user_variables(&self) -> &[String] {
        &self.user_names
    }
}

const DEALLOCATION_CONSTANTS: [&str; 4] = ["requeue", "terminate", "taskcompletion", "retaineddata"];

fn interval_constant(name: &str) -> Option<TimeInterval> {
    let s = TICKS_PER_SECOND;
    Some(TimeInterval(match name {
        "TimeInterval_Zero" => 0,
        "TimeInterval_100ns" => 1,
        "TimeInterval_Microsecond" => 10,
        "TimeInterval_Millisecond" => 10_000,
        "TimeInterval_Second" => s,
        "TimeInterval_Minute" => 60 * s,
        "TimeInterval_Hour" => 3_600 * s,
        "TimeInterval_Day" => 86_400 * s,
        "TimeInterval_Week" => 7 * 86_400 * s,
        "TimeInterval_Year" => 365 * 86_400 * s,
        _ => return None,
    }))
}

/// Parses a formula (see the crate documentation for the language).
pub fn parse(text: &str) -> Result<Formula, FormulaError> {
    let units = text.encode_utf16().count();
    if units > MAX_LENGTH {
        return Err(FormulaError::TooLong(format!("The formula is {units} characters long; at most {MAX_LENGTH} are allowed.")));
    }
    let toks = lex(text)?;
    let mut p = Parser { toks, i: 0, depth: 0, user_names: Vec::new() };
    let mut stmts = Vec::new();
    loop {
        if !matches!(p.peek(), Tok::Semi | Tok::Eof) {
            let stmt = p.statement()?;
            stmts.push(stmt);
            if stmts.len() > MAX_STATEMENTS {
                return Err(FormulaError::TooLong(format!("The formula has more than {MAX_STATEMENTS} statements.")));
            }
        }
        match p.peek() {
            Tok::Semi => {
                p.i += 1;
            }
            Tok::Eof => break,
            other => {
                let msg = format!("Unexpected {}; statements are separated by ';'", other.describe());
                return Err(FormulaError::syntax(p.pos(), msg));
            }
        }
    }
    if stmts.is_empty() {
        return Err(FormulaError::syntax(Pos { line: 1, col: 1 }, "The formula has no statements"));
    }
    Ok(Formula { stmts, user_names: p.user_names })
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    depth: usize,
    user_names: Vec<String>,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn peek2(&self) -> &Tok {
        &self.toks[(self.i + 1).min(self.toks.len() - 1)].0
    }
    fn pos(&self) -> Pos {
        self.toks[self.i].1
    }
    fn next(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<Pos, FormulaError> {
        if *self.peek() == want {
            Ok(self.next().1)
        } else {
            Err(FormulaError::syntax(self.pos(), format!("Expected {what} but found {}", self.peek().describe())))
        }
    }
    fn enter(&mut self) -> Result<(), FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FormulaError::syntax(self.pos(), format!("The expression is nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn user_var(&mut self, name: &str) -> Var {
        match self.user_names.iter().position(|n| n == name) {
            Some(i) => Var::User(i),
            None => {
                self.user_names.push(name.to_string());
                Var::User(self.user_names.len() - 1)
            }
        }
    }

    /// A `$name` as a variable: a system variable (any case) or a user one.
    fn dollar_var(&mut self, name: &str) -> Var {
        if let Some(w) = Writable::ALL.iter().find(|w| w.name().eq_ignore_ascii_case(name)) {
            return Var::Writable(*w);
        }
        if let Some(p) = Plain::ALL.iter().find(|p| p.name().eq_ignore_ascii_case(name)) {
            return Var::Plain(*p);
        }
        // The older name the REST and PowerShell references still use.
        if name.eq_ignore_ascii_case("$CurrentDedicated") {
            return Var::Plain(Plain::CurrentDedicatedNodes);
        }
        if let Some(m) = Metric::from_name(name) {
            return Var::Metric(m);
        }
        self.user_var(name)
    }

    fn statement(&mut self) -> Result<Stmt, FormulaError> {
        if matches!(self.peek(), Tok::Ident(_) | Tok::Dollar(_)) && *self.peek2() == Tok::Assign {
            let (tok, pos) = self.next();
            self.next();
            let var = match tok {
                Tok::Dollar(name) => match self.dollar_var(&name) {
                    Var::Plain(p) => return Err(FormulaError::syntax(pos, format!("{} is read-only", p.name()))),
                    Var::Metric(m) => return Err(FormulaError::syntax(pos, format!("{} is read-only", m.name()))),
                    v => v,
                },
                Tok::Ident(name) => {
                    if Func::from_name(&name).is_some()
                        || interval_constant(&name).is_some()
                        || DEALLOCATION_CONSTANTS.contains(&name.as_str())
                    {
                        return Err(FormulaError::syntax(pos, format!("'{name}' is a built-in name and cannot be assigned")));
                    }
                    self.user_var(&name)
                }
                _ => unreachable!("checked by the match above"),
            };
            let expr = self.expr()?;
            return Ok(Stmt { target: Some((var, pos)), expr });
        }
        let expr = self.expr()?;
        Ok(Stmt { target: None, expr })
    }

    fn expr(&mut self) -> Result<Expr, FormulaError> {
        self.enter()?;
        let cond = self.binary(0)?;
        let out = if *self.peek() == Tok::Question {
            let pos = self.next().1;
            let yes = self.expr()?;
            self.expect(Tok::Colon, "':'")?;
            let no = self.expr()?;
            Expr::Ternary(Box::new(cond), Box::new(yes), Box::new(no), pos)
        } else {
            cond
        };
        self.depth -= 1;
        Ok(out)
    }

    /// Binary operators by precedence level, loosest first.
    fn binary(&mut self, level: usize) -> Result<Expr, FormulaError> {
        const LEVELS: [&[(Tok, BinOp)]; 6] = [
            &[(Tok::OrOr, BinOp::Or)],
            &[(Tok::AndAnd, BinOp::And)],
            &[(Tok::EqEq, BinOp::Eq), (Tok::Ne, BinOp::Ne)],
            &[(Tok::Lt, BinOp::Lt), (Tok::Le, BinOp::Le), (Tok::Gt, BinOp::Gt), (Tok::Ge, BinOp::Ge)],
            &[(Tok::Plus, BinOp::Add), (Tok::Minus, BinOp::Sub)],
            &[(Tok::Star, BinOp::Mul), (Tok::Slash, BinOp::Div)],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some((_, op)) = LEVELS[level].iter().find(|(t, _)| t == self.peek()) {
            let op = *op;
            let pos = self.next().1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right), pos);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FormulaError> {
        let op = match self.peek() {
            Tok::Minus => UnOp::Neg,
            Tok::Bang => UnOp::Not,
            Tok::Plus => return Err(FormulaError::syntax(self.pos(), "Unary '+' is not an operator of the formula language")),
            _ => return self.postfix(),
        };
        self.enter()?;
        let pos = self.next().1;
        let e = self.unary()?;
        self.depth -= 1;
        Ok(Expr::Unary(op, Box::new(e), pos))
    }

    fn postfix(&mut self) -> Result<Expr, FormulaError> {
        let mut e = self.primary()?;
        while *self.peek() == Tok::Dot {
            self.next();
            let (tok, pos) = self.next();
            let Tok::Ident(name) = tok else {
                return Err(FormulaError::syntax(pos, format!("Expected a member or method name after '.' but found {}", tok.describe())));
            };
            if *self.peek() == Tok::LParen {
                let Some(method) = Method::from_name(&name) else {
                    return Err(FormulaError::syntax(pos, format!("Unknown method '{name}'")));
                };
                let Expr::Var(Var::Metric(metric), _) = e else {
                    let msg = format!("{name}() is a method of the sampled system variables ($ActiveTasks, $CPUPercent, ...)");
                    return Err(FormulaError::syntax(pos, msg));
                };
                let paren = self.pos();
                let args = self.args()?;
                let (lo, hi) = method.arity();
                if args.len() < lo || args.len() > hi {
                    return Err(FormulaError::syntax(paren, arity_message(method.name(), lo, hi, args.len())));
                }
                e = Expr::Method(metric, method, args, paren);
            } else {
                let Some(member) = TimestampMember::from_name(&name) else {
                    return Err(FormulaError::syntax(
                        pos,
                        format!("Unknown member '{name}' (a timestamp has year, month, day, weekday, hour, minute and second)"),
                    ));
                };
                e = Expr::Member(Box::new(e), member, pos);
            }
        }
        Ok(e)
    }

    fn args(&mut self) -> Result<Vec<Expr>, FormulaError> {
        self.enter()?;
        self.expect(Tok::LParen, "'('")?;
        let mut args = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                args.push(self.expr()?);
                if *self.peek() == Tok::Comma {
                    self.next();
                } else {
                    break;
                }
            }
        }
        self.expect(Tok::RParen, "')'")?;
        self.depth -= 1;
        Ok(args)
    }

    fn primary(&mut self) -> Result<Expr, FormulaError> {
        let (tok, pos) = self.next();
        match tok {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::Dollar(name) => Ok(Expr::Var(self.dollar_var(&name), pos)),
            Tok::Ident(name) => {
                if *self.peek() == Tok::LParen {
                    let Some(func) = Func::from_name(&name) else {
                        return Err(FormulaError::syntax(pos, format!("Unknown function '{name}'")));
                    };
                    let args = self.args()?;
                    if let Some((lo, hi)) = func.arity() {
                        if args.len() < lo || args.len() > hi {
                            return Err(FormulaError::syntax(pos, arity_message(func.name(), lo, hi, args.len())));
                        }
                    }
                    return Ok(Expr::Call(func, args, pos));
                }
                if let Some(i) = interval_constant(&name) {
                    return Ok(Expr::Interval(i));
                }
                if DEALLOCATION_CONSTANTS.contains(&name.as_str()) {
                    return Ok(Expr::Str(name));
                }
                Ok(Expr::Var(self.user_var(&name), pos))
            }
            other => Err(FormulaError::syntax(pos, format!("Unexpected {}", other.describe()))),
        }
    }
}

fn arity_message(name: &str, lo: usize, hi: usize, got: usize) -> String {
    let want = if lo == hi { format!("{lo}") } else { format!("{lo} to {hi}") };
    format!("{name}() takes {want} argument{}, not {got}", if hi == 1 { "" } else { "s" })
}
