//! SharedKey authentication, as the real Batch clients sign.
//!
//! The string to sign is
//!
//! ```text
//! VERB \n Content-Encoding \n Content-Language \n Content-Length \n Content-MD5 \n
//! Content-Type \n Date \n If-Modified-Since \n If-Match \n If-None-Match \n
//! If-Unmodified-Since \n Range \n
//! <ocp-* headers: lower-cased name, sorted, "name:value\n" each>
//! /<account><raw path> [\n name:value for each query parameter, sorted]
//! ```
//!
//! and the signature is base64(HMAC-SHA256(base64-decoded key, that string)).
//! The clients disagree on details, so the verifier tries a small set of
//! variants (each HMAC is cheap) and accepts the request when any matches:
//!
//! * query names lower-cased (the documented form) or kept as sent (the 15.x
//!   Python SDK sends and signs `timeOut`);
//! * Content-Length `0` signed as `""` (documented) or as `"0"` (Python signs
//!   `0`, and 15.x signs it even for a bodiless POST/DELETE whose
//!   `Content-Length` header the transport adds after signing);
//! * the account name as configured or lower-cased (Java);
//! * the Date line empty (ocp-date used) or carrying the `Date` header;
//! * empty query values skipped (Python) or kept as `name:` (JS).
//!
//! The path is used exactly as received, still percent-encoded; query names
//! and values are form-decoded. Comparison is constant-time.

use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The allowed difference between the request's date and ours.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// The account and its keys (primary, secondary), decoded.
#[derive(Debug, Clone)]
pub struct SharedKeyConfig {
    pub account: String,
    pub keys: Vec<Vec<u8>>,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No Authorization header.
    Missing,
    /// Not `SharedKey account:signature`, or the signature is not base64.
    Malformed(String),
    /// No usable `ocp-date`/`Date`, or outside the allowed skew.
    BadDate(String),
    /// The account in the header is not this server's.
    WrongAccount(String),
    /// No variant of the string to sign matched; carries Azure-style detail.
    BadSignature(String),
}

