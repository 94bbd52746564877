//! A pool as the control plane reads it: the few properties that decide how
//! its nodes join and run (slots, fill type, start task, accounts,
//! containers, packages), typed, from the document the store keeps. The API
//! validated the document when it was written; a property that does not
//! read as its type here is taken as absent (its default), never a panic.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use wire::models::{ApplicationPackageReference, EnvironmentSetting, ResourceFile};

/// The pool's properties the control plane uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSpec {
    pub id: String,
    /// Being deleted: no node joins it any more.
    pub deleting: bool,
    pub task_slots_per_node: u32,
    /// `taskSchedulingPolicy.nodeFillType` is `pack` (else spread).
    pub pack: bool,
    /// `taskSchedulingPolicy.jobDefaultOrder` is `creationtime` (else `none`).
    pub jobs_by_creation: bool,
    pub start_task: Option<StartTaskSpec>,
    pub user_accounts: Vec<UserAccountSpec>,
    pub application_packages: Vec<ApplicationPackageReference>,
    /// `virtualMachineConfiguration.containerConfiguration`.
    pub container_images: Vec<String>,
    pub container_registries: Vec<RegistrySpec>,
    /// `targetDedicatedNodes` and `targetLowPriorityNodes`: a node joining
    /// is low-priority while the pool has fewer than it wants of those and
    /// enough dedicated ones (see `Cluster::join`).
    pub target_dedicated: u32,
    pub target_low_priority: u32,
    /// `certificateReferences` (api-versions that have them).
    pub certificate_refs: Vec<wire::models::CertificateReference>,
    /// The referenced certificates with their secret parts: read only for
    /// a joining node (`Cluster::pool_to_join`), empty otherwise.
    pub certificates: Vec<proto::NodeCertificate>,
}

/// The pool's `startTask`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StartTaskSpec {
    pub command_line: String,
    pub environment_settings: Vec<EnvironmentSetting>,
    pub resource_files: Vec<ResourceFile>,
    pub user_identity: Option<IdentitySpec>,
    #[serde(default = "yes")]
    pub wait_for_success: bool,
    pub max_task_retry_count: i32,
}

fn yes() -> bool {
    true
}

/// A task's `userIdentity`, with the elevation level as the text it is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentitySpec {
    pub username: Option<String>,
    pub auto_user: Option<AutoUserSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AutoUserSpec {
    pub elevation_level: Option<String>,
}

impl IdentitySpec {
    /// Runs as the elevated auto-user.
    pub fn elevated(&self) -> bool {
        self.auto_user.as_ref().and_then(|a| a.elevation_level.as_deref()).is_some_and(|l| l.eq_ignore_ascii_case("admin"))
    }
}

/// One of the pool's `userAccounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAccountSpec {
    pub name: String,
    pub admin: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A container registry the nodes log in to.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySpec {
    pub server: String,
    pub username: String,
    pub password: String,
}

/// `doc[key]` read as `T`, or None.
fn typed<T: DeserializeOwned>(doc: &Map<String, Value>, key: &str) -> Option<T> {
    doc.get(key).filter(|v| !v.is_null()).and_then(|v| T::deserialize(v).ok())
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl PoolSpec {
    /// Reads a stored pool document.
    pub fn from_doc(doc: &Map<String, Value>) -> PoolSpec {
        let policy = doc.get("taskSchedulingPolicy");
        let containers = doc.get("virtualMachineConfiguration").and_then(|v| v.get("containerConfiguration"));
        let list = |v: Option<&Value>, key: &str| -> Vec<Value> {
            v.and_then(|v| v.get(key)).and_then(Value::as_array).cloned().unwrap_or_default()
        };
        PoolSpec {
            id: doc.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            deleting: doc.get("state").and_then(Value::as_str) == Some("deleting"),
            task_slots_per_node: doc.get("taskSlotsPerNode").and_then(Value::as_u64).unwrap_or(1).clamp(1, u32::MAX as u64) as u32,
            pack: policy.and_then(|p| str_of(p, "nodeFillType")).is_some_and(|s| s.eq_ignore_ascii_case("pack")),
            jobs_by_creation: policy.and_then(|p| str_of(p, "jobDefaultOrder")).is_some_and(|s| s.eq_ignore_ascii_case("creationtime")),
            start_task: doc.get("startTask").filter(|v| v.is_object()).and_then(|v| StartTaskSpec::deserialize(v).ok()),
            user_accounts: doc
                .get("userAccounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|u| {
                    let linux = u.get("linuxUserConfiguration");
                    let id = |k: &str| linux.and_then(|l| l.get(k)).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
                    Some(UserAccountSpec {
                        name: str_of(u, "name")?.to_string(),
                        admin: str_of(u, "elevationLevel").is_some_and(|l| l.eq_ignore_ascii_case("admin")),
                        uid: id("uid"),
                        gid: id("gid"),
                    })
                })
                .collect(),
            application_packages: typed(doc, "applicationPackageReferences").unwrap_or_default(),
            container_images: list(containers, "containerImageNames").iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
            container_registries: list(containers, "containerRegistries")
                .iter()
                .filter_map(|r| {
                    Some(RegistrySpec {
                        server: str_of(r, "registryServer").unwrap_or_default().to_string(),
                        username: str_of(r, "username")?.to_string(),
                        password: str_of(r, "password").unwrap_or_default().to_string(),
                    })
                })
                .collect(),
            target_dedicated: doc.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0).min(u32::MAX as u64) as u32,
            target_low_priority: doc.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0).min(u32::MAX as u64) as u32,
            certificate_refs: typed(doc, "certificateReferences").unwrap_or_default(),
            certificates: Vec::new(),
        }
    }
}

