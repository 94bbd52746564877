//! The published data-plane api-versions (from `2018-08-01.7.0` on) and how
//! the older ones spell the wire differently from the newest.
//!
//! Everything below the request edge speaks the newest spelling only. The
//! `api` crate passes what a client sent under an older version through
//! [`request_body`] and [`query_names`] before a handler reads it, and what
//! it answers through [`response_body`], so nothing else knows versions.
//!
//! The differences, from the REST specifications of each version (the
//! properties of every model the versions share are otherwise the same; an
//! older client never sends what its version lacks, and what a response has
//! beyond its version it ignores):
//!
//! | versions | spelling | newest spelling |
//! |---|---|---|
//! | before `2020-09-01.12.0` | pool `maxTasksPerNode` (at any depth: pools, auto-pool specifications) | `taskSlotsPerNode` |
//! | before `2020-09-01.12.0` | `GET /jobs/{id}/taskcounts` answers the `TaskCounts` alone | `{taskCounts, taskSlotCounts}` |
//! | `2019-08-01.10.0` | `networkConfiguration.publicIPs: [id, ...]` | `publicIPAddressConfiguration: {provision: usermanaged, ipAddressIds}` |
//! | `2018-08-01.7.0` | a resource file's `blobSource` | `httpUrl` |
//! | `2018-08-01.7.0` | pool usage metrics carry `dataIngressGiB`, `dataEgressGiB` | (removed) |
//!
//! A property that exists only under its newer name is unknown to an older
//! version and ignored there, as any unknown property is: a request under
//! `2019-08-01.10.0` that sends both `maxTasksPerNode` and
//! `taskSlotsPerNode` gets the former.

use crate::error::{Error, ErrorCode, Result};
use serde_json::{Map, Value};

macro_rules! versions {
    ($($variant:ident = $name:literal),+ $(,)?) => {
        /// A published data-plane api-version, ordered oldest first.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ApiVersion { $($variant),+ }

        impl ApiVersion {
            /// Every accepted version, oldest first.
            pub const ALL: &'static [ApiVersion] = &[$(ApiVersion::$variant),+];
            /// The version as it is written in `api-version`.
            pub fn as_str(self) -> &'static str {
                match self { $(ApiVersion::$variant => $name),+ }
            }
        }
    };
}

versions! {
    V2018_08_01 = "2018-08-01.7.0",
    V2018_12_01 = "2018-12-01.8.0",
    V2019_06_01 = "2019-06-01.9.0",
    V2019_08_01 = "2019-08-01.10.0",
    V2020_03_01 = "2020-03-01.11.0",
    V2020_09_01 = "2020-09-01.12.0",
    V2021_06_01 = "2021-06-01.14.0",
    V2022_01_01 = "2022-01-01.15.0",
    V2022_10_01 = "2022-10-01.16.0",
    V2023_05_01 = "2023-05-01.17.0",
    V2023_11_01 = "2023-11-01.18.0",
    V2024_02_01 = "2024-02-01.19.0",
    V2024_07_01 = "2024-07-01.20.0",
    V2025_06_01 = "2025-06-01",
}

impl ApiVersion {
    /// The newest version: the spelling everything below the edge speaks.
    pub const LATEST: ApiVersion = ApiVersion::V2025_06_01;

