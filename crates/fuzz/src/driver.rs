//! A small mutational fuzzer that runs on stable Rust.
//!
//! For a target it first replays every file of its corpus and regression
//! directories, then, until the time or run budget is spent, takes an input
//! from the pool (the corpus plus what it kept), applies a few random
//! mutations (bit flips, byte changes, inserts, deletes, duplicated or
//! repeated chunks, the target's dictionary tokens, numbers at the edges of
//! their types, multi-byte characters, splices with other inputs) and runs
//! the target under [`std::panic::catch_unwind`]. An input that reaches a
//! feature not seen before joins the pool.
//!
//! A panic is a crash: the input is minimised (chunks removed while the
//! panic stays at the same place), written to the crash directory, and
//! returned with the panic message. An abort (stack overflow, out of
//! memory, a panic while panicking) cannot be caught: a `SIGABRT` handler
//! writes the input being run to the crash directory before the process
//! dies. An input that runs longer than the timeout is written there too,
//! by a watchdog thread, and ends the process.

use crate::harness::{Features, Target};
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// How a fuzzing run is bounded and where it reads and writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wall-clock budget for mutation, after the replay.
    pub seconds: f64,
    /// Stop after this many mutated runs (whichever comes first).
    pub runs: Option<u64>,
    pub seed: u64,
    /// Directories (or files) of seed inputs.
    pub corpus: Vec<PathBuf>,
    /// Where crashing inputs are written.
    pub crashes: PathBuf,
    /// Longest mutated input; `None`: the target's own.
    pub max_len: Option<usize>,
    /// One run longer than this is reported as a hang.
    pub timeout: Duration,
    /// Write inputs that reached new features here (for curating the corpus).
    pub save_new: Option<PathBuf>,
    /// Print progress every few seconds.
    pub progress: bool,
}

impl Options {
    /// The defaults for a target: its corpus and regressions in this crate,
    /// crashes under `crashes/<target>`.
    pub fn for_target(target: &Target) -> Options {
        let dir = crate::crate_dir();
        Options {
            seconds: 10.0,
            runs: None,
            seed: 0,
            corpus: vec![dir.join("corpus").join(target.name), dir.join("regressions").join(target.name)],
            crashes: dir.join("crashes").join(target.name),
            max_len: None,
            timeout: Duration::from_secs(10),
            save_new: None,
            progress: false,
        }
    }
}

/// A run that ended without a crash.
#[derive(Debug, Clone)]
pub struct Report {
    pub replayed: usize,
    pub runs: u64,
    pub elapsed: Duration,
    pub pool: usize,
    pub features: usize,
    pub slowest: Duration,
}

/// An input on which the target panicked.
#[derive(Debug, Clone)]
pub struct Crash {
    pub target: &'static str,
    pub input: Vec<u8>,
    pub message: String,
    /// Where the (minimised) input was written, if it was.
    pub saved: Option<PathBuf>,
    /// The corpus or regression file it came from, when replaying.
    pub source: Option<PathBuf>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "CRASH in fuzz target '{}'", self.target)?;
        if let Some(s) = &self.source {
            writeln!(f, "  from file: {}", s.display())?;
        }
        writeln!(f, "  panic: {}", self.message)?;
        writeln!(f, "  input ({} bytes): \"{}\"", self.input.len(), escape(&self.input))?;
        if let Some(p) = &self.saved {
            writeln!(f, "  saved to: {}", p.display())?;
            writeln!(f, "  replay:   openbatch-fuzz {} --replay {}", self.target, p.display())?;
            writeln!(f, "  once fixed, keep it: move it to crates/fuzz/regressions/{}/", self.target)?;
        }
        Ok(())
    }
}

/// Bytes as a Rust string literal's contents (`\n`, `\x07`, `\u{e9}` kept readable as `é`).
pub fn escape(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running one input.

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

/// Panics inside a target are recorded, not printed; others go to the usual hook.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TARGET.with(Cell::get) {
                return previous(info);
            }
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into());
            let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
            *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{msg}\n  at {at}"));
        }));
    });
}

