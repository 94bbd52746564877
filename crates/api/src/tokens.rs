//! Task authentication tokens (`authenticationTokenSettings.access: ["job"]`,
//! api-versions before 2024-07-01): a task that asks for one finds it in
//! `AZ_BATCH_AUTHENTICATION_TOKEN`, and may present it as
//! `Authorization: Bearer <token>` for operations on its own job only (for
//! example adding tasks to it).
//!
//! A token is self-contained: `obt1.<job, base64url>.<expiry, unix
//! seconds>.<HMAC-SHA256 of both under the account's primary key,
//! base64url>`. It stays valid until it expires ([`TOKEN_LIFETIME`]) or the
//! primary key changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a token is valid after its task's attempt starts.
pub const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
const PREFIX: &str = "obt1";

fn mac(key: &[u8], job: &str, expiry: i64) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(format!("{PREFIX}|{job}|{expiry}").as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// A token for operations on `job`, valid until `now + TOKEN_LIFETIME`.
pub fn issue(key: &[u8], job: &str, now: i64) -> String {
    let expiry = now + TOKEN_LIFETIME.as_secs() as i64;
    format!(
        "{PREFIX}.{}.{expiry}.{}",
        URL_SAFE_NO_PAD.encode(job.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(key, job, expiry))
    )
}

/// The job a token grants access to, if it is genuine and not expired.
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<String> {
    let mut parts = token.trim().split('.');
    let (prefix, job, expiry, sig) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if prefix != PREFIX || parts.next().is_some() {
        return None;
    }
    let job = String::from_utf8(URL_SAFE_NO_PAD.decode(job).ok()?).ok()?;
    let expiry: i64 = expiry.parse().ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let genuine: bool = mac(key, &job, expiry).ct_eq(&sig).into();
    (genuine && now < expiry).then_some(job)
}

/// The `Authorization: Bearer` credential of a request, if that is what it carries.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_job_and_expire() {
        let t = issue(b"key", "job:1", 1_000);
        assert_eq!(verify(b"key", &t, 1_001).as_deref(), Some("job:1"));
        assert_eq!(verify(b"other", &t, 1_001), None, "another key");
        assert_eq!(verify(b"key", &t, 1_000 + TOKEN_LIFETIME.as_secs() as i64), None, "expired");
        let forged = t.replacen(&URL_SAFE_NO_PAD.encode("job:1"), &URL_SAFE_NO_PAD.encode("job:2"), 1);
        assert_eq!(verify(b"key", &forged, 1_001), None, "the job is signed");
        assert_eq!(verify(b"key", "garbage", 0), None);
    }
}
