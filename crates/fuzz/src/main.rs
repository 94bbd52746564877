//! `openbatch-fuzz`: runs the fuzz targets of this crate on stable Rust.
//!
//! ```text
//! openbatch-fuzz list
//! openbatch-fuzz <target|all> [--seconds N] [--runs N] [--seed N] [--corpus DIR]...
//!                [--crashes DIR] [--max-len N] [--timeout S] [--save-new DIR]
//! openbatch-fuzz <target> --replay FILE_OR_DIR...
//! ```
//!
//! Exit status: 0 clean, 1 a crash (or hang), 2 bad usage.

use clap::Parser;
use fuzz::driver::{self, Options};
use fuzz::{target, TARGETS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "openbatch-fuzz", about = "Fuzzes openbatch's request parsers on stable Rust (see crates/fuzz/README.md)")]
struct Cli {
    /// A target name, `all` (each in turn), or `list`.
    target: String,
    /// Seconds of fuzzing per target, after replaying its corpus and regressions.
    #[arg(long, default_value_t = 10.0, env = "FUZZ_SECONDS")]
    seconds: f64,
    /// Stop after this many mutated inputs per target.
    #[arg(long)]
    runs: Option<u64>,
    /// The random seed (default: from the clock; printed, to repeat a run).
    #[arg(long, env = "FUZZ_SEED")]
    seed: Option<u64>,
    /// Seed directories (default: the target's corpus/ and regressions/ in this crate).
    #[arg(long)]
    corpus: Vec<PathBuf>,
    /// Where crashing inputs go (default: crates/fuzz/crashes/<target>/).
    #[arg(long)]
    crashes: Option<PathBuf>,
    /// The longest input made by mutation (default: the target's own).
    #[arg(long)]
    max_len: Option<usize>,
    /// Seconds one input may run before it counts as a hang.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Write inputs that reach new features to this directory (to curate the corpus).
    #[arg(long)]
    save_new: Option<PathBuf>,
    /// Only run these files (or every file in these directories) once.
    #[arg(long, num_args = 1..)]
    replay: Vec<PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.target == "list" {
        for t in TARGETS {
            println!("{:<10} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let targets: Vec<&'static fuzz::Target> = if cli.target == "all" {
        TARGETS.iter().collect()
    } else {
        match target(&cli.target) {
            Some(t) => vec![t],
            None => {
                eprintln!("openbatch-fuzz: no target {:?}; the targets are: {}", cli.target, names());
                return ExitCode::from(2);
            }
        }
    };
    if !cli.replay.is_empty() {
        let inputs = driver::load(&cli.replay);
        if inputs.is_empty() {
            eprintln!("openbatch-fuzz: nothing to replay in {:?}", cli.replay);
            return ExitCode::from(2);
        }
        let mut failed = false;
        for t in targets {
            match driver::replay(t, &inputs) {
                Ok(n) => println!("{}: {n} inputs replayed, no crash", t.name),
                Err(c) => {
                    eprintln!("{c}");
                    failed = true;
                }
            }
        }
        return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let seed = cli
        .seed
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let mut crashes = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let mut opts = Options::for_target(t);
        opts.seconds = cli.seconds;
        opts.runs = cli.runs;
        opts.seed = seed.wrapping_add(i as u64);
        if !cli.corpus.is_empty() {
            opts.corpus = cli.corpus.clone();
        }
        if let Some(c) = &cli.crashes {
            opts.crashes = if targets.len() > 1 { c.join(t.name) } else { c.clone() };
        }
        opts.max_len = cli.max_len;
        opts.timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
        opts.save_new = cli.save_new.as_ref().map(|d| if targets.len() > 1 { d.join(t.name) } else { d.clone() });
        opts.progress = !cli.quiet;
        println!("fuzz target '{}' for {} s (seed {}): {}", t.name, cli.seconds, opts.seed, t.about);
        match driver::fuzz(t, &opts) {
            Ok(r) => println!(
                "  {}: {} corpus and regression inputs replayed; {} mutated inputs in {:.1} s ({:.0}/s); pool {}, features {}, slowest run {:.1} ms; no crash",
                t.name,
                r.replayed,
                r.runs,
                r.elapsed.as_secs_f64(),
                r.runs as f64 / r.elapsed.as_secs_f64().max(1e-9),
                r.pool,
                r.features,
                r.slowest.as_secs_f64() * 1000.0
            ),
            Err(c) => {
                eprintln!("{c}");
                crashes.push(c);
            }
        }
    }
    if crashes.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "openbatch-fuzz: {} target(s) crashed: {}",
            crashes.len(),
            crashes.iter().map(|c| c.target).collect::<Vec<_>>().join(", ")
        );
        ExitCode::FAILURE
    }
}

fn names() -> String {
    TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}
