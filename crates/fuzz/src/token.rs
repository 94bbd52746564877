//! `token`: task authentication tokens — the `Authorization: Bearer` credential
//! ([`api::tokens::bearer`]) and the token's parsing and verification
//! ([`api::tokens::verify`]), with [`api::tokens::issue`] as the oracle.
//!
//! The input is an `Authorization` header value (`Bearer obt1.…`) or a bare
//! token. Tokens in the corpus are issued under [`KEY`] and expire after [`NOW`].
//!
//! Checked:
//! * nothing panics;
//! * a bearer credential is what follows the scheme `Bearer`, trimmed;
//! * a token that verifies names its job, has not expired, is exactly the
//!   token [`api::tokens::issue`] makes for that job and expiry (up to the
//!   spelling of the expiry number), and does not verify under another key
//!   or once expired;
//! * the input taken as a job id: its issued token verifies to that job, as
//!   a bearer credential too, and not under another key, once expired, or
//!   for another job.

use crate::harness::{invariant, Features};
use api::tokens::{bearer, issue, verify, TOKEN_LIFETIME};
use axum::http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub const ABOUT: &str = "api::tokens bearer/verify on arbitrary credentials; accepted tokens are exactly issued ones";

/// The key the corpus tokens are issued under.
pub const KEY: &[u8] = b"openbatch-fuzz-token-key";
/// The clock the target verifies at (2027-01-15T08:00:00Z).
pub const NOW: i64 = 1_800_000_000;

pub const DICTIONARY: &[&str] = &[
    "Bearer ",
    "bearer ",
    "BEARER ",
    "SharedKey ",
    "obt1.",
    "obt2.",
    ".",
    "..",
    "am9iMQ",
    "am9iMQ.",
    "1800003600",
    "1800000000",
    "1799999999",
    "+1800003600",
    "01800003600",
    "-1",
    "9223372036854775807",
    "9223372036854775808",
    "=",
    "==",
    "-",
    "_",
    "+",
    "/",
    " ",
    "\t",
    "\u{e9}",
];

fn lifetime() -> i64 {
    TOKEN_LIFETIME.as_secs() as i64
}

pub fn run(data: &[u8], f: &mut Features) {
    let text = String::from_utf8_lossy(data);
    // As a header value, when it can be one.
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, v);
        match bearer(&headers) {
            Some(token) => {
                f.add("bearer", true);
                let value = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
                let (scheme, rest) = value.split_once(' ').unwrap_or_default();
                invariant!(scheme.eq_ignore_ascii_case("bearer") && rest.trim() == token, "bearer() of {value:?} is {token:?}");
                check_token(token, f);
            }
            None => f.add("bearer", false),
        }
    }
    check_token(&text, f);
    check_issued(data, &text, f);
}

/// What must hold of any token, given or made.
fn check_token(token: &str, f: &mut Features) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    f.add("parts", parts.len().min(6));
    let Some(job) = verify(KEY, token, NOW) else {
        f.add("verified", false);
        return;
    };
    f.add("verified", true);
    invariant!(parts.len() == 4 && parts[0] == "obt1", "{token:?} verifies with parts {parts:?}");
    let expiry: i64 = match parts[2].parse() {
        Ok(e) => e,
        Err(_) => panic!("invariant broken: {token:?} verifies with the expiry {:?}", parts[2]),
    };
    invariant!(NOW < expiry, "{token:?} verifies at {NOW} but expired at {expiry}");
    let reissued = issue(KEY, &job, expiry - lifetime());
    let again: Vec<&str> = reissued.split('.').collect();
    invariant!(
        again.len() == 4 && again[0] == parts[0] && again[1] == parts[1] && again[3] == parts[3] && again[2].parse() == Ok(expiry),
        "{token:?} verifies for job {job:?}, but the token issued for it is {reissued:?}"
    );
    invariant!(verify(b"another key", token, NOW).is_none(), "{token:?} verifies under another key");
    invariant!(verify(KEY, token, expiry).is_none(), "{token:?} still verifies when it expires at {expiry}");
}

/// The input as a job id: the token issued for it.
fn check_issued(data: &[u8], job: &str, f: &mut Features) {
    // A clock within the years the server will run (issue adds the lifetime).
    let now = data.iter().fold(0i64, |n, &b| (n * 31 + i64::from(b)) % (1 << 40));
    let token = issue(KEY, job, now);
    f.add("issued-len", token.len().min(64) / 8);
    invariant!(verify(KEY, &token, now).as_deref() == Some(job), "the token {token:?} issued for {job:?} does not verify");
    invariant!(verify(KEY, &token, now + lifetime() - 1).as_deref() == Some(job), "{token:?} expires early");
    invariant!(verify(KEY, &token, now + lifetime()).is_none(), "{token:?} outlives its lifetime");
    invariant!(verify(b"another key", &token, now).is_none(), "{token:?} verifies under another key");
    let other = format!("{job}x");
    let forged = token.replacen(&URL_SAFE_NO_PAD.encode(job), &URL_SAFE_NO_PAD.encode(&other), 1);
    invariant!(verify(KEY, &forged, now).is_none(), "{token:?} with its job changed to {other:?} verifies");
    let mut headers = HeaderMap::new();
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(v) => {
            headers.insert(AUTHORIZATION, v);
        }
        Err(_) => panic!("invariant broken: the token {token:?} is not a header value"),
    }
    invariant!(bearer(&headers) == Some(token.as_str()), "Bearer {token:?} gives {:?}", bearer(&headers));
}
