//! Where a formula is wrong, and the error `parse` returns.

/// A position in the formula text: 1-based line and column (columns count
/// characters, a tab is one column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// The error code of a formula with a syntax error.
pub const SYNTAX_ERROR: &str = "AutoScalingFormulaSyntaxError";
/// The error code of a formula over the length or statement limit (the
/// service's error table spells it so; the .NET SDK's constant for it reads
/// `AutoScaleFormulaTooLong`).
pub const TOO_LONG: &str = "AutoScalingFormulaTooLong";

/// Why a formula was refused: what the service answers with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormulaError {
    /// The text does not follow the grammar.
    #[error("Line {}, Col {}: {message}", pos.line, pos.col)]
    Syntax { pos: Pos, message: String },
    /// Longer than 8,192 characters, or more than 100 statements.
    #[error("{0}")]
    TooLong(String),
}

impl FormulaError {
    pub(crate) fn syntax(pos: Pos, message: impl Into<String>) -> FormulaError {
        FormulaError::Syntax { pos, message: message.into() }
    }
    /// The Batch error code: `AutoScalingFormulaSyntaxError` or `AutoScalingFormulaTooLong`.
    pub fn code(&self) -> &'static str {
        match self {
            FormulaError::Syntax { .. } => SYNTAX_ERROR,
            FormulaError::TooLong(_) => TOO_LONG,
        }
    }
    /// Where the error is (none for a formula over the limits).
    pub fn position(&self) -> Option<Pos> {
        match self {
            FormulaError::Syntax { pos, .. } => Some(*pos),
            FormulaError::TooLong(_) => None,
        }
    }
    /// The message without the position.
    pub fn message(&self) -> &str {
        match self {
            FormulaError::Syntax { message, .. } | FormulaError::TooLong(message) => message,
        }
    }
}
