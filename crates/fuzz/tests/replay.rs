//! Fast checks run by `cargo test`: every corpus and regression input of
//! every target runs clean, and a short fixed-seed fuzzing run of each
//! target finds nothing.

use fuzz::driver::{self, Options};
use fuzz::{crate_dir, TARGETS};
use std::sync::Mutex;

/// The driver watches the one input being run (for hangs and aborts): one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn every_target_has_a_corpus() {
    for t in TARGETS {
        let n = driver::load(&[crate_dir().join("corpus").join(t.name)]).len();
        assert!(n >= 10, "the corpus of {} has {n} inputs", t.name);
    }
}

#[test]
fn corpora_and_regressions_replay_clean() {
    let _one = serial();
    let mut failures = Vec::new();
    let mut total = 0;
    for t in TARGETS {
        let inputs = driver::load(&[crate_dir().join("corpus").join(t.name), crate_dir().join("regressions").join(t.name)]);
        total += inputs.len();
        if let Err(c) = driver::replay(t, &inputs) {
            failures.push(c.to_string());
        }
    }
    assert!(total > 100, "only {total} inputs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn short_fixed_seed_runs_are_clean() {
    let _one = serial();
    let crashes = std::env::temp_dir().join(format!("openbatch-fuzz-test-{}", std::process::id()));
    let mut failures = Vec::new();
    for t in TARGETS {
        let mut opts = Options::for_target(t);
        opts.seconds = 5.0;
        opts.runs = Some(2_000);
        opts.seed = 12_345;
        opts.crashes = crashes.join(t.name);
        match driver::fuzz(t, &opts) {
            Ok(r) => assert!(r.runs > 0 && r.features > 0, "{}: {r:?}", t.name),
            Err(c) => failures.push(c.to_string()),
        }
    }
    let _ = std::fs::remove_dir_all(&crashes);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The driver reports a panicking target with its input and message, and
/// minimises the input.
#[test]
fn the_driver_catches_and_minimises_a_panic() {
    fn boom(data: &[u8], _: &mut fuzz::Features) {
        if data.windows(3).any(|w| w == b"bad") {
            panic!("found the bad bytes");
        }
    }
    let _one = serial();
    static BOOM: fuzz::Target = fuzz::Target { name: "boom", about: "test", run: boom, dictionary: &["bad", "b", "a", "d"], max_len: 64 };
    let dir = std::env::temp_dir().join(format!("openbatch-fuzz-boom-{}", std::process::id()));
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("seed"), b"xxxxxxxxxxxx").unwrap();
    let mut opts = Options::for_target(&BOOM);
    opts.corpus = vec![corpus];
    opts.crashes = dir.join("crashes");
    opts.seconds = 20.0;
    opts.seed = 7;
    let crash = driver::fuzz(&BOOM, &opts).expect_err("the dictionary holds the bad bytes");
    assert_eq!(crash.input, b"bad", "minimised");
    assert!(crash.message.contains("found the bad bytes"), "{}", crash.message);
    let saved = crash.saved.clone().expect("written");
    assert_eq!(std::fs::read(&saved).unwrap(), b"bad");
    let text = crash.to_string();
    assert!(text.contains("input (3 bytes): \"bad\"") && text.contains("--replay"), "{text}");
    // A regression replays as a crash too.
    let again = driver::replay(&BOOM, &driver::load(&[saved])).unwrap_err();
    assert!(again.message.contains("found the bad bytes"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn escape_keeps_text_readable() {
    assert_eq!(driver::escape(b"a\"b\\c\n\x01\xff\xc3\xa9"), "a\\\"b\\\\c\\n\\u{1}\\xffé");
}
