//! The web dashboard's files, served at `/ui/` on the API's port.
//!
//! The dashboard is plain HTML, CSS and JavaScript modules (`crates/api/ui/`),
//! compiled into the binary: nothing to install, nothing fetched at run time.
//! Its pages load without authentication; the data comes from the Batch REST
//! API itself, whose requests the browser signs with SharedKey (the key stays
//! in the tab's `sessionStorage`). So this module only serves bytes: `GET` and
//! `HEAD`, a strong `ETag` with `Cache-Control: no-cache` (the browser
//! revalidates and gets a `304` while the binary is unchanged), and headers
//! that keep the page from being framed, sniffed or fed scripts from
//! elsewhere.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Where the dashboard lives; `/ui` redirects here.
pub const PREFIX: &str = "/ui/";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", bytes: include_bytes!("../ui/index.html") },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../ui/app.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/app.js") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/api.js") },
    Asset { name: "dom.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/dom.js") },
    Asset { name: "sharedkey.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/sharedkey.js") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../ui/favicon.svg") },
];

/// Scripts, styles, images and requests from this origin only; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset's ETag: a hash of its bytes, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// Whether a request path belongs to the dashboard.
pub fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with(PREFIX)
}

/// Answers a request for the dashboard (`path` is the request's path, without
/// the query).
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
    if path == "/ui" {
        return response(StatusCode::PERMANENT_REDIRECT).header("location", PREFIX).body(Body::empty()).unwrap_or_default();
    }
    if method != Method::GET && method != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED)
            .header("allow", "GET, HEAD")
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from("The dashboard's files are read with GET.\n"))
            .unwrap_or_default();
    }
    let name = path.strip_prefix(PREFIX).unwrap_or_default();
    let name = if name.is_empty() { "index.html" } else { name };
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return response(StatusCode::NOT_FOUND)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from("No such file in the dashboard; open /ui/.\n"))
            .unwrap_or_default();
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let fresh = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*"));
    let b = response(if fresh { StatusCode::NOT_MODIFIED } else { StatusCode::OK }).header("etag", etag.as_str());
    if fresh {
        return b.body(Body::empty()).unwrap_or_default();
    }
    let b = b.header("content-type", asset.content_type).header("content-length", asset.bytes.len());
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(asset.bytes) };
    b.body(body).unwrap_or_default()
}

fn response(status: StatusCode) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header("cache-control", "no-cache")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_name_and_content() {
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
        // Every module the page imports is served.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js") || a.name.ends_with(".html")) {
            let text = std::str::from_utf8(a.bytes).unwrap();
            for part in text.split("from \"./").skip(1).chain(text.split("src=\"./").skip(1)).chain(text.split("href=\"./").skip(1)) {
                let imported = part.split('"').next().unwrap();
                assert!(ASSETS.iter().any(|x| x.name == imported), "{} refers to ./{imported}, which is not served", a.name);
            }
        }
    }
}