    /// The version named exactly so (`api-version` values are exact).
    pub fn parse(s: &str) -> Option<ApiVersion> {
        ApiVersion::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// Pools say `maxTasksPerNode` (renamed `taskSlotsPerNode` in 2020-09-01.12.0).
    pub fn says_max_tasks_per_node(self) -> bool {
        self < ApiVersion::V2020_09_01
    }

    /// `GET /jobs/{id}/taskcounts` answers the bare `TaskCounts` (the
    /// `TaskCountsResult` with slot counts came in 2020-09-01.12.0).
    pub fn bare_task_counts(self) -> bool {
        self < ApiVersion::V2020_09_01
    }

    /// Network configurations say `publicIPs` (only 2019-08-01.10.0).
    pub fn says_public_ips(self) -> bool {
        self == ApiVersion::V2019_08_01
    }

    /// Resource files say `blobSource` (only 2018-08-01.7.0).
    pub fn says_blob_source(self) -> bool {
        self == ApiVersion::V2018_08_01
    }

    /// Pool usage metrics carry `dataIngressGiB`/`dataEgressGiB` (only 2018-08-01.7.0).
    pub fn has_data_transfer_metrics(self) -> bool {
        self == ApiVersion::V2018_08_01
    }
}

/// What a response body is, where that matters to its translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `GET /jobs/{id}/taskcounts`.
    TaskCounts,
    /// `GET /poolusagemetrics`.
    PoolUsageMetrics,
    /// Any other resource or list.
    Resource,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The quoted property names whose presence in a body sent under `v` means
/// the body needs translating (nothing else is parsed twice).
fn request_triggers(v: ApiVersion) -> Vec<&'static [u8]> {
    let mut t: Vec<&'static [u8]> = Vec::new();
    if v.says_max_tasks_per_node() {
        t.extend([&b"\"maxTasksPerNode\""[..], b"\"taskSlotsPerNode\""]);
    }
    if v.says_public_ips() {
        t.extend([&b"\"publicIPs\""[..], b"\"publicIPAddressConfiguration\""]);
    }
    if v.says_blob_source() {
        t.push(b"\"resourceFiles\"");
    }
    t
}

/// A request body sent under `v` in the newest spelling, or `None` when it
/// reads the same in both. The body must be valid as any body must (see
/// [`crate::validate::check_strict_json`]); a value of the wrong type for
/// an old property is 400 `InvalidPropertyValue` naming it.
pub fn request_body(v: ApiVersion, body: &[u8]) -> Result<Option<Vec<u8>>> {
    let triggers = request_triggers(v);
    if !triggers.iter().any(|t| contains(body, t)) {
        return Ok(None);
    }
    crate::validate::check_strict_json(body)?;
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| {
        Error::msg(ErrorCode::InvalidRequestBody, "The specified Request Body is not syntactically valid.").with("Reason", e.to_string())
    })?;
    let mut changed = false;
    upgrade(v, &mut doc, &mut changed)?;
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&doc).map(Some).map_err(Error::internal)
}

fn rename(m: &mut Map<String, Value>, from: &str, to: &str) -> bool {
    match m.shift_remove(from) {
        Some(x) => {
            m.insert(to.to_string(), x);
            true
        }
        None => false,
    }
}

