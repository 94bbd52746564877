//! Task authentication tokens (`authenticationTokenSettings.access: ["job"]`,
//! api-versions before 2024-07-01): a task that asks for one finds it in
//! `AZ_BATCH_AUTHENTICATION_TOKEN`, and may present it as
//! `Authorization: Bearer <token>` for operations on its own job only (for
//! example adding tasks to it).
//!
//! A token is self-contained: `obt1.<job, base64url>.<expiry, unix
//! seconds>.<HMAC-SHA256 under the account's primary key, base64url>`. The
//! MAC covers the exact text before the last dot, as received, and every
//! part must be in the one form [`issue`] writes (canonical base64url
//! without padding, the expiry in decimal digits without a sign or leading
//! zeros), so no other spelling of a token is accepted. It stays valid until
//! it expires ([`TOKEN_LIFETIME`]) or the primary key changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a token is valid after its task's attempt starts.
pub const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
const PREFIX: &str = "obt1";

/// The MAC of a token's signed text (`obt1.<job>.<expiry>`).
fn mac(key: &[u8], signed: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(signed);
    m.finalize().into_bytes().to_vec()
}

/// A token for operations on `job`, valid until `now + TOKEN_LIFETIME`.
pub fn issue(key: &[u8], job: &str, now: i64) -> String {
    let expiry = now + TOKEN_LIFETIME.as_secs() as i64;
    let signed = format!("{PREFIX}.{}.{expiry}", URL_SAFE_NO_PAD.encode(job.as_bytes()));
    let sig = URL_SAFE_NO_PAD.encode(mac(key, signed.as_bytes()));
    format!("{signed}.{sig}")
}

/// Decimal digits without a sign or leading zeros, as `i64` prints a
/// positive number.
fn strict_seconds(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Base64url without padding, in its one canonical spelling.
fn strict_base64(s: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    (URL_SAFE_NO_PAD.encode(&bytes) == s).then_some(bytes)
}

/// The job a token grants access to, if it is genuine and not expired.
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<String> {
    let (signed, sig) = token.rsplit_once('.')?;
    let mut parts = signed.split('.');
    let (prefix, job, expiry) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix != PREFIX || parts.next().is_some() {
        return None;
    }
    let sig = strict_base64(sig)?;
    // The MAC first, over the bytes as received: nothing of a token that is
    // not genuine is interpreted.
    let genuine: bool = mac(key, signed.as_bytes()).ct_eq(&sig).into();
    if !genuine {
        return None;
    }
    let job = String::from_utf8(strict_base64(job)?).ok()?;
    let expiry = strict_seconds(expiry)?;
    (now < expiry).then_some(job)
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

    /// Every other spelling of a genuine token is refused, even where it
    /// would parse to the same job and expiry.
    #[test]
    fn tokens_are_not_malleable() {
        let t = issue(b"key", "job-1", 1_000);
        assert_eq!(verify(b"key", &t, 1_001).as_deref(), Some("job-1"));
        let parts: Vec<&str> = t.split('.').collect();
        let (job, expiry, sig) = (parts[1], parts[2], parts[3]);
        let with = |j: &str, e: &str, s: &str| format!("obt1.{j}.{e}.{s}");
        // A signature made over a rewritten expiry is refused too (the MAC
        // over the exact text would match; the strict parse does not).
        let signed = |j: &str, e: &str| {
            let text = format!("obt1.{j}.{e}");
            format!("{text}.{}", URL_SAFE_NO_PAD.encode(mac(b"key", text.as_bytes())))
        };
        let variants = [
            with(job, &format!("+{expiry}"), sig),
            with(job, &format!("0{expiry}"), sig),
            with(job, &format!("00{expiry}"), sig),
            with(job, &format!("{expiry} "), sig),
            with(job, &format!(" {expiry}"), sig),
            with(job, &format!("{expiry}.0"), sig),
            with(&format!("{job}="), expiry, sig),
            with(job, expiry, &format!("{sig}=")),
            with(job, expiry, &format!("{sig}A")),
            with(job, expiry, &sig[..sig.len() - 1]),
            format!("OBT1.{job}.{expiry}.{sig}"),
            format!("obt1.{job}.{expiry}.{sig}."),
            format!(".obt1.{job}.{expiry}.{sig}"),
            format!(" {t}"),
            format!("{t} "),
            format!("{t}\n"),
            signed(job, &format!("+{expiry}")),
            signed(job, &format!("0{expiry}")),
            signed(job, "-1"),
            signed(job, "99999999999999999999"),
        ];
        for v in &variants {
            assert_eq!(verify(b"key", v, 1_001), None, "{v:?}");
        }
        // A non-canonical last base64 character (extra low bits set) decodes
        // to the same bytes in lenient decoders; it is refused.
        let last = sig.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        // 32 bytes → 43 chars; the last char carries 2 unused bits.
        let tweaked: String = sig[..sig.len() - 1].chars().chain(alphabet.chars().nth(idx | 1)).collect();
        if tweaked != sig {
            assert_eq!(verify(b"key", &with(job, expiry, &tweaked), 1_001), None);
        }
        assert_eq!(strict_seconds("1"), Some(1));
        assert_eq!(strict_seconds("0"), Some(0));
        for bad in ["", "+1", "01", "-1", "1 ", "1e3", "١"] {
            assert_eq!(strict_seconds(bad), None, "{bad:?}");
        }
    }
}
