//! What an agent is sent to run an attempt: command line, directories and the
//! environment (Batch's variables, the job's, the task's).

use crate::config::ClusterConfig;
use proto::TaskLaunch;
use std::collections::BTreeMap;
use wire::encode_segment;
use wire::models::{CloudJob, CloudTask, ComputeNodeInformation};

pub(crate) fn node_info(account_url: &str, pool: &str, node: &str, job: &str, task: &str) -> ComputeNodeInformation {
    let task_dir = format!("{}/{task}", wire::workflow::job_dir(job));
    ComputeNodeInformation {
        affinity_id: Some(format!("TVM:{node}")),
        node_url: Some(format!("{account_url}/pools/{}/nodes/{}", encode_segment(pool), encode_segment(node))),
        pool_id: Some(pool.to_string()),
        node_id: Some(node.to_string()),
        task_root_directory_url: Some(format!(
            "{account_url}/pools/{}/nodes/{}/files/{}",
            encode_segment(pool),
            encode_segment(node),
            task_dir
        )),
        task_root_directory: Some(task_dir),
    }
}

/// Everything the agent needs to run an attempt: command line, directory and
/// the environment — Batch's variables, then the job's common settings, then
/// the task's own.
#[allow(clippy::too_many_arguments)]
pub fn build_launch(
    cfg: &ClusterConfig,
    account_url: &str,
    job: &CloudJob,
    t: &CloudTask,
    pool_packages: &[wire::models::ApplicationPackageReference],
    pool: &str,
    node: &str,
    root_dir: &str,
    dedicated: bool,
    attempt: u64,
) -> TaskLaunch {
    let task_dir = format!("{}/{}", wire::workflow::job_dir(&job.id), t.id);
    let mut l = launch_for(
        &cfg.account,
        account_url,
        job,
        &t.id,
        &t.command_line,
        t.environment_settings.as_deref().unwrap_or_default(),
        Some(&t.user_identity),
        t.constraints.max_wall_clock_time,
        task_dir,
        pool,
        node,
        root_dir,
        dedicated,
        attempt,
    );
    l.env.extend(prep_env(job, root_dir));
    l.slots = t.required_slots.max(1) as u32;
    l.priority = job.priority;
    if t.authentication_token_settings.as_ref().and_then(|a| a.access.as_ref()).is_some_and(|v| !v.is_empty()) {
        l.env.insert("AZ_BATCH_AUTHENTICATION_TOKEN".into(), crate::tokens::issue(&cfg.token_key, &job.id, chrono::Utc::now().timestamp()));
    }
    let refs: Vec<_> = pool_packages.iter().chain(t.application_package_references.iter().flatten()).cloned().collect();
    if !refs.is_empty() {
        match crate::packages::resolve(&cfg.applications_dir, &refs) {
            Ok(packages) => {
                for p in &packages {
                    for name in &p.env_names {
                        l.env.insert(name.clone(), format!("{root_dir}/applications/{}", p.dir));
                    }
                }
                l.packages = packages;
            }
            Err(message) => l.package_error = Some(message),
        }
    }
    l.container = t.container_settings.as_ref().map(|c| crate::data::container_spec(c, job, &t.id));
    l.resource_files = crate::data::resource_specs(t.resource_files.as_deref().unwrap_or_default(), cfg.auto_storage.as_ref());
    l.output_files = crate::data::output_specs(t.output_files.as_deref().unwrap_or_default());
    l
}

