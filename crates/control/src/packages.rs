//! Application packages. An operator registers a package by putting its
//! archive in the applications directory (`<data-dir>/applications`, or
//! `serve --applications-dir`): `{applicationId}/{version}.zip` (or
//! `.tar.gz`, `.tgz`, `.tar`), with an optional
//! `{applicationId}/application.toml` giving `display-name` and
//! `default-version`. The directory is read on each request, so packages
//! appear and disappear without a restart.
//!
//! `GET /applications` lists what is there. A task (or pool) that references
//! packages gets them installed on its node before it runs: the agent
//! fetches each archive from the server once (an agent-token endpoint),
//! unpacks it under the node's `applications/` directory and shares it
//! between tasks; the task sees `AZ_BATCH_APP_PACKAGE_*` for each.

use proto::PackageSpec;
use std::path::{Path, PathBuf};
use wire::models::ApplicationPackageReference;

const ARCHIVES: [&str; 4] = [".tar.gz", ".tgz", ".tar", ".zip"];

/// One registered application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub display_name: String,
    pub versions: Vec<String>,
    pub default_version: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Settings {
    display_name: Option<String>,
    default_version: Option<String>,
}

/// The archive of each version in an application's directory.
fn versions(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = ARCHIVES.iter().find_map(|ext| name.strip_suffix(ext))?;
            (!version.is_empty() && e.path().is_file()).then(|| (version.to_string(), e.path()))
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The applications registered in `root`, by id.
pub fn list(root: &Path) -> Vec<Application> {
    let mut apps: Vec<Application> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            let versions: Vec<String> = versions(&e.path()).into_iter().map(|v| v.0).collect();
            if versions.is_empty() {
                return None;
            }
            let settings: Settings =
                std::fs::read_to_string(e.path().join("application.toml")).ok().and_then(|t| toml::from_str(&t).ok()).unwrap_or_default();
            Some(Application {
                display_name: settings.display_name.unwrap_or_else(|| id.clone()),
                default_version: settings.default_version.filter(|v| versions.contains(v)),
                id,
                versions,
            })
        })
        .collect();
    apps.sort_by_key(|a| a.id.to_lowercase());
    apps
}

/// One application (ids compare without regard to case).
pub fn get(root: &Path, id: &str) -> Option<Application> {
    list(root).into_iter().find(|a| a.id.eq_ignore_ascii_case(id))
}

/// The archive of a version, if registered.
pub fn archive(root: &Path, id: &str, version: &str) -> Option<PathBuf> {
    let app = get(root, id)?;
    versions(&root.join(&app.id)).into_iter().find(|(v, _)| v == version).map(|(_, p)| p)
}

/// The part of an environment variable name for an id or version: letters
/// and digits kept, anything else `_`.
fn env_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// What the agent installs for a task's (and its pool's) package
/// references; Err names the first reference that cannot be satisfied.
pub fn resolve(root: &Path, refs: &[ApplicationPackageReference]) -> Result<Vec<PackageSpec>, String> {
    let mut out: Vec<PackageSpec> = Vec::new();
    for r in refs {
        let app = get(root, &r.application_id).ok_or_else(|| format!("The application '{}' is not registered.", r.application_id))?;
        let version = match &r.version {
            Some(v) => {
                if !app.versions.contains(v) {
                    return Err(format!("The application '{}' has no version '{v}'.", app.id));
                }
                v.clone()
            }
            None => app
                .default_version
                .clone()
                .ok_or_else(|| format!("The application '{}' has no default version; name a version in the package reference.", app.id))?,
        };
        // Linux nodes name the variable after the id and version with
        // anything but letters and digits as `_` (the service's docs show
        // both the id's case and lower case; both are set).
        let mut env_names = Vec::new();
        let base = format!("AZ_BATCH_APP_PACKAGE_{}", env_part(&app.id));
        let versioned = format!("{base}_{}", env_part(&version));
        env_names.push(versioned.clone());
        if versioned.to_lowercase() != versioned {
            env_names.push(format!("AZ_BATCH_APP_PACKAGE_{}", env_part(&format!("{}_{version}", app.id)).to_lowercase()));
        }
        if r.version.is_none() {
            env_names.push(base.clone());
            if base.to_lowercase() != base {
                env_names.push(format!("AZ_BATCH_APP_PACKAGE_{}", env_part(&app.id).to_lowercase()));
            }
        }
        let dir = format!("{}#{}", app.id.to_lowercase(), version);
        if let Some(existing) = out.iter_mut().find(|p| p.dir == dir) {
            existing.env_names.extend(env_names);
        } else {
            out.push(PackageSpec { application_id: app.id.clone(), version, dir, env_names });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(id: &str, version: Option<&str>) -> ApplicationPackageReference {
        ApplicationPackageReference { application_id: id.into(), version: version.map(Into::into) }
    }

    #[test]
    fn registry_and_resolution() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("My-Tool");
        std::fs::create_dir_all(&app).unwrap();
        for f in ["1.0.zip", "2.0.tar.gz", "notes.txt"] {
            std::fs::write(app.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(d.path().join("empty")).unwrap();
        let apps = list(d.path());
        assert_eq!(apps.len(), 1, "a directory without archives is no application");
        assert_eq!(apps[0].versions, ["1.0", "2.0"]);
        assert_eq!(apps[0].default_version, None);
        assert!(archive(d.path(), "my-tool", "2.0").unwrap().ends_with("2.0.tar.gz"));

        let p = resolve(d.path(), &[reference("my-tool", Some("1.0"))]).unwrap();
        assert_eq!(p[0].dir, "my-tool#1.0");
        assert_eq!(p[0].env_names, ["AZ_BATCH_APP_PACKAGE_My_Tool_1_0", "AZ_BATCH_APP_PACKAGE_my_tool_1_0"]);
        assert!(resolve(d.path(), &[reference("my-tool", None)]).unwrap_err().contains("no default version"));
        assert!(resolve(d.path(), &[reference("my-tool", Some("3"))]).unwrap_err().contains("no version"));
        assert!(resolve(d.path(), &[reference("nope", None)]).unwrap_err().contains("not registered"));

        std::fs::write(app.join("application.toml"), "display-name = \"My tool\"\ndefault-version = \"2.0\"\n").unwrap();
        let a = get(d.path(), "MY-TOOL").unwrap();
        assert_eq!((a.display_name.as_str(), a.default_version.as_deref()), ("My tool", Some("2.0")));
        let p = resolve(d.path(), &[reference("my-tool", None)]).unwrap();
        assert_eq!(p[0].version, "2.0");
        assert!(p[0].env_names.contains(&"AZ_BATCH_APP_PACKAGE_My_Tool".to_string()));
    }
}