/// The input being run, for the abort handler and the watchdog.
static CURRENT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Milliseconds since [`epoch`] at which the current run started.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static EXECS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Runs the target once; `Err` holds the panic message.
pub fn execute(target: &Target, input: &[u8], features: &mut Features) -> Result<(), String> {
    install_panic_hook();
    features.clear();
    CURRENT_PTR.store(input.as_ptr() as *mut u8, Ordering::Release);
    CURRENT_LEN.store(input.len(), Ordering::Release);
    STARTED_MS.store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
    EXECS.fetch_add(1, Ordering::Relaxed);
    RUNNING.store(true, Ordering::Release);
    IN_TARGET.with(|t| t.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| (target.run)(input, features)));
    IN_TARGET.with(|t| t.set(false));
    RUNNING.store(false, Ordering::Release);
    CURRENT_LEN.store(0, Ordering::Release);
    r.map_err(|_| LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(|| "(no message)".into()))
}

/// The place a panic message names (`file:line:col`), to tell crashes apart.
fn place(message: &str) -> &str {
    message.rsplit("\n  at ").next().unwrap_or(message)
}

// ---------------------------------------------------------------------------
// Aborts and hangs.

/// The file the abort handler writes to (a leaked C string; changes per target).
static ABORT_PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
static ABORT_HANDLER: Once = Once::new();

/// Writes the input being run to the crash file and says so, with only
/// async-signal-safe calls, then ends the process.
extern "C" fn on_abort(_sig: libc::c_int) {
    fn say(s: &[u8]) {
        // SAFETY: write(2) of a valid buffer; async-signal-safe.
        unsafe { libc::write(2, s.as_ptr().cast(), s.len()) };
    }
    unsafe {
        let ptr = CURRENT_PTR.load(Ordering::Acquire);
        let len = if RUNNING.load(Ordering::Acquire) { CURRENT_LEN.load(Ordering::Acquire) } else { 0 };
        say(b"\nopenbatch-fuzz: the target aborted (stack overflow, out of memory, or a panic while panicking)\n");
        let path = ABORT_PATH.load(Ordering::Acquire);
        if !path.is_null() {
            let fd = libc::open(path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 0o644);
            if fd >= 0 && !ptr.is_null() {
                libc::write(fd, ptr.cast(), len);
                libc::close(fd);
            }
            say(b"  input saved to: ");
            say(std::ffi::CStr::from_ptr(path).to_bytes());
            say(b"\n");
        }
        if !ptr.is_null() {
            say(b"  input: \"");
            let mut buf = [0u8; 256];
            let mut n = 0;
            for i in 0..len.min(4096) {
                let b = *ptr.add(i);
                let hex = b"0123456789abcdef";
                let esc: [u8; 4] = [b'\\', b'x', hex[(b >> 4) as usize], hex[(b & 15) as usize]];
                let piece: &[u8] =
                    if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' { std::slice::from_ref(&*ptr.add(i)) } else { &esc };
                if n + piece.len() > buf.len() {
                    say(&buf[..n]);
                    n = 0;
                }
                buf[n..n + piece.len()].copy_from_slice(piece);
                n += piece.len();
            }
            say(&buf[..n]);
            say(b"\"\n");
        }
        libc::_exit(3);
    }
}

fn install_abort_handler(crashes: &Path, target: &str) {
    let path = crashes.join(format!("abort-{target}"));
    if let Ok(c) = CString::new(path.to_string_lossy().as_bytes().to_vec()) {
        ABORT_PATH.store(c.into_raw(), Ordering::Release);
        ABORT_HANDLER.call_once(|| unsafe {
            libc::signal(libc::SIGABRT, on_abort as extern "C" fn(libc::c_int) as libc::sighandler_t);
        });
    }
}

/// Ends the process when one run takes longer than `timeout`, after saving its input.
fn start_watchdog(timeout: Duration, crashes: PathBuf, target: &'static str, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            if !RUNNING.load(Ordering::Acquire) {
                continue;
            }
            let execs = EXECS.load(Ordering::Relaxed);
            let started = STARTED_MS.load(Ordering::Relaxed);
            let now = epoch().elapsed().as_millis() as u64;
            if now.saturating_sub(started) < timeout.as_millis() as u64 {
                continue;
            }
            // The run is stuck, so its input is alive and unchanged.
            let (ptr, len) = (CURRENT_PTR.load(Ordering::Acquire), CURRENT_LEN.load(Ordering::Acquire));
            if ptr.is_null() || EXECS.load(Ordering::Relaxed) != execs || !RUNNING.load(Ordering::Acquire) {
                continue;
            }
            let input = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
            let saved = save(&crashes, "timeout", &input);
            eprintln!(
                "\nHANG in fuzz target '{target}': one run has taken more than {:.1} s\n  input ({} bytes): \"{}\"\n  saved to: {}",
                timeout.as_secs_f64(),
                input.len(),
                escape(&input),
                saved.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(could not write)".into())
            );
            std::process::exit(1);
        }
    });
}