/// Creates the pool `id` from a `PoolSpecification` (an auto pool's, see
/// `autopool`), as a pool add with that body and id would: the API's, given
/// to the control plane at start.
pub type PoolMaker =
    std::sync::Arc<dyn Fn(String, serde_json::Value) -> futures_util::future::BoxFuture<'static, Result<(), wire::Error>> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> PoolSpec {
        PoolSpec::from_doc(v.as_object().expect("an object"))
    }

    #[test]
    fn defaults_of_a_bare_pool() {
        let p = spec(json!({"id": "p"}));
        assert_eq!((p.id.as_str(), p.task_slots_per_node, p.pack, p.deleting), ("p", 1, false, false));
        assert!(!p.jobs_by_creation, "jobDefaultOrder none by default");
        assert!(p.start_task.is_none() && p.user_accounts.is_empty() && p.container_images.is_empty());
    }

    #[test]
    fn reads_what_nodes_need() {
        let p = spec(json!({
            "id": "p", "state": "deleting", "taskSlotsPerNode": 4,
            "taskSchedulingPolicy": {"nodeFillType": "Pack", "jobDefaultOrder": "CreationTime"},
            "startTask": {"commandLine": "setup", "maxTaskRetryCount": 2, "userIdentity": {"autoUser": {"elevationLevel": "admin"}},
                          "environmentSettings": [{"name": "A", "value": "1"}]},
            "userAccounts": [{"name": "u", "password": "x", "elevationLevel": "Admin", "linuxUserConfiguration": {"uid": 1234, "gid": 99}},
                             {"password": "no name"}],
            "applicationPackageReferences": [{"applicationId": "app", "version": "1"}],
            "virtualMachineConfiguration": {"containerConfiguration": {"containerImageNames": ["busybox"],
                "containerRegistries": [{"registryServer": "r", "username": "me", "password": "pw"}, {"registryServer": "anon"}]}}
        }));
        assert!(p.deleting && p.pack && p.jobs_by_creation);
        assert_eq!(p.task_slots_per_node, 4);
        let st = p.start_task.expect("a start task");
        assert_eq!((st.command_line.as_str(), st.max_task_retry_count, st.wait_for_success), ("setup", 2, true));
        assert!(st.user_identity.expect("identity").elevated());
        assert_eq!(st.environment_settings[0].name, "A");
        assert_eq!(p.user_accounts, vec![UserAccountSpec { name: "u".into(), admin: true, uid: Some(1234), gid: Some(99) }]);
        assert_eq!(p.application_packages[0].application_id, "app");
        assert_eq!(p.container_images, vec!["busybox".to_string()]);
        assert_eq!(p.container_registries.len(), 1, "a registry without a user name needs no login");
        assert!(p.certificate_refs.is_empty() && p.certificates.is_empty());
    }

    #[test]
    fn reads_certificate_references() {
        let p = spec(json!({"id": "p", "certificateReferences": [
            {"thumbprint": "AB", "thumbprintAlgorithm": "sha1", "visibility": ["task"]},
            {"thumbprint": "cd", "thumbprintAlgorithm": "sha1", "storeLocation": "LocalMachine"}]}));
        assert_eq!(p.certificate_refs.len(), 2);
        assert_eq!(p.certificate_refs[0].visibility, Some(vec![wire::enums::CertificateVisibility::Task]));
        assert_eq!(p.certificate_refs[1].thumbprint, "cd");
    }

    #[test]
    fn a_start_task_may_not_wait() {
        let p = spec(json!({"id": "p", "startTask": {"commandLine": "x", "waitForSuccess": false}}));
        assert!(!p.start_task.expect("start task").wait_for_success);
    }
}