/// Old spelling → newest, at every depth of a request body.
fn upgrade(v: ApiVersion, x: &mut Value, changed: &mut bool) -> Result<()> {
    match x {
        Value::Object(m) => {
            if v.says_max_tasks_per_node() {
                // The newer name is unknown to this version: ignored.
                *changed |= m.shift_remove("taskSlotsPerNode").is_some();
                *changed |= rename(m, "maxTasksPerNode", "taskSlotsPerNode");
            }
            if v.says_public_ips() {
                *changed |= m.shift_remove("publicIPAddressConfiguration").is_some();
                if let Some(ips) = m.shift_remove("publicIPs") {
                    *changed = true;
                    match ips {
                        Value::Null => {}
                        Value::Array(ids) if ids.iter().all(Value::is_string) => {
                            let config = serde_json::json!({"provision": "usermanaged", "ipAddressIds": ids});
                            m.insert("publicIPAddressConfiguration".into(), config);
                        }
                        _ => return Err(Error::invalid_property("publicIPs", "The value must be an array of strings.")),
                    }
                }
            }
            if v.says_blob_source() {
                if let Some(Value::Array(files)) = m.get_mut("resourceFiles") {
                    for f in files.iter_mut().filter_map(Value::as_object_mut) {
                        if f.contains_key("blobSource") {
                            f.shift_remove("httpUrl");
                        }
                        *changed |= rename(f, "blobSource", "httpUrl");
                    }
                }
            }
            for child in m.values_mut() {
                upgrade(v, child, changed)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                upgrade(v, child, changed)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn response_triggers(v: ApiVersion, kind: Body) -> Vec<&'static [u8]> {
    let mut t: Vec<&'static [u8]> = Vec::new();
    if kind == Body::TaskCounts && v.bare_task_counts() {
        t.push(b"\"taskCounts\"");
    }
    if kind == Body::PoolUsageMetrics && v.has_data_transfer_metrics() {
        t.push(b"\"totalCoreHours\"");
    }
    if v.says_max_tasks_per_node() {
        t.push(b"\"taskSlotsPerNode\"");
    }
    if v.says_public_ips() {
        t.push(b"\"publicIPAddressConfiguration\"");
    }
    if v.says_blob_source() {
        t.push(b"\"resourceFiles\"");
    }
    t
}

/// A response body (JSON, in the newest spelling) as version `v` spells
/// it, or `None` when it reads the same in both.
pub fn response_body(v: ApiVersion, kind: Body, body: &[u8]) -> Option<Vec<u8>> {
    if !response_triggers(v, kind).iter().any(|t| contains(body, t)) {
        return None;
    }
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    if kind == Body::TaskCounts && v.bare_task_counts() {
        doc = doc.get("taskCounts").cloned()?;
    }
    if kind == Body::PoolUsageMetrics && v.has_data_transfer_metrics() {
        for m in doc.get_mut("value").and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut) {
            m.entry("dataIngressGiB").or_insert(serde_json::json!(0.0));
            m.entry("dataEgressGiB").or_insert(serde_json::json!(0.0));
        }
    }
    downgrade(v, &mut doc);
    serde_json::to_vec(&doc).ok()
}

/// Newest spelling → old, at every depth of a response body.
fn downgrade(v: ApiVersion, x: &mut Value) {
    match x {
        Value::Object(m) => {
            if v.says_max_tasks_per_node() {
                rename(m, "taskSlotsPerNode", "maxTasksPerNode");
            }
            if v.says_public_ips() {
                if let Some(config) = m.shift_remove("publicIPAddressConfiguration") {
                    if let Some(ids) = config.get("ipAddressIds").filter(|ids| ids.is_array()) {
                        m.insert("publicIPs".into(), ids.clone());
                    }
                }
            }
            if v.says_blob_source() {
                if let Some(Value::Array(files)) = m.get_mut("resourceFiles") {
                    for f in files.iter_mut().filter_map(Value::as_object_mut) {
                        rename(f, "httpUrl", "blobSource");
                    }
                }
            }
            for child in m.values_mut() {
                downgrade(v, child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| downgrade(v, c)),
        _ => {}
    }
}

/// A `$select`, `$expand` or `$filter` value sent under `v` with its
/// property names in the newest spelling, or `None` when unchanged. Text
/// inside quoted literals (`'maxTasksPerNode'`) is left as it is.
pub fn query_names(v: ApiVersion, text: &str) -> Option<String> {
    if !v.says_max_tasks_per_node() || !text.to_ascii_lowercase().contains("maxtaskspernode") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.eq_ignore_ascii_case("maxTasksPerNode") {
            out.push_str("taskSlotsPerNode");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if !quoted && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn up(v: ApiVersion, body: Value) -> Value {
        let text = serde_json::to_vec(&body).unwrap();
        match request_body(v, &text).unwrap() {
            Some(b) => serde_json::from_slice(&b).unwrap(),
            None => body,
        }
    }

    fn down(v: ApiVersion, kind: Body, body: Value) -> Value {
        let text = serde_json::to_vec(&body).unwrap();
        match response_body(v, kind, &text) {
            Some(b) => serde_json::from_slice(&b).unwrap(),
            None => body,
        }
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(ApiVersion::ALL.len(), 14);
        for v in ApiVersion::ALL {
            assert_eq!(ApiVersion::parse(v.as_str()), Some(*v));
        }
        assert!(ApiVersion::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ApiVersion::parse("2019-08-01"), None);
        assert_eq!(ApiVersion::parse("2017-09-01.6.0"), None);
        assert_eq!(*ApiVersion::ALL.last().unwrap(), ApiVersion::LATEST);
    }

    #[test]
    fn max_tasks_per_node_both_ways() {
        let v = ApiVersion::V2019_08_01;
        let body = json!({"id": "p", "maxTasksPerNode": 4, "taskSlotsPerNode": 9,
            "startTask": {"commandLine": "echo \"maxTasksPerNode\""}});
        let got = up(v, body);
        assert_eq!(got["taskSlotsPerNode"], 4);
        assert!(got.get("maxTasksPerNode").is_none());
        assert_eq!(got["startTask"]["commandLine"], "echo \"maxTasksPerNode\"", "values are never touched");
        // In an auto-pool specification, at depth.
        let job = json!({"id": "j", "poolInfo": {"autoPoolSpecification": {"pool": {"vmSize": "x", "maxTasksPerNode": "2"}}}});
        assert_eq!(up(v, job)["poolInfo"]["autoPoolSpecification"]["pool"]["taskSlotsPerNode"], "2");
        // Newer versions are left alone (a `maxTasksPerNode` there is unknown).
        let body = json!({"maxTasksPerNode": 4});
        assert_eq!(request_body(ApiVersion::V2020_09_01, &serde_json::to_vec(&body).unwrap()).unwrap(), None);
        let pools = json!({"value": [{"id": "p", "taskSlotsPerNode": 3}]});
        assert_eq!(down(v, Body::Resource, pools.clone())["value"][0]["maxTasksPerNode"], 3);
        assert_eq!(down(ApiVersion::V2020_09_01, Body::Resource, pools.clone()), pools);
    }

    #[test]
    fn task_counts_bare_before_2020_09() {
        let counts = json!({"taskCounts": {"active": 1, "running": 0, "completed": 2, "succeeded": 2, "failed": 0},
            "taskSlotCounts": {"active": 1, "running": 0, "completed": 2, "succeeded": 2, "failed": 0}});
        assert_eq!(down(ApiVersion::V2020_03_01, Body::TaskCounts, counts.clone()), counts["taskCounts"]);
        assert_eq!(down(ApiVersion::V2020_09_01, Body::TaskCounts, counts.clone()), counts);
    }

    #[test]
    fn public_ips_in_2019_08_only() {
        let v = ApiVersion::V2019_08_01;
        let body =
            json!({"networkConfiguration": {"publicIPs": ["/ip/1"], "publicIPAddressConfiguration": {"provision": "nopublicipaddresses"}}});
        let got = up(v, body);
        assert_eq!(
            got["networkConfiguration"],
            json!({"publicIPAddressConfiguration": {"provision": "usermanaged", "ipAddressIds": ["/ip/1"]}})
        );
        assert_eq!(down(v, Body::Resource, got)["networkConfiguration"], json!({"publicIPs": ["/ip/1"]}));
        let bad = serde_json::to_vec(&json!({"networkConfiguration": {"publicIPs": "x"}})).unwrap();
        assert_eq!(request_body(v, &bad).unwrap_err().code, ErrorCode::InvalidPropertyValue);
    }

    #[test]
    fn blob_source_in_2018_08_only() {
        let v = ApiVersion::V2018_08_01;
        let task = json!({"id": "t", "resourceFiles": [{"blobSource": "http://a/b", "filePath": "b"}],
            "metadata": [{"name": "blobSource", "value": "x"}]});
        let got = up(v, task);
        assert_eq!(got["resourceFiles"], json!([{"filePath": "b", "httpUrl": "http://a/b"}]));
        assert_eq!(got["metadata"][0]["name"], "blobSource");
        let back = down(v, Body::Resource, json!({"startTask": {"resourceFiles": [{"httpUrl": "http://a/b", "filePath": "b"}]}}));
        assert_eq!(back["startTask"]["resourceFiles"][0]["blobSource"], "http://a/b");
        let m = down(v, Body::PoolUsageMetrics, json!({"value": [{"poolId": "p", "totalCoreHours": 1.5}]}));
        assert_eq!(m["value"][0]["dataIngressGiB"], 0.0);
    }

    #[test]
    fn bodies_stay_strict() {
        let dup = br#"{"maxTasksPerNode": 1, "maxTasksPerNode": 2}"#;
        assert_eq!(request_body(ApiVersion::V2019_08_01, dup).unwrap_err().code, ErrorCode::InvalidRequestBody);
        assert_eq!(request_body(ApiVersion::V2019_08_01, b"{\"id\": 1}").unwrap(), None);
    }

    #[test]
    fn query_names_outside_literals() {
        let v = ApiVersion::V2019_08_01;
        assert_eq!(query_names(v, "id,maxTasksPerNode").as_deref(), Some("id,taskSlotsPerNode"));
        assert_eq!(
            query_names(v, "maxTasksPerNode eq 2 and id eq 'maxTasksPerNode'").as_deref(),
            Some("taskSlotsPerNode eq 2 and id eq 'maxTasksPerNode'")
        );
        assert_eq!(query_names(ApiVersion::LATEST, "maxTasksPerNode"), None);
        assert_eq!(query_names(v, "id,state"), None);
    }
}
