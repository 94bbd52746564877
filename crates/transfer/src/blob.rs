//! The parts of the Azure Blob Storage REST API the agent speaks: container
//! listing, blob URLs, error bodies, block ids and block lists, and the
//! headers that set a blob's properties.

use quick_xml::events::Event;
use reqwest::Url;

/// The `x-ms-version` sent (served by Azure and by Azurite 3.35).
pub const VERSION: &str = "2023-11-03";

/// A URL as logs and messages show it: the SAS signature's value is hidden.
pub fn redact(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_string() };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("sig") => format!("{k}=REDACTED"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// The URL of blob `name` in a container (its SAS query kept). Each `/`
/// separated segment of the name is percent-encoded.
pub fn blob_url(container: &Url, name: &str) -> Url {
    let mut u = container.clone();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty();
        segs.extend(name.split('/'));
    }
    u
}

/// The List Blobs URL of a container, for one page.
pub fn list_url(container: &Url, prefix: &str, marker: Option<&str>) -> Url {
    let mut u = container.clone();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("restype", "container").append_pair("comp", "list");
        if !prefix.is_empty() {
            q.append_pair("prefix", prefix);
        }
        if let Some(m) = marker {
            q.append_pair("marker", m);
        }
    }
    u
}

/// A URL with extra query parameters (`comp=block&blockid=...`).
pub fn with_query(url: &Url, pairs: &[(&str, &str)]) -> Url {
    let mut u = url.clone();
    u.query_pairs_mut().extend_pairs(pairs);
    u
}

/// One page of a List Blobs answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub names: Vec<String>,
    /// The marker of the next page, when there is one.
    pub next_marker: Option<String>,
}

/// Parses an `EnumerationResults` document: the blobs' names (decoded when
/// the service marks them `Encoded="true"`) and `NextMarker`.
pub fn parse_listing(xml: &str) -> Result<Listing, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut encoded = false;
    let mut listing = Listing::default();
    let mut root_seen = false;
    loop {
        match reader.read_event().map_err(|e| format!("malformed listing at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(e) => {
                if path.is_empty() {
                    if e.name().as_ref() != b"EnumerationResults" {
                        return Err(format!("unexpected listing root <{}>", String::from_utf8_lossy(e.name().as_ref())));
                    }
                    root_seen = true;
                }
                encoded = e.try_get_attribute("Encoded").ok().flatten().is_some_and(|a| a.value.as_ref().eq_ignore_ascii_case(b"true"));
                path.push(e.name().as_ref().to_vec());
                text.clear();
            }
            Event::End(_) => {
                let n = path.len();
                let parent = n.checked_sub(2).map(|i| path[i].as_slice());
                match (path.last().map(Vec::as_slice), parent) {
                    (Some(b"Name"), Some(b"Blob")) => {
                        let name = std::mem::take(&mut text);
                        listing.names.push(if encoded { percent_decode(&name) } else { name });
                    }
                    (Some(b"NextMarker"), Some(b"EnumerationResults")) if !text.is_empty() => {
                        listing.next_marker = Some(std::mem::take(&mut text));
                    }
                    _ => {}
                }
                path.pop();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                text.push(entity(&name).ok_or_else(|| format!("unknown entity &{name};"))?);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("empty listing".into());
    }
    Ok(listing)
}

/// The character an XML entity reference (`amp`, `#x41`, `#65`) stands for.
fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        n => {
            let code = match n.strip_prefix("#x").or_else(|| n.strip_prefix("#X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => n.strip_prefix('#').and_then(|d| d.parse().ok()),
            };
            code.and_then(char::from_u32)
        }
    }
}

/// `%XX` sequences decoded (invalid UTF-8 replaced).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The code and message of a storage error body
/// (`<Error><Code>..</Code><Message>..</Message></Error>`).
pub fn parse_error(xml: &str) -> (Option<String>, Option<String>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut code, mut message) = (None, None);
    let mut current: Option<Vec<u8>> = None;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = Some(e.name().as_ref().to_vec());
                text.clear();
            }
            Ok(Event::Text(t)) => text.push_str(&t.decode().unwrap_or_default()),
            Ok(Event::GeneralRef(r)) => text.extend(r.decode().ok().and_then(|n| entity(&n))),
            Ok(Event::End(_)) => {
                match current.as_deref() {
                    Some(b"Code") => code = Some(text.trim().to_string()),
                    Some(b"Message") => message = Some(text.lines().next().unwrap_or("").trim().to_string()),
                    _ => {}
                }
                current = None;
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    (code.filter(|c| !c.is_empty()), message.filter(|m| !m.is_empty()))
}

