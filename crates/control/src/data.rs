//! What a task moves in and out (`resourceFiles`, `outputFiles`), turned
//! into what the agent acts on. Downloads and uploads happen on the node
//! (`transfer` crate, run by the agent); the server only validates and
//! resolves the sources.

use proto::ContainerSpec;
use proto::{OutputFileSpec, ResourceFileSpec};
use wire::models::{CloudJob, OutputFile, ResourceFile, TaskContainerSettings};

/// The account's linked storage account (`serve --auto-storage`, an Azure
/// Storage connection string): `autoStorageContainerName` resource files
/// are read from its containers through a short-lived container SAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoStorage {
    pub account: String,
    pub key: Vec<u8>,
    /// The blob service URL, e.g. `https://acct.blob.core.windows.net`.
    pub endpoint: String,
}

/// The SAS version signed (its string-to-sign has the encryption-scope line).
const SAS_VERSION: &str = "2020-12-06";
/// How long an auto-storage SAS handed to a node is valid.
const SAS_LIFETIME_HOURS: i64 = 24;

impl AutoStorage {
    /// Parses a connection string (`AccountName`, `AccountKey`, and
    /// `BlobEndpoint` or `DefaultEndpointsProtocol` + `EndpointSuffix`).
    pub fn parse(conn: &str) -> Result<AutoStorage, String> {
        use base64::Engine;
        let mut kv = std::collections::HashMap::new();
        for part in conn.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("'{part}' is not Key=Value"))?;
            kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let account = kv.get("accountname").cloned().ok_or("AccountName is missing")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(kv.get("accountkey").ok_or("AccountKey is missing")?)
            .map_err(|e| format!("AccountKey is not base64: {e}"))?;
        let endpoint = match kv.get("blobendpoint") {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!(
                "{}://{account}.blob.{}",
                kv.get("defaultendpointsprotocol").map(String::as_str).unwrap_or("https"),
                kv.get("endpointsuffix").map(String::as_str).unwrap_or("core.windows.net")
            ),
        };
        Ok(AutoStorage { account, key, endpoint })
    }

    /// The container's URL with a read+list service SAS valid from `now`.
    pub fn container_url(&self, container: &str, now: chrono::DateTime<chrono::Utc>) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (start, expiry) = (fmt(now - chrono::Duration::minutes(5)), fmt(now + chrono::Duration::hours(SAS_LIFETIME_HOURS)));
        let resource = format!("/blob/{}/{container}", self.account);
        // permissions, start, expiry, resource, identifier, IP, protocol,
        // version, resource type, snapshot time, encryption scope, and the
        // five response-header overrides.
        let to_sign = ["rl", &start, &expiry, &resource, "", "", "", SAS_VERSION, "c", "", "", "", "", "", "", ""].join("\n");
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        format!("{}/{}?sv={SAS_VERSION}&sr=c&sp=rl&st={}&se={}&sig={}", self.endpoint, enc(container), enc(&start), enc(&expiry), enc(&sig))
    }
}

/// The agent's view of resource files; `autoStorageContainerName` becomes
/// a container URL with a SAS when the server has an auto-storage account
/// (without one, such an entry keeps no source and fails to download with a
/// message saying so).
pub fn resource_specs(files: &[ResourceFile], auto: Option<&AutoStorage>) -> Vec<ResourceFileSpec> {
    files
        .iter()
        .map(|f| ResourceFileSpec {
            http_url: f.http_url.clone(),
            container_url: f.storage_container_url.clone().or_else(|| {
                let name = f.auto_storage_container_name.as_deref()?;
                auto.map(|a| a.container_url(name, chrono::Utc::now()))
            }),
            blob_prefix: f.blob_prefix.clone(),
            file_path: f.file_path.clone(),
            file_mode: f.file_mode.clone(),
        })
        .collect()
}

/// The agent's view of output files.
pub fn output_specs(files: &[OutputFile]) -> Vec<OutputFileSpec> {
    files
        .iter()
        .filter_map(|f| {
            let c = f.destination.container.as_ref()?;
            Some(OutputFileSpec {
                file_pattern: f.file_pattern.clone(),
                container_url: c.container_url.clone(),
                path: c.path.clone(),
                upload_headers: c.upload_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone().unwrap_or_default())).collect(),
                upload_condition: f.upload_options.upload_condition.as_str().to_string(),
            })
        })
        .collect()
}

/// The agent's view of a task's container. Mounts name directories relative
/// to the node root, mounted at the same path inside the container (so the
/// `AZ_BATCH_*` paths hold there too); the task's own directory is always
/// among them.
pub fn container_spec(c: &TaskContainerSettings, job: &CloudJob, task_id: &str) -> ContainerSpec {
    use wire::enums::{ContainerHostDataPath as P, ContainerWorkingDirectory};
    let job_dir = wire::workflow::job_dir(&job.id);
    let task_dir = format!("{job_dir}/{task_id}");
    let mounts = c.container_host_batch_bind_mounts.as_ref().map(|list| {
        let mut m: Vec<(String, bool)> = list
            .iter()
            .filter_map(|b| {
                let rel = match b.source? {
                    P::Shared => "shared".to_string(),
                    P::Startup => "startup".to_string(),
                    P::VfsMounts => "fsmounts".to_string(),
                    P::Task => task_dir.clone(),
                    P::JobPrep => format!("{job_dir}/jobpreparation"),
                    P::Applications => "applications".to_string(),
                };
                Some((rel, b.is_read_only.unwrap_or(false)))
            })
            .collect();
        if !m.iter().any(|(rel, _)| *rel == task_dir) {
            m.push((task_dir.clone(), false));
        }
        m
    });
    ContainerSpec {
        image: c.image_name.clone(),
        run_options: c.container_run_options.clone(),
        task_working_dir: c.working_directory != Some(ContainerWorkingDirectory::ContainerImageDefault),
        mounts,
        registry: c.registry.as_ref().and_then(|r| {
            Some(proto::RegistryLogin {
                server: r.registry_server.clone().unwrap_or_default(),
                username: r.username.clone()?,
                password: r.password.clone().unwrap_or_default(),
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_storage_connection_strings_and_sas() {
        let a = AutoStorage::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .unwrap();
        assert_eq!((a.account.as_str(), a.key.as_slice()), ("devstoreaccount1", b"key".as_slice()));
        assert_eq!(a.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let b = AutoStorage::parse("AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net").unwrap();
        assert_eq!(b.endpoint, "https://acct.blob.core.windows.net");
        assert!(AutoStorage::parse("AccountName=x").is_err());
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let url = a.container_url("in put", now);
        assert!(
            url.starts_with("http://127.0.0.1:10000/devstoreaccount1/in%20put?sv=2020-12-06&sr=c&sp=rl&st=2025%2D12%2D31T23%3A55%3A00Z"),
            "{url}"
        );
        assert!(url.contains("&sig="));
    }
}
