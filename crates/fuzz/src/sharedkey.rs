//! `sharedkey`: SharedKey verification ([`api::sharedkey::verify`]) — the
//! Authorization header's parsing, the date check and the canonicalisation
//! of arbitrary headers and request targets — and the signing side.
//!
//! The input is a request as text:
//!
//! ```text
//! METHOD raw-target [clock skew in seconds]
//! Name: value
//! ...
//! ```
//!
//! The server's clock is the request's own `ocp-date` (or `Date`) plus the
//! skew, so that mutated requests still reach the signature check. Two
//! accounts are configured, as in the reference vectors: `testacct` and `acct`.
//!
//! Checked, for each account:
//! * verification never panics, and each failure has the status and code of its kind;
//! * the request signed by [`api::sharedkey::sign`] verifies (or fails only on its date);
//! * signed with another key, it never verifies;
//! * a verified request no longer verifies with another method, another path,
//!   or one more query parameter.

use crate::harness::{invariant, Features};
use api::sharedkey::{sign, string_to_sign, verify, AuthFailure, SharedKeyConfig};
use axum::http::{header::AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, Method};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};

pub const ABOUT: &str = "api::sharedkey verify/sign over arbitrary requests; signed requests verify, tampered ones do not";

pub const DICTIONARY: &[&str] = &[
    "\n",
    "GET ",
    "POST ",
    "PUT ",
    "PATCH ",
    "DELETE ",
    "HEAD ",
    "Authorization: ",
    "SharedKey ",
    "SharedKey testacct:",
    "SharedKey acct:",
    "Bearer ",
    "ocp-date: ",
    "Date: ",
    "Content-Length: ",
    "Content-Length: 0",
    "Content-Type: application/json; odata=minimalmetadata",
    "Content-MD5: ",
    "If-Match: ",
    "If-None-Match: *",
    "Range: bytes=0-9",
    "x-ms-ocp-thing: ",
    "ocp-x: ",
    "client-request-id: ",
    "Tue, 24 Nov 2026 21:59:04 GMT",
    "Mon, 01 Jan 2001 00:00:00 GMT",
    " +0000",
    " 900",
    " -901",
    "?api-version=2025-06-01",
    "&timeOut=30",
    "&timeout=30",
    "&$filter=state%20eq%20%27completed%27",
    "&$select=id%2Cstate",
    "&",
    "=",
    "+",
    "%2F",
    "%20",
    "%FF",
    "%",
    "/jobs/job1/tasks",
    "/jobs/a%20b%2Fc",
    "=",
    ":",
    "\t",
    "\u{e9}",
    "\u{ff}",
];

/// The account and key of most reference vectors, and of the JS ones.
fn configs() -> [SharedKeyConfig; 2] {
    let key = STANDARD.decode("dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleXRlc3RrZXk=").unwrap_or_default();
    [
        SharedKeyConfig { account: "testacct".into(), keys: vec![key] },
        SharedKeyConfig { account: "acct".into(), keys: vec![b"key".to_vec()] },
    ]
}

/// A request read from the input: method, raw target, headers and the server's clock.
pub struct Request {
    pub method: Method,
    pub target: String,
    pub headers: HeaderMap,
    pub now: DateTime<Utc>,
}

const DEFAULT_NOW: &str = "Tue, 24 Nov 2026 21:59:04 GMT";

/// Reads the input's request; lines that are not valid headers are skipped,
/// as hyper would refuse them before the verifier sees them.
pub fn parse_request(data: &[u8]) -> Request {
    let mut lines = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, |&b| b == b' ');
    let method = Method::from_bytes(words.next().unwrap_or_default()).unwrap_or(Method::GET);
    let target = String::from_utf8_lossy(words.next().unwrap_or(b"/")).into_owned();
    let skew: i64 = words.next().and_then(|w| std::str::from_utf8(w).ok()).and_then(|w| w.trim().parse().ok()).unwrap_or(0);
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(line[..colon].trim_ascii()), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let date = ["ocp-date", "date"]
        .iter()
        .filter_map(|n| headers.get(*n))
        .map(|v| v.as_bytes().iter().map(|&b| char::from(b)).collect::<String>())
        .find(|v| !v.trim().is_empty())
        .and_then(|v| DateTime::parse_from_rfc2822(v.trim()).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| DateTime::parse_from_rfc2822(DEFAULT_NOW).map(|d| d.with_timezone(&Utc)).unwrap_or_default());
    let now = TimeDelta::try_seconds(skew).and_then(|d| date.checked_add_signed(d)).unwrap_or(date);
    Request { method, target, headers, now }
}