/// FNV-1a, for file names.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn save(dir: &Path, kind: &str, input: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{kind}-{:016x}", hash(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

// ---------------------------------------------------------------------------
// Inputs on disk.

/// Every file under the given directories (or the files themselves), sorted by path.
pub fn load(paths: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_file() {
            files.push(p.clone());
        } else if let Ok(rd) = std::fs::read_dir(p) {
            files.extend(rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files.into_iter().filter_map(|p| std::fs::read(&p).ok().map(|d| (p, d))).collect()
}

/// Runs every given input once.
pub fn replay(target: &'static Target, inputs: &[(PathBuf, Vec<u8>)]) -> Result<usize, Crash> {
    let mut features = Features::default();
    for (path, data) in inputs {
        if let Err(message) = execute(target, data, &mut features) {
            return Err(Crash { target: target.name, input: data.clone(), message, saved: None, source: Some(path.clone()) });
        }
    }
    Ok(inputs.len())
}

// ---------------------------------------------------------------------------
// Mutation.

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xc3, 0xe2, 0xf0, b' ', b'\t', b'\n', b'\r', b'"', b'\'', b'\\', b'/', b'%', b'?', b'&', b'=', b'+', b'(',
    b')', b',', b':', b'.', b'-', b'{', b'}', b'[', b']', b'0', b'9', b'a', b'Z', b'_', b'$',
];
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "7",
    "255",
    "256",
    "1000",
    "1001",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "0.5",
    "1e308",
    "1e999",
    "-1e999",
    "1e-400",
    "00",
    "+1",
    "1.",
    ".5",
];
const MULTIBYTE: &[&str] = &["é", "\u{0}", "\u{85}", "\u{a0}", "\u{2028}", "\u{fffd}", "\u{feff}", "\u{1F600}", "İ", "ß", "ﬀ", "K"];

/// Mutates inputs with a seeded generator.
pub struct Mutator {
    rng: fastrand::Rng,
    dictionary: &'static [&'static str],
    max_len: usize,
}

