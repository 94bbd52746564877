//! A small Batch REST client: requests signed with SharedKey the way the
//! SDKs sign them, Batch error bodies turned into one-line messages.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// The api-version sent (the one Python `azure-batch` 15.x sends).
pub const API_VERSION: &str = "2025-06-01";

/// Everything but the unreserved characters is percent-encoded, in ids and
/// query values alike, so the target the server receives is the one signed.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// One path segment (an id, a file name), percent-encoded.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// A file path below a task: each segment encoded, `/` kept.
pub fn file_path(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// What went wrong, as the user should read it (one line).
#[derive(Debug)]
pub enum Error {
    /// Missing or invalid configuration (endpoint, account, key, arguments).
    Config(String),
    /// The server could not be reached.
    Connect { endpoint: String, detail: String },
    /// The server answered with a Batch error.
    Batch(BatchError),
    /// Anything else (a broken response, a local file).
    Other(String),
}

/// A Batch error body, as the server sent it.
#[derive(Debug, Clone)]
pub struct BatchError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub values: Vec<(String, String)>,
}

impl BatchError {
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    fn from_body(status: u16, body: &[u8]) -> BatchError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let code = v["code"].as_str().unwrap_or("").to_string();
        let message = v["message"]["value"].as_str().or_else(|| v["message"].as_str()).unwrap_or("").to_string();
        let values = v["values"]
            .as_array()
            .map(|a| {
                a.iter().filter_map(|kv| Some((kv["key"].as_str()?.to_string(), kv["value"].as_str().unwrap_or("").to_string()))).collect()
            })
            .unwrap_or_default();
        let message = if message.is_empty() && code.is_empty() {
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string()
        } else {
            message
        };
        BatchError { status, code, message, values }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) | Error::Other(m) => f.write_str(m),
            Error::Connect { endpoint, detail } => write!(f, "cannot reach {endpoint}: {detail}"),
            Error::Batch(e) => {
                let first_line = |s: &str| s.lines().next().unwrap_or("").trim().to_string();
                match (e.status, e.code.as_str()) {
                    (401 | 403, "AuthenticationFailed" | "InvalidAuthenticationInfo") => {
                        // The detail of a bad signature is the server's string to
                        // sign: many lines, of no use here.
                        let detail = match e.value("AuthenticationErrorDetail") {
                            Some(d) if d.starts_with("The MAC signature") => "the signature does not match: the key is wrong".to_string(),
                            Some(d) => first_line(d).trim_end_matches('.').to_string(),
                            None => first_line(&e.message).trim_end_matches('.').to_string(),
                        };
                        write!(
                            f,
                            "the server refused the credentials ({} {}): {detail}; check --account/AZURE_BATCH_ACCOUNT and --key/AZURE_BATCH_ACCESS_KEY",
                            e.status, e.code
                        )
                    }
                    _ => {
                        let what = if e.code.is_empty() { e.status.to_string() } else { format!("{} {}", e.status, e.code) };
                        write!(f, "{} ({what})", first_line(&e.message).trim_end_matches('.'))?;
                        let extra: Vec<String> = e
                            .values
                            .iter()
                            .filter(|(k, _)| !k.eq_ignore_ascii_case("RequestId"))
                            .map(|(k, v)| format!("{k}: {}", first_line(v)))
                            .collect();
                        if !extra.is_empty() {
                            write!(f, "; {}", extra.join("; "))?;
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}

impl std::error::Error for Error {}

/// The innermost cause of an error, which is what a person can act on
/// ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// How to reach the account.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// scheme://host[:port], no trailing slash.
    origin: String,
    /// The endpoint's own path (usually empty), no trailing slash.
    base_path: String,
    /// The endpoint as given, for messages.
    endpoint: String,
    account: String,
    key: Vec<u8>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).field("account", &self.account).finish_non_exhaustive()
    }
}

/// A response whose status was a success.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    inner: reqwest::Response,
}

impl Response {
    pub async fn json(self) -> Result<Value, Error> {
        let bytes = self.inner.bytes().await.map_err(|e| Error::Other(format!("reading a response: {}", root_cause(&e))))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Other(format!("the server sent a body that is not JSON: {e}")))
    }

    pub async fn bytes(self) -> Result<Vec<u8>, Error> {
        self.inner.bytes().await.map(|b| b.to_vec()).map_err(|e| Error::Other(format!("reading a response: {}", root_cause(&e))))
    }

    /// The next piece of the body, or None at its end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.inner.chunk().await.map(|c| c.map(|b| b.to_vec())).map_err(|e| Error::Other(format!("reading a response: {}", root_cause(&e))))
    }
}

