//! Tokens of a formula, each with the line and column where it starts.

use crate::error::{FormulaError, Pos};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Num(f64),
    Str(String),
    /// A name without `$`.
    Ident(String),
    /// A name with its leading `$` (kept in the string).
    Dollar(String),
    Plus,
    Minus,
    Star,
    Slash,
    Bang,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    AndAnd,
    OrOr,
    Question,
    Colon,
    Assign,
    Semi,
    Comma,
    LParen,
    RParen,
    Dot,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("number '{}'", crate::value::format_double(*n)),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Ident(s) | Tok::Dollar(s) => format!("'{s}'"),
            Tok::Eof => "the end of the formula".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Bang => "!",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Question => "?",
            Tok::Colon => ":",
            Tok::Assign => "=",
            Tok::Semi => ";",
            Tok::Comma => ",",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Dot => ".",
            _ => "",
        }
    }
}

/// Splits `text` into tokens; the last one is always `Eof`. Comments are
/// `//` to the end of the line (the only kind the documentation shows).
pub(crate) fn lex(text: &str) -> Result<Vec<(Tok, Pos)>, FormulaError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    // Advances over `n` characters that contain no newline.
    macro_rules! bump {
        ($n:expr) => {{
            i += $n;
            col += $n as u32;
        }};
    }
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            bump!(1);
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                bump!(1);
            }
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                bump!(1);
            }
            if i < chars.len() && chars[i] == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                bump!(1);
                while i < chars.len() && chars[i].is_ascii_digit() {
                    bump!(1);
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let sign = usize::from(matches!(chars.get(i + 1), Some('+') | Some('-')));
                if chars.get(i + 1 + sign).is_some_and(|d| d.is_ascii_digit()) {
                    bump!(1 + sign);
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        bump!(1);
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let n: f64 = s.parse().map_err(|_| FormulaError::syntax(pos, format!("Invalid number '{s}'")))?;
            if i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                return Err(FormulaError::syntax(Pos { line, col }, format!("Unexpected character '{}' after number '{s}'", chars[i])));
            }
            out.push((Tok::Num(n), pos));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            bump!(1);
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                bump!(1);
            }
            let s: String = chars[start..i].iter().collect();
            if c == '$' {
                if s.len() == 1 {
                    return Err(FormulaError::syntax(pos, "A '$' must be followed by a variable name"));
                }
                out.push((Tok::Dollar(s), pos));
            } else {
                out.push((Tok::Ident(s), pos));
            }
            continue;
        }
        if c == '"' {
            bump!(1);
            let start = i;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\n' {
                    return Err(FormulaError::syntax(pos, "Unterminated string"));
                }
                bump!(1);
            }
            if i == chars.len() {
                return Err(FormulaError::syntax(pos, "Unterminated string"));
            }
            let s: String = chars[start..i].iter().collect();
            bump!(1);
            out.push((Tok::Str(s), pos));
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('<', Some('=')) => (Tok::Le, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', Some('=')) => (Tok::Ne, 2),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('!', _) => (Tok::Bang, 1),
            ('<', _) => (Tok::Lt, 1),
            ('>', _) => (Tok::Gt, 1),
            ('=', _) => (Tok::Assign, 1),
            ('?', _) => (Tok::Question, 1),
            (':', _) => (Tok::Colon, 1),
            (';', _) => (Tok::Semi, 1),
            (',', _) => (Tok::Comma, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('.', _) => (Tok::Dot, 1),
            _ => return Err(FormulaError::syntax(pos, format!("Unexpected character '{c}'"))),
        };
        bump!(len);
        out.push((tok, pos));
    }
    out.push((Tok::Eof, Pos { line, col }));
    Ok(out)
}