fn kind(r: &Result<(), AuthFailure>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(AuthFailure::Missing) => "missing",
        Err(AuthFailure::Malformed(_)) => "malformed",
        Err(AuthFailure::BadDate(_)) => "date",
        Err(AuthFailure::WrongAccount(_)) => "account",
        Err(AuthFailure::BadSignature(_)) => "signature",
    }
}

fn check_failure(e: &AuthFailure) {
    let (status, code) = match e {
        AuthFailure::Missing => (401, "InvalidAuthenticationInfo"),
        AuthFailure::Malformed(_) => (400, "InvalidAuthenticationInfo"),
        _ => (403, "AuthenticationFailed"),
    };
    invariant!(e.status() == status && e.error_code() == code, "{e:?} answers {} {}", e.status(), e.error_code());
    invariant!(!e.detail().is_empty(), "{e:?} has no detail");
}

pub fn run(data: &[u8], f: &mut Features) {
    let Request { method, target, headers, now } = parse_request(data);
    let standard = matches!(method, Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD);
    let has = |n: &str| headers.contains_key(n);
    f.add(
        "request",
        (standard, headers.len().min(12), target.contains('?'), has("content-length"), has("ocp-date"), has("date"), has("authorization")),
    );
    let s = string_to_sign("testacct", &method, &target, &headers);
    invariant!(s.starts_with(&format!("{method}\n")), "the string to sign of {method} starts {:?}", &s[..s.len().min(20)]);
    for cfg in configs() {
        let r = verify(&cfg, &method, &target, &headers, now);
        f.add("result", (cfg.account.as_str(), kind(&r)));
        if let Err(e) = &r {
            check_failure(e);
            // The kind of detail, without the request's own text.
            f.add("detail", e.detail().split('\'').next().unwrap_or_default().to_string());
        }
        invariant!(
            matches!(r, Err(AuthFailure::Missing)) == headers.get(AUTHORIZATION).is_none(),
            "{method} {target:?}: {r:?} with authorization {:?}",
            headers.get(AUTHORIZATION)
        );

        // Signed by the client side, it verifies unless its date is off.
        let signed = with_authorization(&headers, &sign(&cfg.account, &cfg.keys[0], &method, &target, &headers));
        let r = verify(&cfg, &method, &target, &signed, now);
        f.add("signed", (cfg.account.as_str(), kind(&r)));
        invariant!(
            matches!(r, Ok(()) | Err(AuthFailure::BadDate(_))),
            "{method} {target:?} signed by sign() fails: {r:?}\nstring to sign: {:?}",
            string_to_sign(&cfg.account, &method, &target, &headers)
        );
        let forged = with_authorization(&headers, &sign(&cfg.account, b"not the key", &method, &target, &headers));
        let r2 = verify(&cfg, &method, &target, &forged, now);
        invariant!(r2.is_err(), "{method} {target:?} signed with another key verifies");
        if r.is_ok() {
            let other = if method == Method::GET { Method::POST } else { Method::GET };
            let r3 = verify(&cfg, &other, &target, &signed, now);
            invariant!(r3.is_err(), "{method} {target:?} signed, verifies as {other}");
            let (path, query) = target.split_once('?').map_or((target.as_str(), None), |(p, q)| (p, Some(q)));
            let moved = match query {
                Some(q) => format!("{path}x?{q}"),
                None => format!("{path}x"),
            };
            let r4 = verify(&cfg, &method, &moved, &signed, now);
            invariant!(r4.is_err(), "{method} {target:?} signed, verifies for {moved:?}");
            if !target.to_ascii_lowercase().contains("fuzztamper") {
                let added = if query.is_some() { format!("{target}&fuzztamper=1") } else { format!("{target}?fuzztamper=1") };
                let r5 = verify(&cfg, &method, &added, &signed, now);
                invariant!(r5.is_err(), "{method} {target:?} signed, verifies for {added:?}");
            }
        }
    }
}

fn with_authorization(headers: &HeaderMap, value: &str) -> HeaderMap {
    let mut h = headers.clone();
    match HeaderValue::from_str(value) {
        Ok(v) => {
            h.insert(AUTHORIZATION, v);
        }
        Err(_) => panic!("invariant broken: sign() made an Authorization value that is not a header value: {value:?}"),
    }
    h
}