impl Client {
    pub fn new(endpoint: &str, account: &str, key: &str) -> Result<Client, Error> {
        let url = reqwest::Url::parse(endpoint.trim()).map_err(|e| {
            Error::Config(format!("the endpoint '{endpoint}' is not a URL ({e}); give one like https://myaccount.region.batch.azure.com"))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!("the endpoint '{endpoint}' must be an http:// or https:// URL")));
        }
        if url.query().is_some() {
            return Err(Error::Config(format!("the endpoint '{endpoint}' must not have a query")));
        }
        let key = STANDARD.decode(key.trim()).map_err(|_| Error::Config("the account key is not valid base64".into()))?;
        if key.is_empty() {
            return Err(Error::Config("the account key is empty".into()));
        }
        if account.trim().is_empty() {
            return Err(Error::Config("the account name is empty".into()));
        }
        let origin = url.origin().ascii_serialization();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("openbatch-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Other(format!("cannot set up the HTTP client: {}", root_cause(&e))))?;
        Ok(Client {
            http,
            origin,
            base_path: url.path().trim_end_matches('/').to_string(),
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            account: account.trim().to_string(),
            key,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The request target for `path` (already encoded, from `/`) with the
    /// api-version and `query` (names as given, values encoded).
    pub fn target(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut t = format!("{}{path}?api-version={API_VERSION}", self.base_path);
        for (name, value) in query {
            t.push('&');
            t.push_str(name);
            t.push('=');
            t.push_str(&utf8_percent_encode(value, ENCODE).to_string());
        }
        t
    }

    /// The target of a link the server gave (`odata.nextLink`): its path and query.
    pub fn target_of_link(&self, link: &str) -> Result<String, Error> {
        let url = reqwest::Url::parse(link).map_err(|_| Error::Other(format!("the server sent a link that is not a URL: {link}")))?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        })
    }

    /// Sends one signed request; a status other than 2xx is an error.
    pub async fn send(&self, method: Method, target: &str, body: Option<&Value>, extra: &[(&str, String)]) -> Result<Response, Error> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let mut headers = HeaderMap::new();
        let date = sharedkey::ocp_date(chrono::Utc::now());
        headers.insert("ocp-date", HeaderValue::from_str(&date).map_err(|e| Error::Other(e.to_string()))?);
        if let Some(b) = &body {
            headers.insert("content-type", HeaderValue::from_static("application/json; odata=minimalmetadata"));
            headers.insert("content-length", HeaderValue::from(b.len()));
        }
        for (name, value) in extra {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| Error::Other(e.to_string()))?;
            headers.insert(name, HeaderValue::from_str(value).map_err(|e| Error::Other(e.to_string()))?);
        }
        let auth = sharedkey::sign(&self.account, &self.key, &method, target, &headers);
        headers.insert("authorization", HeaderValue::from_str(&auth).map_err(|e| Error::Other(e.to_string()))?);
        let url = format!("{}{target}", self.origin);
        let mut req = self.http.request(method, &url).headers(headers);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(Response { status, headers: resp.headers().clone(), inner: resp });
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        Err(Error::Batch(BatchError::from_body(status, &bytes)))
    }

    /// [`send`](Self::send), tried again (up to 4 times in all, over about 7 s) when the
    /// failure may pass: a dropped connection, 408, 429, 500, 502, 503, 504.
    /// Only for requests that are safe to repeat.
    pub async fn send_retrying(&self, method: Method, target: &str, body: Option<&Value>) -> Result<Response, Error> {
        let mut wait = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match self.send(method.clone(), target, body, &[]).await {
                Err(e) if attempt < 4 && transient(&e) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    pub async fn get_json(&self, target: &str) -> Result<Value, Error> {
        self.send_retrying(Method::GET, target, None).await?.json().await
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        let detail = root_cause(e);
        if e.is_connect() || e.is_timeout() {
            Error::Connect { endpoint: self.endpoint.clone(), detail }
        } else {
            Error::Other(format!("request to {} failed: {detail}", self.endpoint))
        }
    }
}

/// Whether an error may pass if the request is sent again.
pub fn transient(e: &Error) -> bool {
    match e {
        Error::Batch(b) => matches!(b.status, 408 | 429 | 500 | 502 | 503 | 504),
        // A refused connection will be refused again: say so at once.
        Error::Connect { detail, .. } => !detail.to_ascii_lowercase().contains("refused"),
        Error::Other(m) => m.starts_with("request to"),
        Error::Config(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_encode_ids_and_values_and_keep_the_endpoint_path() {
        let c = Client::new("http://127.0.0.1:9/base/", "acct", "a2V5").unwrap();
        let t = c.target(&format!("/jobs/{}/tasks", segment("a b/c")), &[("$filter", "state eq 'completed'")]);
        assert_eq!(t, "/base/jobs/a%20b%2Fc/tasks?api-version=2025-06-01&$filter=state%20eq%20%27completed%27");
        assert_eq!(file_path("wd/out put.txt"), "wd/out%20put.txt");
        assert_eq!(
            c.target_of_link("http://h:1/base/jobs?api-version=x&$skiptoken=abc").unwrap(),
            "/base/jobs?api-version=x&$skiptoken=abc"
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_a_clear_message() {
        let e = Client::new("not a url", "a", "a2V5").unwrap_err().to_string();
        assert!(e.contains("is not a URL"), "{e}");
        let e = Client::new("ftp://x", "a", "a2V5").unwrap_err().to_string();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = Client::new("http://x", "a", "not base64!").unwrap_err().to_string();
        assert_eq!(e, "the account key is not valid base64");
    }

    #[test]
    fn batch_errors_read_as_one_line() {
        let body = br#"{"code":"AuthenticationFailed","message":{"lang":"en-US","value":"Server failed to authenticate the request.\nRequestId:x"},
            "values":[{"key":"AuthenticationErrorDetail","value":"The MAC signature found in the HTTP request 'x' is not the same\nGET\n..."}]}"#;
        let e = Error::Batch(BatchError::from_body(403, body)).to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("the key is wrong") && e.contains("AZURE_BATCH_ACCESS_KEY"), "{e}");
        let body = br#"{"code":"JobNotFound","message":{"value":"The specified job does not exist.\nRequestId:1"},"values":[{"key":"RequestId","value":"1"}]}"#;
        assert_eq!(Error::Batch(BatchError::from_body(404, body)).to_string(), "The specified job does not exist (404 JobNotFound)");
        assert_eq!(Error::Batch(BatchError::from_body(502, b"bad gateway")).to_string(), "bad gateway (502)");
    }
}
