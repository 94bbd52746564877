//! What a task moves in and out (`resourceFiles`, `outputFiles`), turned
//! into what the agent acts on. Downloads and uploads happen on the node
//! (`transfer` crate, run by the agent); the server only validates and
//! resolves the sources.

use proto::{OutputFileSpec, ResourceFileSpec};
use wire::models::{CloudJob, OutputFile, ResourceFile, TaskContainerSettings};
use proto::ContainerSpec;

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
    }
}
