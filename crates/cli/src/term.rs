//! Terminal output: a progress bar on a terminal, plain periodic lines
//! otherwise; colour only where the stream is a terminal (and `NO_COLOR` is
//! not set: the `console` crate's rules).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is printed when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// What the output streams are.
#[derive(Clone, Copy, Debug)]
pub struct Term {
    /// stderr is a terminal: progress bars.
    pub bars: bool,
    /// stdout is a terminal: tables with box-drawing characters.
    pub out_tty: bool,
}

impl Term {
    pub fn detect() -> Term {
        Term { bars: std::io::stderr().is_terminal(), out_tty: std::io::stdout().is_terminal() }
    }
}

/// Progress of a count towards a total.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    every: Duration,
    last: Option<Instant>,
    last_text: String,
}

impl Progress {
    pub fn new(term: Term, label: &str) -> Progress {
        let bar = term.bars.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            let style = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:40.green/blue} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress { bar, label: label.to_string(), every: PLAIN_EVERY, last: None, last_text: String::new() }
    }

    /// Shows `pos` of `len` with a message; plain lines at most every
    /// [`PLAIN_EVERY`], and only when something changed.
    pub fn set(&mut self, pos: u64, len: u64, msg: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(len);
                bar.set_position(pos);
                bar.set_message(msg.to_string());
            }
            None => {
                let text = format!("{}: {pos}/{len} {msg}", self.label);
                let due = self.last.is_none_or(|t| t.elapsed() >= self.every);
                if due && text != self.last_text {
                    eprintln!("{text}");
                    self.last = Some(Instant::now());
                    self.last_text = text;
                }
            }
        }
    }

    /// Ends the bar, leaving its last state shown (a final plain line
    /// otherwise, unless it is the one printed last).
    pub fn finish(&mut self, pos: u64, len: u64, msg: &str) {
        match self.bar.take() {
            Some(bar) => {
                bar.set_length(len);
                bar.set_position(pos);
                bar.finish_with_message(msg.to_string());
            }
            None => {
                let text = format!("{}: {pos}/{len} {msg}", self.label);
                if text != self.last_text {
                    eprintln!("{text}");
                }
            }
        }
    }

    /// Removes the bar without a trace (before an error message).
    pub fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// A table for stdout: box-drawing on a terminal, ASCII otherwise.
pub fn table(term: Term, header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(if term.out_tty { comfy_table::presets::UTF8_FULL_CONDENSED } else { comfy_table::presets::ASCII_FULL_CONDENSED });
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    if !term.out_tty {
        // No terminal to fit: wide enough for a failure message.
        t.set_width(160);
    }
    t.set_header(header.iter().copied());
    t
}