impl Mutator {
    pub fn new(seed: u64, dictionary: &'static [&'static str], max_len: usize) -> Mutator {
        Mutator { rng: fastrand::Rng::with_seed(seed), dictionary, max_len: max_len.max(1) }
    }

    fn pos(&mut self, data: &[u8]) -> usize {
        self.rng.usize(0..=data.len())
    }

    fn token(&mut self) -> &'static [u8] {
        if self.dictionary.is_empty() {
            b"0"
        } else {
            self.dictionary[self.rng.usize(0..self.dictionary.len())].as_bytes()
        }
    }

    /// Applies one to eight mutations; `others` are inputs to splice from.
    pub fn mutate(&mut self, data: &mut Vec<u8>, others: &[Vec<u8>]) {
        let spread = 1 << self.rng.u32(0..4);
        let n = 1 + self.rng.usize(0..spread);
        for _ in 0..n {
            self.mutate_once(data, others);
            data.truncate(self.max_len);
        }
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, others: &[Vec<u8>]) {
        let rng = &mut self.rng;
        match rng.u8(0..16) {
            // Bit flip.
            0 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                data[i] ^= 1 << rng.u8(0..8);
            }
            // Random or interesting byte.
            1 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                data[i] = if rng.bool() { rng.u8(..) } else { INTERESTING_BYTES[rng.usize(0..INTERESTING_BYTES.len())] };
            }
            // Add to a byte.
            2 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                data[i] = data[i].wrapping_add(rng.u8(1..=4)).wrapping_sub(if rng.bool() { 4 } else { 0 });
            }
            // Insert bytes.
            3 => {
                let i = self.pos(data);
                let k = self.rng.usize(1..=4);
                for _ in 0..k {
                    let b = if self.rng.bool() { self.rng.u8(..) } else { INTERESTING_BYTES[self.rng.usize(0..INTERESTING_BYTES.len())] };
                    data.insert(i, b);
                }
            }
            // Delete a range.
            4 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                let k = rng.usize(1..=(data.len() - i).min(16));
                data.drain(i..i + k);
            }
            // Duplicate a range elsewhere.
            5 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                let k = rng.usize(1..=(data.len() - i).min(32));
                let chunk = data[i..i + k].to_vec();
                let at = self.pos(data);
                data.splice(at..at, chunk);
            }
            // Insert a dictionary token.
            6 => {
                let t = self.token();
                let at = self.pos(data);
                data.splice(at..at, t.iter().copied());
            }
            // Overwrite with a dictionary token.
            7 if !data.is_empty() => {
                let t = self.token();
                let at = self.rng.usize(0..data.len());
                let end = (at + t.len()).min(data.len());
                data.splice(at..end, t.iter().copied());
            }
            // Replace a word (a run of letters and digits) with a token.
            8 if !data.is_empty() => {
                let at = self.rng.usize(0..data.len());
                let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
                let mut s = at;
                while s > 0 && word(&data[s - 1]) {
                    s -= 1;
                }
                let mut e = at;
                while e < data.len() && word(&data[e]) {
                    e += 1;
                }
                let t = self.token();
                data.splice(s..e, t.iter().copied());
            }
            // Splice with another input.
            9 if !others.is_empty() => {
                let other = &others[self.rng.usize(0..others.len())];
                if other.is_empty() {
                    return;
                }
                let i = self.rng.usize(0..other.len());
                let k = self.rng.usize(1..=(other.len() - i).min(64));
                let chunk = other[i..i + k].to_vec();
                let at = self.pos(data);
                if self.rng.bool() {
                    data.truncate(at);
                    data.extend_from_slice(&other[i..]);
                } else {
                    data.splice(at..at, chunk);
                }
            }
            // A number at the edge of its type, in place of a number.
            10 => {
                let n = INTERESTING_NUMBERS[self.rng.usize(0..INTERESTING_NUMBERS.len())].as_bytes();
                let digits: Vec<usize> = (0..data.len()).filter(|&i| data[i].is_ascii_digit()).collect();
                if digits.is_empty() {
                    let at = self.pos(data);
                    data.splice(at..at, n.iter().copied());
                } else {
                    let mut s = digits[self.rng.usize(0..digits.len())];
                    while s > 0 && (data[s - 1].is_ascii_digit() || data[s - 1] == b'-' || data[s - 1] == b'.') {
                        s -= 1;
                    }
                    let mut e = s;
                    while e < data.len() && (data[e].is_ascii_digit() || data[e] == b'.') {
                        e += 1;
                    }
                    data.splice(s..e, n.iter().copied());
                }
            }
            // Repeat a chunk many times (nesting, long lists).
            11 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                let k = rng.usize(1..=(data.len() - i).min(16));
                let times = rng.usize(2..=128);
                let chunk = data[i..i + k].to_vec();
                let room = self.max_len.saturating_sub(data.len()) / k.max(1);
                let times = times.min(room);
                let repeated: Vec<u8> = chunk.iter().copied().cycle().take(k * times).collect();
                data.splice(i..i, repeated);
            }
            // Swap two bytes.
            12 if data.len() > 1 => {
                let (a, b) = (rng.usize(0..data.len()), rng.usize(0..data.len()));
                data.swap(a, b);
            }
            // Cut the end off.
            13 if !data.is_empty() => {
                let at = rng.usize(0..data.len());
                data.truncate(at);
            }
            // A multi-byte character.
            14 => {
                let c = MULTIBYTE[self.rng.usize(0..MULTIBYTE.len())].as_bytes();
                let at = self.pos(data);
                data.splice(at..at, c.iter().copied());
            }
            // Change the case of a letter.
            15 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                data[i] = if data[i].is_ascii_lowercase() { data[i].to_ascii_uppercase() } else { data[i].to_ascii_lowercase() };
            }
            _ => {
                let t = self.token();
                data.extend_from_slice(t);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Minimising and the main loop.

/// Removes chunks of the input while the target still panics at the same
/// place, within a small budget.
pub fn minimize(target: &'static Target, input: &[u8], message: &str) -> (Vec<u8>, String) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let want = place(message).to_string();
    let mut best = input.to_vec();
    let mut best_msg = message.to_string();
    let mut features = Features::default();
    let mut chunk = (best.len() / 2).max(1);
    while chunk >= 1 && Instant::now() < deadline {
        let mut i = 0;
        let mut progressed = false;
        while i < best.len() && Instant::now() < deadline {
            let end = (i + chunk).min(best.len());
            let mut candidate = best.clone();
            candidate.drain(i..end);
            match execute(target, &candidate, &mut features) {
                Err(m) if place(&m) == want => {
                    best = candidate;
                    best_msg = m;
                    progressed = true;
                }
                _ => i += chunk,
            }
        }
        if !progressed {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    (best, best_msg)
}

/// The largest pool of inputs kept in memory.
const POOL_CAP: usize = 4096;

/// Replays the corpus and regressions, then fuzzes within the budget.
pub fn fuzz(target: &'static Target, opts: &Options) -> Result<Report, Crash> {
    let started = Instant::now();
    let _ = epoch();
    install_abort_handler(&opts.crashes, target.name);
    let _ = std::fs::create_dir_all(&opts.crashes);
    let stop = Arc::new(AtomicBool::new(false));
    start_watchdog(opts.timeout, opts.crashes.clone(), target.name, stop.clone());
    let result = fuzz_inner(target, opts, started);
    stop.store(true, Ordering::Relaxed);
    result
}

fn fuzz_inner(target: &'static Target, opts: &Options, started: Instant) -> Result<Report, Crash> {
    let seeds = load(&opts.corpus);
    let replayed = replay(target, &seeds)?;
    let mut pool: Vec<Vec<u8>> = seeds.into_iter().map(|(_, d)| d).collect();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let fixed = pool.len();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut features = Features::default();
    for input in &pool {
        let _ = execute(target, input, &mut features);
        seen.extend(features.iter());
    }
    let mut mutator = Mutator::new(opts.seed, target.dictionary, opts.max_len.unwrap_or(target.max_len));
    let budget = Duration::from_secs_f64(opts.seconds.max(0.0));
    let fuzz_start = Instant::now();
    let mut last_progress = Instant::now();
    let mut runs: u64 = 0;
    let mut slowest = Duration::ZERO;
    let mut input = Vec::new();
    loop {
        if opts.runs.is_some_and(|r| runs >= r) {
            break;
        }
        if runs.is_multiple_of(64) {
            if fuzz_start.elapsed() >= budget {
                break;
            }
            if opts.progress && last_progress.elapsed() >= Duration::from_secs(5) {
                last_progress = Instant::now();
                let secs = fuzz_start.elapsed().as_secs_f64();
                eprintln!(
                    "  {:>5.0} s  {:>10} runs  {:>8.0}/s  pool {:>5}  features {:>6}",
                    secs,
                    runs,
                    runs as f64 / secs.max(1e-9),
                    pool.len(),
                    seen.len()
                );
            }
        }
        input.clear();
        // Newer finds are picked as often as all the seeds together.
        let pick =
            if pool.len() > fixed && mutator.rng.bool() { mutator.rng.usize(fixed..pool.len()) } else { mutator.rng.usize(0..pool.len()) };
        input.extend_from_slice(&pool[pick]);
        mutator.mutate(&mut input, &pool);
        let t0 = Instant::now();
        let r = execute(target, &input, &mut features);
        slowest = slowest.max(t0.elapsed());
        runs += 1;
        if let Err(message) = r {
            let (small, message) = minimize(target, &input, &message);
            let saved = save(&opts.crashes, "crash", &small);
            return Err(Crash { target: target.name, input: small, message, saved, source: None });
        }
        let mut new = false;
        for h in features.iter() {
            new |= seen.insert(h);
        }
        if new {
            if let Some(dir) = &opts.save_new {
                let _ = save(dir, "new", &input);
            }
            if pool.len() < POOL_CAP {
                pool.push(input.clone());
            } else {
                let i = mutator.rng.usize(fixed..pool.len());
                pool[i] = input.clone();
            }
        }
    }
    let _ = started;
    Ok(Report { replayed, runs, elapsed: fuzz_start.elapsed(), pool: pool.len(), features: seen.len(), slowest })
}
