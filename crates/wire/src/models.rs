//! JSON models of jobs and tasks with their exact wire names.
//!
//! Request bodies (`*AddParameter`, `*Patch`) and stored/returned resources
//! (`CloudJob`, `CloudTask`) are separate types: a client cannot set a
//! read-only property by sending it. Optional properties are skipped when
//! absent, so a stored document holds exactly what the service would return.
//! Nested shapes that openbatch does not interpret yet (auto-pool
//! specifications, network configuration) are kept as raw JSON objects so they
//! still round-trip.

use crate::enums::*;
use crate::time::{Duration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSetting {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataItem {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameValuePair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_storage_container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_container_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_reference: Option<IdentityReference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadHeader {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileBlobContainerDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub container_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_reference: Option<IdentityReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_headers: Option<Vec<UploadHeader>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<OutputFileBlobContainerDestination>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileUploadOptions {
    pub upload_condition: UploadCondition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFile {
    pub file_pattern: String,
    pub destination: OutputFileDestination,
    pub upload_options: OutputFileUploadOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_action: Option<JobAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_action: Option<DependencyAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeMapping {
    pub code: i32,
    pub exit_options: ExitOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeRangeMapping {
    pub start: i32,
    pub end: i32,
    pub exit_options: ExitOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitConditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_codes: Option<Vec<ExitCodeMapping>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code_ranges: Option<Vec<ExitCodeRangeMapping>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_processing_error: Option<ExitOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload_error: Option<ExitOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ExitOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRegistry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_reference: Option<IdentityReference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHostBatchBindMount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ContainerHostDataPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskContainerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_run_options: Option<String>,
    pub image_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<ContainerRegistry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<ContainerWorkingDirectory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_host_batch_bind_mounts: Option<Vec<ContainerHostBatchBindMount>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AffinityInformation {
    pub affinity_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoUserSpecification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AutoUserScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation_level: Option<ElevationLevel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_user: Option<AutoUserSpecification>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiInstanceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_instances: Option<i32>,
    pub coordination_command_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_resource_files: Option<Vec<ResourceFile>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskIdRange {
    pub start: i32,
    pub end: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDependencies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id_ranges: Option<Vec<TaskIdRange>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPackageReference {
    pub application_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The body of a certificate add (`POST /certificates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAddParameter {
    pub thumbprint: String,
    pub thumbprint_algorithm: String,
    /// The certificate, base64: DER (`cer`) or PKCS #12 (`pfx`).
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_format: Option<CertificateFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One of a pool's `certificateReferences`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateReference {
    pub thumbprint: String,
    pub thumbprint_algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_location: Option<CertificateStoreLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_name: Option<String>,
    /// Absent or empty: every kind of account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Vec<CertificateVisibility>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthenticationTokenSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<AccessScope>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureInformation {
    pub category: ErrorCategory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<NameValuePair>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerExecutionInformation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExecutionInformation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_info: Option<ContainerExecutionInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInformation>,
    pub retry_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<Timestamp>,
    pub requeue_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_requeue_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeNodeInformation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory_url: Option<String>,
}

/// Resource usage of a task or job (`stats`, returned with `$expand=stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatistics {
    #[serde(default)]
    pub url: String,
    pub start_time: Timestamp,
    pub last_update_time: Timestamp,
    #[serde(rename = "userCPUTime")]
    pub user_cpu_time: Duration,
    #[serde(rename = "kernelCPUTime")]
    pub kernel_cpu_time: Duration,
    pub wall_clock_time: Duration,
    #[serde(rename = "readIOps")]
    pub read_iops: i64,
    #[serde(rename = "writeIOps")]
    pub write_iops: i64,
    #[serde(rename = "readIOGiB")]
    pub read_io_gib: f64,
    #[serde(rename = "writeIOGiB")]
    pub write_io_gib: f64,
    pub wait_time: Duration,
}

/// `POST /jobs/{jobId}/tasks` body (`TaskAddParameter` / `BatchTaskCreateOptions`).
/// Required properties are optional here so that their absence is reported
/// as `MissingRequiredProperty`, not as a JSON syntax error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAddParameter {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub command_line: Option<String>,
    #[serde(default)]
    pub container_settings: Option<TaskContainerSettings>,
    #[serde(default)]
    pub exit_conditions: Option<ExitConditions>,
    #[serde(default)]
    pub resource_files: Option<Vec<ResourceFile>>,
    #[serde(default)]
    pub output_files: Option<Vec<OutputFile>>,
    #[serde(default)]
    pub environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default)]
    pub affinity_info: Option<AffinityInformation>,
    #[serde(default)]
    pub constraints: Option<TaskConstraints>,
    #[serde(default)]
    pub required_slots: Option<i32>,
    #[serde(default)]
    pub user_identity: Option<UserIdentity>,
    #[serde(default)]
    pub multi_instance_settings: Option<MultiInstanceSettings>,
    #[serde(default)]
    pub depends_on: Option<TaskDependencies>,
    #[serde(default)]
    pub application_package_references: Option<Vec<ApplicationPackageReference>>,
    #[serde(default)]
    pub authentication_token_settings: Option<AuthenticationTokenSettings>,
}

/// `POST /jobs/{jobId}/addtaskcollection` body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskAddCollectionParameter {
    #[serde(default)]
    pub value: Option<Vec<serde_json::Value>>,
}

/// A task as stored and returned (`CloudTask` / `BatchTask`). `url` is added
/// when the task is rendered, from the address the client used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudTask {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub e_tag: String,
    pub last_modified: Timestamp,
    pub creation_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_conditions: Option<ExitConditions>,
    pub state: TaskState,
    pub state_transition_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<TaskState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<Timestamp>,
    pub command_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<TaskContainerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_files: Option<Vec<ResourceFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_files: Option<Vec<OutputFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_info: Option<AffinityInformation>,
    pub constraints: TaskConstraints,
    pub required_slots: i32,
    pub user_identity: UserIdentity,
    pub execution_info: TaskExecutionInformation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_info: Option<ComputeNodeInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_instance_settings: Option<MultiInstanceSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<TaskStatistics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<TaskDependencies>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_package_references: Option<Vec<ApplicationPackageReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_token_settings: Option<AuthenticationTokenSettings>,
    /// openbatch's own bookkeeping, never sent to clients: the current
    /// attempt's id (reports from any other attempt are discarded) and the
    /// node it runs on.
    #[serde(default, rename = "_attempt", skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    #[serde(default, rename = "_node", skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When the task directory of the last run is due for deletion
    /// (`retentionTime` after it completed), and whether it was deleted.
    #[serde(default, rename = "_cleanupAt", skip_serializing_if = "Option::is_none")]
    pub cleanup_at: Option<Timestamp>,
    #[serde(default, rename = "_filesCleaned", skip_serializing_if = "std::ops::Not::not")]
    pub files_cleaned: bool,
    /// A multi-instance task's subtasks (`SubtaskInformation`, ids 1..n-1)
    /// as its last attempt left them.
    #[serde(default, rename = "_subtasks", skip_serializing_if = "Option::is_none")]
    pub subtasks: Option<Vec<serde_json::Value>>,
}

/// `PUT /jobs/{jobId}/tasks/{taskId}` body: only the constraints are writable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskUpdateParameter {
    #[serde(default)]
    pub constraints: Option<TaskConstraints>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolInformation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    /// Kept verbatim: openbatch records auto-pool specifications but does not create auto pools yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_pool_specification: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobManagerTask {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub command_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<TaskContainerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_files: Option<Vec<ResourceFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_files: Option<Vec<OutputFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_slots: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_job_on_completion: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_exclusive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_package_references: Option<Vec<ApplicationPackageReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_token_settings: Option<AuthenticationTokenSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_low_priority_node: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPreparationTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub command_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<TaskContainerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_files: Option<Vec<ResourceFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_on_node_reboot_after_success: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReleaseTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub command_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<TaskContainerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_files: Option<Vec<ResourceFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
}

/// `POST /jobs` body (`JobAddParameter` / `BatchJobCreateOptions`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobAddParameter {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub uses_task_dependencies: Option<bool>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub allow_task_preemption: Option<bool>,
    #[serde(default)]
    pub max_parallel_tasks: Option<i32>,
    #[serde(default)]
    pub constraints: Option<JobConstraints>,
    #[serde(default)]
    pub job_manager_task: Option<JobManagerTask>,
    #[serde(default)]
    pub job_preparation_task: Option<JobPreparationTask>,
    #[serde(default)]
    pub job_release_task: Option<JobReleaseTask>,
    #[serde(default)]
    pub common_environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default)]
    pub pool_info: Option<PoolInformation>,
    #[serde(default)]
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    #[serde(default)]
    pub on_task_failure: Option<OnTaskFailure>,
    #[serde(default)]
    pub network_configuration: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Vec<MetadataItem>>,
}

/// `PATCH /jobs/{id}` (only the given properties change) and `PUT /jobs/{id}`
/// (every updatable property is replaced; absent ones return to defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobUpdateParameter {
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub allow_task_preemption: Option<bool>,
    #[serde(default)]
    pub max_parallel_tasks: Option<i32>,
    #[serde(default)]
    pub constraints: Option<JobConstraints>,
    #[serde(default)]
    pub pool_info: Option<PoolInformation>,
    #[serde(default)]
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    #[serde(default)]
    pub metadata: Option<Vec<MetadataItem>>,
    #[serde(default)]
    pub network_configuration: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDisableParameter {
    #[serde(default)]
    pub disable_tasks: Option<DisableJobOption>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTerminateParameter {
    #[serde(default)]
    pub terminate_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSchedulingError {
    pub category: ErrorCategory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<NameValuePair>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionInformation {
    pub start_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_error: Option<JobSchedulingError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatistics {
    pub url: String,
    pub start_time: Timestamp,
    pub last_update_time: Timestamp,
    #[serde(rename = "userCPUTime")]
    pub user_cpu_time: Duration,
    #[serde(rename = "kernelCPUTime")]
    pub kernel_cpu_time: Duration,
    pub wall_clock_time: Duration,
    #[serde(rename = "readIOps")]
    pub read_iops: i64,
    #[serde(rename = "writeIOps")]
    pub write_iops: i64,
    #[serde(rename = "readIOGiB")]
    pub read_io_gib: f64,
    #[serde(rename = "writeIOGiB")]
    pub write_io_gib: f64,
    pub num_succeeded_tasks: i64,
    pub num_failed_tasks: i64,
    pub num_task_retries: i64,
    pub wait_time: Duration,
}

/// A job as stored and returned (`CloudJob` / `BatchJob`); `url` and `stats`
/// are added when rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudJob {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub uses_task_dependencies: bool,
    pub e_tag: String,
    pub last_modified: Timestamp,
    pub creation_time: Timestamp,
    pub state: JobState,
    pub state_transition_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<Timestamp>,
    pub priority: i32,
    pub allow_task_preemption: bool,
    pub max_parallel_tasks: i32,
    pub constraints: JobConstraints,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_manager_task: Option<JobManagerTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_preparation_task: Option<JobPreparationTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_release_task: Option<JobReleaseTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_environment_settings: Option<Vec<EnvironmentSetting>>,
    pub pool_info: PoolInformation,
    pub on_all_tasks_complete: OnAllTasksComplete,
    pub on_task_failure: OnTaskFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<MetadataItem>>,
    pub execution_info: JobExecutionInformation,
    /// openbatch's own bookkeeping, never sent to clients: the `disableTasks`
    /// option of the pending disable.
    #[serde(default, rename = "_disableTasks", skip_serializing_if = "Option::is_none")]
    pub pending_disable: Option<DisableJobOption>,
}

/// One `addtaskcollection` result item.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAddResult {
    pub status: TaskAddStatus,
    pub task_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub active: i64,
    pub running: i64,
    pub completed: i64,
    pub succeeded: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCountsResult {
    pub task_counts: TaskCounts,
    pub task_slot_counts: TaskCounts,
}

/// The numeric members of a pool's request bodies (add, patch, update
/// properties, resize). Pools are stored much as sent, untyped; reading
/// this typed view of a body (leniently, see [`crate::lenient`]) checks
/// their types and gives the numbers to write over strings a client sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dedicated_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_low_priority_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_slots_per_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks_per_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<PoolStartTaskNumbers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_accounts: Option<Vec<PoolUserNumbers>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<PoolNetworkNumbers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_configuration: Option<PoolVmNumbers>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStartTaskNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolUserNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_user_configuration: Option<LinuxUserNumbers>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxUserNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolNetworkNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_configuration: Option<PoolEndpointNumbers>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolEndpointNumbers {
    #[serde(default, rename = "inboundNATPools", skip_serializing_if = "Option::is_none")]
    pub inbound_nat_pools: Option<Vec<InboundNatPoolNumbers>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundNatPoolNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_port_range_start: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_port_range_end: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolVmNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disks: Option<Vec<DataDiskNumbers>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<DataDiskNumbers>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataDiskNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<i32>,
    #[serde(default, rename = "diskSizeGB", skip_serializing_if = "Option::is_none")]
    pub disk_size_gb: Option<i32>,
}
