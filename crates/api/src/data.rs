//! What a task moves in and out (`resourceFiles`, `outputFiles`), turned
//! into what the agent acts on. Downloads and uploads happen on the node
//! (`transfer` crate, run by the agent); the server only validates and
//! resolves the sources.

use proto::{OutputFileSpec, ResourceFileSpec};
use wire::models::{OutputFile, ResourceFile};

/// The agent's view of resource files. `autoStorageContainerName` needs an
/// auto-storage account, which openbatch has no configuration for yet: such
/// an entry keeps no source and fails to download with a clear message.
pub fn resource_specs(files: &[ResourceFile]) -> Vec<ResourceFileSpec> {
    files
        .iter()
        .map(|f| ResourceFileSpec {
            http_url: f.http_url.clone(),
            container_url: f.storage_container_url.clone(),
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
                upload_headers: c
                    .upload_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone().unwrap_or_default()))
                    .collect(),
                upload_condition: f.upload_options.upload_condition.as_str().to_string(),
            })
        })
        .collect()
}