impl AuthFailure {
    /// The `AuthenticationErrorDetail` value for the error body.
    pub fn detail(&self) -> String {
        match self {
            AuthFailure::Missing => "The Authorization header is missing; sign the request with SharedKey.".into(),
            AuthFailure::Malformed(d) | AuthFailure::BadDate(d) | AuthFailure::WrongAccount(d) | AuthFailure::BadSignature(d) => d.clone(),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One way of writing the string to sign.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Variant {
    lower_query_names: bool,
    /// How Content-Length is written: as received (false) or `0` → `""` (true).
    zero_length_empty: bool,
    /// When no Content-Length header came with a bodiless POST/PUT/DELETE, sign `0`.
    assume_zero_length: bool,
    lower_account: bool,
    date_line: bool,
    keep_empty_query_values: bool,
}

const VARIANTS: &[Variant] = &[
    // (a) documented
    Variant { lower_query_names: true, zero_length_empty: true, assume_zero_length: false, lower_account: false, date_line: false, keep_empty_query_values: false },
    // (b) query names as sent, Content-Length as received (Python 14.x/15.x, JS)
    Variant { lower_query_names: false, zero_length_empty: false, assume_zero_length: false, lower_account: false, date_line: false, keep_empty_query_values: false },
    // (c) documented names, Content-Length as received
    Variant { lower_query_names: true, zero_length_empty: false, assume_zero_length: false, lower_account: false, date_line: false, keep_empty_query_values: false },
    // (d) names as sent, "0" for a bodiless POST/PUT/DELETE without the header (Python 15.x)
    Variant { lower_query_names: false, zero_length_empty: false, assume_zero_length: true, lower_account: false, date_line: false, keep_empty_query_values: false },
    // (e) Java: lower-cased account and query names
    Variant { lower_query_names: true, zero_length_empty: false, assume_zero_length: false, lower_account: true, date_line: false, keep_empty_query_values: false },
    // (f) the Date header in the Date line
    Variant { lower_query_names: false, zero_length_empty: false, assume_zero_length: false, lower_account: false, date_line: true, keep_empty_query_values: false },
    // (g) JS keeps empty query values
    Variant { lower_query_names: false, zero_length_empty: false, assume_zero_length: false, lower_account: false, date_line: false, keep_empty_query_values: true },
];

fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// Builds the string to sign for one variant.
fn string_to_sign(v: Variant, account: &str, method: &Method, raw_target: &str, headers: &HeaderMap) -> String {
    let h = |n: &str| header(headers, n).unwrap_or("");
    let mut content_length = h("content-length").to_string();
    if v.zero_length_empty && content_length == "0" {
        content_length.clear();
    }
    if v.assume_zero_length
        && headers.get("content-length").is_none()
        && matches!(*method, Method::POST | Method::PUT | Method::DELETE | Method::PATCH)
    {
        content_length = "0".into();
    }
    let date = if v.date_line { h("date") } else { "" };
    let mut s = String::with_capacity(256 + raw_target.len());
    s.push_str(method.as_str());
    s.push('\n');
    for part in [
        h("content-encoding"),
        h("content-language"),
        content_length.as_str(),
        h("content-md5"),
        h("content-type"),
        date,
        h("if-modified-since"),
        h("if-match"),
        h("if-none-match"),
        h("if-unmodified-since"),
        h("range"),
    ] {
        s.push_str(part);
        s.push('\n');
    }
    let mut ocp: Vec<(String, &str)> = headers
        .iter()
        .filter_map(|(n, val)| {
            let name = n.as_str().to_ascii_lowercase();
            let val = val.to_str().ok()?;
            (name.contains("ocp-") && !val.is_empty()).then_some((name, val))
        })
        .collect();
    ocp.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, val) in ocp {
        s.push_str(&n);
        s.push(':');
        s.push_str(val);
        s.push('\n');
    }
    let (path, query) = raw_target.split_once('?').unwrap_or((raw_target, ""));
    s.push('/');
    if v.lower_account {
        s.push_str(&account.to_ascii_lowercase());
    } else {
        s.push_str(account);
    }
    s.push_str(path);
    // First value of each name, sorted by name (byte order).
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (n, val) = pair.split_once('=').unwrap_or((pair, ""));
        let mut name = form_decode(n);
        if v.lower_query_names {
            name = name.to_ascii_lowercase();
        }
        if params.iter().any(|(k, _)| *k == name) {
            continue;
        }
        params.push((name, form_decode(val)));
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, val) in params {
        if val.is_empty() && !v.keep_empty_query_values {
            continue;
        }
        s.push('\n');
        s.push_str(&n);
        s.push(':');
        s.push_str(&val);
    }
    s
}

fn hmac(key: &[u8], data: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Verifies the request's SharedKey signature. `raw_target` is the path and
/// query exactly as received.
pub fn verify(cfg: &SharedKeyConfig, method: &Method, raw_target: &str, headers: &HeaderMap, now: DateTime<Utc>) -> Result<(), AuthFailure> {
    let auth = match headers.get("authorization") {
        None => return Err(AuthFailure::Missing),
        Some(v) => v.to_str().map_err(|_| AuthFailure::Malformed("The Authorization header is not ASCII.".into()))?,
    };
    let (scheme, rest) = auth.trim().split_once(' ').ok_or_else(|| {
        AuthFailure::Malformed("The Authorization header must be 'SharedKey <account>:<signature>'.".into())
    })?;
    if !scheme.eq_ignore_ascii_case("SharedKey") {
        return Err(AuthFailure::Malformed(format!(
            "Authorization scheme '{scheme}' is not supported; use SharedKey."
        )));
    }
    let (account, sig_b64) = rest
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| AuthFailure::Malformed("The Authorization header must be 'SharedKey <account>:<signature>'.".into()))?;
    let signature = STANDARD
        .decode(sig_b64.trim())
        .map_err(|_| AuthFailure::Malformed("The signature in the Authorization header is not valid base64.".into()))?;
    if !account.eq_ignore_ascii_case(&cfg.account) {
        return Err(AuthFailure::WrongAccount(format!("The account '{account}' does not exist on this server.")));
    }
    let date_text = header(headers, "ocp-date")
        .or_else(|| header(headers, "date"))
        .ok_or_else(|| AuthFailure::BadDate("The request has neither an ocp-date nor a Date header.".into()))?;
    let date = httpdate::parse_http_date(date_text)
        .map(DateTime::<Utc>::from)
        .map_err(|_| AuthFailure::BadDate(format!("The date '{date_text}' is not an RFC 1123 date.")))?;
    if (now - date).num_seconds().abs() > MAX_SKEW_SECONDS {
        return Err(AuthFailure::BadDate(format!(
            "Request date '{date_text}' is more than 15 minutes from the server's time."
        )));
    }
    let mut tried: Vec<String> = Vec::with_capacity(VARIANTS.len());
    for v in VARIANTS {
        let s = string_to_sign(*v, account, method, raw_target, headers);
        if tried.contains(&s) {
            continue;
        }
        for key in &cfg.keys {
            if bool::from(hmac(key, &s)[..].ct_eq(&signature[..])) {
                return Ok(());
            }
        }
        tried.push(s);
    }
    Err(AuthFailure::BadSignature(format!(
        "The MAC signature found in the HTTP request '{sig_b64}' is not the same as any computed signature. \
         Server used following string to sign: '{}'.",
        tried.first().map(String::as_str).unwrap_or("")
    )))
}

/// Signs a request the way the Python SDKs do (query names as sent,
/// Content-Length as present); returns the Authorization header value.
pub fn sign(account: &str, key: &[u8], method: &Method, raw_target: &str, headers: &HeaderMap) -> String {
    let s = string_to_sign(VARIANTS[1], account, method, raw_target, headers);
    format!("SharedKey {account}:{}", STANDARD.encode(hmac(key, &s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/reference/sharedkey-vectors.jsonl"));

    struct Vector {
        cfg: SharedKeyConfig,
        method: Method,
        target: String,
        headers: HeaderMap,
        now: DateTime<Utc>,
        valid: bool,
        label: String,
    }

    fn vectors() -> Vec<Vector> {
        VECTORS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut headers = HeaderMap::new();
                for pair in v["headers"].as_array().unwrap() {
                    let n = pair[0].as_str().unwrap();
                    let val = pair[1].as_str().unwrap();
                    headers.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(val).unwrap());
                }
                let date = headers.get("ocp-date").or_else(|| headers.get("date")).unwrap().to_str().unwrap().to_string();
                Vector {
                    cfg: SharedKeyConfig {
                        account: v["account"].as_str().unwrap().to_string(),
                        keys: vec![STANDARD.decode(v["key"].as_str().unwrap()).unwrap()],
                    },
                    method: Method::from_bytes(v["method"].as_str().unwrap().as_bytes()).unwrap(),
                    target: v["target"].as_str().unwrap().to_string(),
                    headers,
                    now: httpdate::parse_http_date(&date).unwrap().into(),
                    valid: v["expect"] == "valid",
                    label: format!("{} {} {} {}", v["client"], v["method"], v["target"], v.get("why").map(|w| w.to_string()).unwrap_or_default()),
                }
            })
            .collect()
    }

    #[test]
    fn every_reference_vector() {
        let all = vectors();
        assert!(all.len() >= 70, "expected the full vector file, got {}", all.len());
        let (mut valid, mut invalid) = (0, 0);
        for v in &all {
            let r = verify(&v.cfg, &v.method, &v.target, &v.headers, v.now);
            if v.valid {
                assert!(r.is_ok(), "should verify: {} -> {:?}", v.label, r);
                valid += 1;
            } else {
                assert!(matches!(r, Err(AuthFailure::BadSignature(_))), "should fail: {} -> {:?}", v.label, r);
                invalid += 1;
            }
        }
        assert!(valid > 0 && invalid > 0);
    }

    fn first_valid() -> Vector {
        vectors().into_iter().find(|v| v.valid).unwrap()
    }

    #[test]
    fn missing_and_malformed() {
        let mut v = first_valid();
        v.headers.remove("authorization");
        assert_eq!(verify(&v.cfg, &v.method, &v.target, &v.headers, v.now), Err(AuthFailure::Missing));
        for bad in ["SharedKey", "SharedKey nocolon", "Bearer abc", "SharedKey testacct:***"] {
            v.headers.insert("authorization", HeaderValue::from_str(bad).unwrap());
            assert!(matches!(verify(&v.cfg, &v.method, &v.target, &v.headers, v.now), Err(AuthFailure::Malformed(_))), "{bad}");
        }
        v.headers.insert("authorization", HeaderValue::from_static("SharedKey other:AAAA"));
        assert!(matches!(verify(&v.cfg, &v.method, &v.target, &v.headers, v.now), Err(AuthFailure::WrongAccount(_))));
    }

    #[test]
    fn clock_skew() {
        let v = first_valid();
        let ok = |d: i64| verify(&v.cfg, &v.method, &v.target, &v.headers, v.now + chrono::Duration::minutes(d));
        assert!(ok(14).is_ok() && ok(-14).is_ok());
        assert!(matches!(ok(16), Err(AuthFailure::BadDate(_))));
        assert!(matches!(ok(-16), Err(AuthFailure::BadDate(_))));
    }

    #[test]
    fn secondary_key_and_tampering() {
        let mut v = first_valid();
        let real = v.cfg.keys[0].clone();
        v.cfg.keys = vec![b"not the key".to_vec(), real];
        assert!(verify(&v.cfg, &v.method, &v.target, &v.headers, v.now).is_ok(), "secondary key accepted");
        let tampered = if v.target.contains('?') { format!("{}&x=1", v.target) } else { format!("{}?x=1", v.target) };
        let r = verify(&v.cfg, &v.method, &tampered, &v.headers, v.now);
        match r {
            Err(AuthFailure::BadSignature(d)) => assert!(d.contains("Server used following string to sign")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sign_round_trips() {
        let cfg = SharedKeyConfig { account: "acct".into(), keys: vec![b"k".to_vec()] };
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert("ocp-date", HeaderValue::from_str(&httpdate::fmt_http_date(now.into())).unwrap());
        h.insert("content-length", HeaderValue::from_static("0"));
        let target = "/jobs/a%20b%2Fc/tasks?api-version=2025-06-01&timeOut=30&$filter=state%20eq%20%27active%27";
        let auth = sign("acct", b"k", &Method::POST, target, &h);
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        assert!(verify(&cfg, &Method::POST, target, &h, now).is_ok());
        let changed = target.replace("active", "completed");
        assert!(verify(&cfg, &Method::POST, &changed, &h, now).is_err());
    }
}
