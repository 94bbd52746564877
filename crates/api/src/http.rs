//! The request context every handler gets, and the response builder that
//! adds the headers every Batch response carries.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use chrono::Utc;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use store::{Preconditions, Stored};
use wire::time::format_datetime;
use wire::{Error, ErrorCode};

pub const JSON_CONTENT_TYPE: &str = "application/json;odata=minimalmetadata";

/// The parts of a request that handlers use.
pub struct Ctx {
    pub method: Method,
    pub path: String,
    /// Query parameters, names as sent, values decoded.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub api_version: String,
    pub request_id: String,
    /// `http://host[:port]`, from the configured public URL or the Host header.
    pub base_url: String,
}

/// Characters to escape in a query value of a link we build.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b',');

pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

pub use wire::encode_segment;

/// Splits and decodes a raw query string (`+` is a space).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(n), dec(v))
        })
        .collect()
}

impl Ctx {
    /// A query parameter by case-insensitive name (the SDKs differ: `timeout` / `timeOut`).
    /// The first non-empty value is the one the clients sign (Python's
    /// `parse_qs` drops blank values), so it is the one read.
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The conditional headers. ETags may be quoted (15.x SDK) or bare (14.x),
    /// and may be lists.
    pub fn preconditions(&self) -> Result<Preconditions, Error> {
        fn etags(v: &str) -> Vec<String> {
            v.split(',')
                .map(|e| {
                    let e = e.trim();
                    let e = e.strip_prefix("W/").unwrap_or(e);
                    e.trim_matches('"').to_string()
                })
                .filter(|e| !e.is_empty())
                .collect()
        }
        let date = |name: &str| -> Result<Option<chrono::DateTime<Utc>>, Error> {
            match self.header(name) {
                None => Ok(None),
                Some(v) => httpdate::parse_http_date(v)
                    .map(|t| Some(chrono::DateTime::<Utc>::from(t)))
                    .map_err(|_| Error::new(ErrorCode::InvalidHeaderValue).with("HeaderName", name).with("HeaderValue", v)),
            }
        };
        Ok(Preconditions {
            if_match: self.header("if-match").map(etags),
            if_none_match: self.header("if-none-match").map(etags),
            if_modified_since: date("if-modified-since")?,
            if_unmodified_since: date("if-unmodified-since")?,
        })
    }

    /// The URL of a resource path such as `/jobs/j1`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

/// Builds a successful response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<(String, Bytes)>,
    /// A body streamed as it is produced (content type, body), instead of
    /// `body`; the handler sets `content-length` when it knows it.
    pub stream: Option<(String, Body)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK), headers: Vec::new(), body: None, stream: None }
    }
    pub fn json(status: u16, body: String) -> Reply {
        let mut r = Reply::status(status);
        r.body = Some((JSON_CONTENT_TYPE.to_string(), Bytes::from(body)));
        r
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            self.headers.push((n, value.into()));
        }
        self
    }
    /// ETag and Last-Modified of a resource.
    pub fn tagged(self, s: &Stored) -> Reply {
        self.header("etag", s.etag.clone()).header("last-modified", httpdate::fmt_http_date(s.last_modified.0.into()))
    }
    /// ETag, Last-Modified and DataServiceId for a changed resource.
    pub fn changed(self, s: &Stored, url: String) -> Reply {
        self.tagged(s).header("dataserviceid", url)
    }
}

/// Common headers on every response, success or error.
pub fn finish(mut resp: Response<Body>, request_id: &str, client_request_id: Option<&str>) -> Response<Body> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    if let Some(c) = client_request_id.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("client-request-id", c);
    }
    h.insert("dataserviceversion", HeaderValue::from_static("3.0"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

pub fn into_response(reply: Reply) -> Response<Body> {
    let mut b = Response::builder().status(reply.status);
    for (n, v) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            b = b.header(n, v);
        }
    }
    let resp = match (reply.body, reply.stream) {
        (_, Some((ct, body))) => b.header("content-type", ct).body(body),
        (Some((ct, bytes)), None) => b.header("content-type", ct).body(Body::from(bytes)),
        (None, None) => b.body(Body::empty()),
    };
    resp.unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Renders a Batch error response.
pub fn error_response(err: &Error, base_url: &str, request_id: &str, method: &Method) -> Response<Body> {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if err.code == ErrorCode::NotModified || *method == Method::HEAD {
        // 304 has no body; HEAD responses never do.
        return Response::builder().status(status).body(Body::empty()).unwrap_or_default();
    }
    let body = err.body(base_url, request_id, &format_datetime(&Utc::now()));
    Response::builder().status(status).header("content-type", JSON_CONTENT_TYPE).body(Body::from(body)).unwrap_or_default()
}