/// What an agent needs to run one process of a job (a task, or the job's
/// preparation or release task) in `task_dir`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_for(
    account: &str,
    account_url: &str,
    job: &CloudJob,
    task_id: &str,
    command_line: &str,
    env_settings: &[wire::models::EnvironmentSetting],
    identity: Option<&wire::models::UserIdentity>,
    max_wall_clock: Option<wire::time::Duration>,
    task_dir: String,
    pool: &str,
    node: &str,
    root_dir: &str,
    dedicated: bool,
    attempt: u64,
) -> TaskLaunch {
    let mut env = node_env(account, account_url, pool, node, dedicated, root_dir, &task_dir);
    env.insert("AZ_BATCH_JOB_ID".to_string(), job.id.clone());
    env.insert("AZ_BATCH_TASK_ID".to_string(), task_id.to_string());
    for e in job.common_environment_settings.iter().flatten().chain(env_settings.iter()) {
        env.insert(e.name.clone(), e.value.clone().unwrap_or_default());
    }
    let elevated = identity
        .and_then(|u| u.auto_user.as_ref())
        .and_then(|a| a.elevation_level)
        .is_some_and(|l| l == wire::enums::ElevationLevel::Admin);
    TaskLaunch {
        attempt,
        job_id: job.id.clone(),
        task_id: task_id.to_string(),
        task_dir,
        command_line: command_line.to_string(),
        env,
        max_wall_clock_ms: max_wall_clock.filter(|d| !d.is_infinite()).map(|d| d.to_std().as_millis().min(u64::MAX as u128) as u64),
        elevated,
        user_name: identity.and_then(|u| u.username.clone()),
        is_start_task: false,
        ..Default::default()
    }
}

/// The variables every process on a node gets: account, pool, node and
/// the node's directories for a process running in `task_dir`.
pub(crate) fn node_env(
    account: &str,
    account_url: &str,
    pool: &str,
    node: &str,
    dedicated: bool,
    root: &str,
    task_dir: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("AZ_BATCH_ACCOUNT_NAME".to_string(), account.to_string());
    env.insert("AZ_BATCH_ACCOUNT_URL".to_string(), format!("{account_url}/"));
    env.insert("AZ_BATCH_POOL_ID".to_string(), pool.to_string());
    env.insert("AZ_BATCH_NODE_ID".to_string(), node.to_string());
    env.insert("AZ_BATCH_NODE_IS_DEDICATED".to_string(), dedicated.to_string());
    env.insert("AZ_BATCH_NODE_ROOT_DIR".to_string(), root.to_string());
    env.extend(node_dirs(root, task_dir));
    env
}

/// The per-node directory variables of a task.
pub(crate) fn node_dirs(root: &str, task_dir: &str) -> Vec<(String, String)> {
    vec![
        ("AZ_BATCH_NODE_SHARED_DIR".into(), format!("{root}/shared")),
        ("AZ_BATCH_NODE_STARTUP_DIR".into(), format!("{root}/startup")),
        ("AZ_BATCH_NODE_MOUNTS_DIR".into(), format!("{root}/fsmounts")),
        ("AZ_BATCH_TASK_DIR".into(), format!("{root}/{task_dir}")),
        ("AZ_BATCH_TASK_WORKING_DIR".into(), format!("{root}/{task_dir}/wd")),
    ]
}

/// `AZ_BATCH_JOB_PREP_DIR` and `AZ_BATCH_JOB_PREP_WORKING_DIR` for the tasks
/// of a job with a preparation task.
pub fn prep_env(job: &CloudJob, root_dir: &str) -> Vec<(String, String)> {
    if job.job_preparation_task.is_none() {
        return Vec::new();
    }
    let d = format!("{root_dir}/{}", prep_dir(job, false));
    vec![("AZ_BATCH_JOB_PREP_DIR".into(), d.clone()), ("AZ_BATCH_JOB_PREP_WORKING_DIR".into(), format!("{d}/wd"))]
}

/// The default ids the service gives these tasks.
pub(crate) const PREP_ID: &str = "jobpreparation";
pub(crate) const RELEASE_ID: &str = "jobrelease";

pub(crate) fn prep_dir(job: &CloudJob, release: bool) -> String {
    let id = if release {
        job.job_release_task.as_ref().and_then(|r| r.id.clone()).unwrap_or_else(|| RELEASE_ID.into())
    } else {
        job.job_preparation_task.as_ref().and_then(|p| p.id.clone()).unwrap_or_else(|| PREP_ID.into())
    };
    format!("{}/{id}", wire::workflow::job_dir(&job.id))
}
