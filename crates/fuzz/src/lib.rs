//! Fuzz targets for the code that reads what a client sends, and the
//! stable-Rust driver that runs them (`openbatch-fuzz`, see `driver`).
//!
//! Each target is a plain function of the input bytes that must never panic.
//! Besides "does not panic", each checks invariants of what it calls — a
//! parsed filter printed and parsed again is the same filter, a routed
//! operation carries the percent-decoded segments of its path, a request
//! signed with [`api::sharedkey::sign`] verifies, and so on — and panics when
//! one does not hold, so the driver reports it like a crash.
//!
//! | target      | input                                                   | code under test |
//! |-------------|---------------------------------------------------------|-----------------|
//! | `route`     | `METHOD raw-target`                                     | `api::route::route` |
//! | `odata`     | a `$filter` (or `$select`) text                         | `wire::odata`, `store::filter_sql` run on SQLite |
//! | `sharedkey` | `METHOD raw-target` then `name: value` header lines     | `api::sharedkey::{verify, sign, string_to_sign}` |
//! | `token`     | an `Authorization` value or a bare token                | `api::tokens::{bearer, verify, issue}` |
//! | `body`      | a JSON request body, given to every body reader         | `wire::validate`, the pool and schedule body checks |
//!
//! The targets report *features* (which operation or error an input reached)
//! to the driver, which keeps inputs that reach new ones: a cheap stand-in for
//! coverage feedback, which stable Rust has no runtime for.

pub mod body;
pub mod driver;
pub mod harness;
pub mod odata;
pub mod route;
pub mod sharedkey;
pub mod token;

pub use harness::{Features, Target};

/// Every target, in the order `openbatch-fuzz all` runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "route", about: route::ABOUT, run: route::run, dictionary: route::DICTIONARY, max_len: 512 },
    Target { name: "odata", about: odata::ABOUT, run: odata::run, dictionary: odata::DICTIONARY, max_len: 2048 },
    Target { name: "sharedkey", about: sharedkey::ABOUT, run: sharedkey::run, dictionary: sharedkey::DICTIONARY, max_len: 2048 },
    Target { name: "token", about: token::ABOUT, run: token::run, dictionary: token::DICTIONARY, max_len: 512 },
    Target { name: "body", about: body::ABOUT, run: body::run, dictionary: body::DICTIONARY, max_len: 8192 },
];

/// The target of that name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs a target without feature collection: the form cargo-fuzz (or any
/// libFuzzer-style harness) calls, e.g.
/// `fuzz_target!(|data: &[u8]| fuzz::fuzz_one("odata", data));`.
pub fn fuzz_one(name: &str, data: &[u8]) {
    let t = target(name).unwrap_or_else(|| panic!("no fuzz target named {name:?}"));
    (t.run)(data, &mut Features::default());
}

/// The directory of this crate (corpora and regressions live under it).
pub fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