/// The id of block `i`: every id of a blob must have the same length.
pub fn block_id(i: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("block-{i:08}"))
}

/// The Put Block List body committing `ids` in order.
pub fn block_list(ids: &[String]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>");
    for id in ids {
        xml.push_str("<Latest>");
        xml.push_str(id);
        xml.push_str("</Latest>");
    }
    xml.push_str("</BlockList>");
    xml
}

/// Standard headers that set a blob property on Put Blob, and the
/// `x-ms-blob-*` header that sets it on Put Block List (where a standard
/// header would describe the request body instead).
const PROPERTY_HEADERS: &[(&str, &str)] = &[
    ("content-type", "x-ms-blob-content-type"),
    ("content-encoding", "x-ms-blob-content-encoding"),
    ("content-language", "x-ms-blob-content-language"),
    ("content-disposition", "x-ms-blob-content-disposition"),
    ("cache-control", "x-ms-blob-cache-control"),
    ("content-md5", "x-ms-blob-content-md5"),
];

/// Headers the agent sets itself and a user's `uploadHeaders` cannot replace.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "expect", "x-ms-blob-type"];

/// The headers of an upload, from the user's `uploadHeaders` and the
/// content type guessed from the file name.
#[derive(Debug, Clone)]
pub struct UploadHeaders {
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl UploadHeaders {
    /// Validates the user's headers; an invalid name or value is an error
    /// naming it.
    pub fn new(user: &[(String, String)]) -> Result<UploadHeaders, String> {
        let mut headers = Vec::new();
        for (k, v) in user {
            let name =
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| format!("invalid upload header name '{k}'"))?;
            let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| format!("invalid value of upload header '{k}'"))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                continue;
            }
            headers.push((name, value));
        }
        Ok(UploadHeaders { headers })
    }

    fn user_sets(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.as_str() == name)
    }

    /// The headers of a Put Blob of the file `file_name`.
    pub fn for_put_blob(&self, file_name: &str) -> reqwest::header::HeaderMap {
        let mut map = self.base(file_name, "content-type");
        for (n, v) in &self.headers {
            map.append(n.clone(), v.clone());
        }
        map
    }

    /// The headers of a Put Block List of the file `file_name`: the blob's
    /// properties moved to their `x-ms-blob-*` names.
    pub fn for_block_list(&self, file_name: &str) -> reqwest::header::HeaderMap {
        let mut map = self.base(file_name, "x-ms-blob-content-type");
        for (n, v) in &self.headers {
            let name = PROPERTY_HEADERS
                .iter()
                .find(|(std, _)| *std == n.as_str())
                .and_then(|(_, ms)| reqwest::header::HeaderName::from_bytes(ms.as_bytes()).ok())
                .unwrap_or_else(|| n.clone());
            map.append(name, v.clone());
        }
        map
    }

    /// The version header, and the guessed content type under `type_header`
    /// unless the user gave one.
    fn base(&self, file_name: &str, type_header: &'static str) -> reqwest::header::HeaderMap {
        let mut map = reqwest::header::HeaderMap::new();
        if !self.user_sets("x-ms-version") {
            map.insert("x-ms-version", reqwest::header::HeaderValue::from_static(VERSION));
        }
        if !self.user_sets("content-type") && !self.user_sets("x-ms-blob-content-type") {
            let guessed = mime_guess::from_path(file_name).first_or_octet_stream();
            if let Ok(v) = reqwest::header::HeaderValue::from_str(guessed.essence_str()) {
                map.insert(type_header, v);
            }
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_pages_and_names() {
        let page = parse_listing(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://h/\" ContainerName=\"c\">\
             <Prefix>a/</Prefix><Marker/><MaxResults>2</MaxResults><Blobs>\
             <Blob><Name>a/1 &amp; 2.txt</Name><Properties><Content-Length>3</Content-Length></Properties><Metadata/></Blob>\
             <Blob><Name>a/&#x3B1;&#946;</Name></Blob>\
             <Blob><Name Encoded=\"true\">a/%EF%BF%BEodd</Name></Blob>\
             <BlobPrefix><Name>a/dir/</Name></BlobPrefix>\
             </Blobs><NextMarker>2!72!tok</NextMarker></EnumerationResults>",
        )
        .unwrap();
        assert_eq!(page.names, ["a/1 & 2.txt", "a/αβ", "a/\u{FFFE}odd"], "prefixes are not blobs");
        assert_eq!(page.next_marker.as_deref(), Some("2!72!tok"));
        let last = parse_listing("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
        assert_eq!(last, Listing::default());
        assert!(parse_listing("<Error><Code>X</Code></Error>").is_err());
        assert!(parse_listing("<EnumerationResults><Blobs><Blob><Name>x</Blob>").is_err());
        assert!(parse_listing("").is_err());
    }

    #[test]
    fn error_bodies() {
        let (code, message) = parse_error(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ContainerNotFound</Code><Message>The specified container does not exist.\nRequestId:1\nTime:t</Message></Error>",
        );
        assert_eq!(code.as_deref(), Some("ContainerNotFound"));
        assert_eq!(message.as_deref(), Some("The specified container does not exist."));
        assert_eq!(parse_error("not xml at all"), (None, None));
        assert_eq!(parse_error(""), (None, None));
    }

    #[test]
    fn urls() {
        let c = Url::parse("http://127.0.0.1:10000/devstoreaccount1/cont?sv=2023-11-03&sig=abc%2Fdef").unwrap();
        assert_eq!(
            blob_url(&c, "dir/a b#?.txt").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/cont/dir/a%20b%23%3F.txt?sv=2023-11-03&sig=abc%2Fdef"
        );
        let slash = Url::parse("http://h/acct/cont/?sig=s").unwrap();
        assert_eq!(blob_url(&slash, "x").as_str(), "http://h/acct/cont/x?sig=s");
        assert_eq!(
            list_url(&c, "in/", Some("m!1")).as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/cont?sv=2023-11-03&sig=abc%2Fdef&restype=container&comp=list&prefix=in%2F&marker=m%211"
        );
        assert_eq!(with_query(&slash, &[("comp", "block"), ("blockid", "YQ==")]).query(), Some("sig=s&comp=block&blockid=YQ%3D%3D"));
        assert_eq!(redact("http://h/c?sv=1&sig=abc&se=2"), "http://h/c?sv=1&sig=REDACTED&se=2");
        assert_eq!(redact("http://h/c"), "http://h/c");
        assert_eq!(redact("http://h/c?SIG=x"), "http://h/c?SIG=REDACTED");
    }

    #[test]
    fn block_ids_have_one_length() {
        let ids: Vec<String> = [0, 7, 99_999, 12_345_678].iter().map(|i| block_id(*i)).collect();
        assert!(ids.iter().all(|id| id.len() == ids[0].len()));
        assert_ne!(ids[0], ids[1]);
        assert!(block_list(&ids[..2]).ends_with(&format!("<BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>", ids[0], ids[1])));
    }

    #[test]
    fn upload_headers() {
        let h = UploadHeaders::new(&[("x-ms-meta-origin".into(), "openbatch".into())]).unwrap();
        let put = h.for_put_blob("out.txt");
        assert_eq!(put["content-type"], "text/plain");
        assert_eq!(put["x-ms-meta-origin"], "openbatch");
        assert_eq!(put["x-ms-version"], VERSION);
        assert_eq!(h.for_put_blob("x.unknownext")["content-type"], "application/octet-stream");
        let list = h.for_block_list("big.json");
        assert_eq!(list["x-ms-blob-content-type"], "application/json");
        assert!(list.get("content-type").is_none());

        let user = UploadHeaders::new(&[
            ("Content-Type".into(), "text/csv".into()),
            ("Content-Encoding".into(), "gzip".into()),
            ("Content-Length".into(), "1".into()),
        ])
        .unwrap();
        let put = user.for_put_blob("a.txt");
        assert_eq!(put.get_all("content-type").iter().collect::<Vec<_>>(), ["text/csv"], "the user's type replaces the guess");
        assert_eq!(put["content-encoding"], "gzip");
        assert!(put.get("content-length").is_none(), "reserved");
        let list = user.for_block_list("a.txt");
        assert_eq!(list["x-ms-blob-content-type"], "text/csv");
        assert_eq!(list["x-ms-blob-content-encoding"], "gzip");
        assert!(list.get("content-type").is_none() && list.get("content-encoding").is_none());

        assert!(UploadHeaders::new(&[("bad name".into(), "v".into())]).unwrap_err().contains("bad name"));
        assert!(UploadHeaders::new(&[("x".into(), "a\nb".into())]).is_err());
    }
}
