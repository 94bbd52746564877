//! Task authentication tokens on requests: the credential is read here; the
//! tokens themselves are issued and checked by `control::tokens`.

pub use control::tokens::{issue, verify, TOKEN_LIFETIME};

/// The `Authorization: Bearer` credential of a request, if that is what it carries.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}
