//! `openbatch serve` settings: flags, environment variables and an optional
//! TOML file, merged in that order of precedence and validated into a
//! [`ServeConfig`] that cannot be invalid.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The development account used when no key is given on a loopback address
/// (like Azurite's `devstoreaccount1`). It is public: never use it for
/// anything reachable from another machine — openbatch refuses to.
pub const DEV_ACCOUNT: &str = "devbatch";
/// Base64 of the 64 ASCII bytes `openbatch-development-key-do-not-use-in-production-0123456789abc`.
pub const DEV_KEY: &str = "b3BlbmJhdGNoLWRldmVsb3BtZW50LWtleS1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24tMDEyMzQ1Njc4OWFiYw==";

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8520";
pub const DEFAULT_DATA_DIR: &str = "openbatch-data";

/// Raw settings as any source gives them; every field optional.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServe {
    /// Address to listen on, HOST:PORT [default: 127.0.0.1:8520]
    #[arg(long, env = "OPENBATCH_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the database and node data [default: ./openbatch-data]
    #[arg(long, env = "OPENBATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep state in this PostgreSQL database instead of the embedded SQLite store:
    /// postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (the database must exist; its tables
    /// are created). The data directory still holds node roots, keys and packages.
    #[arg(long, env = "OPENBATCH_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Run as one of several replicas on the --database: one leader (through a lease
    /// in the database) runs the control plane, the others forward API requests to it
    /// and take over when it goes (see README, "Replicas").
    #[arg(long, env = "OPENBATCH_REPLICA", num_args = 0..=1, default_missing_value = "true")]
    pub replica: Option<bool>,
    /// The URL the other replicas forward to and agents are pointed to, for this replica
    /// [default: http:// plus --listen, which must then not be 0.0.0.0 or ::].
    #[arg(long, env = "OPENBATCH_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// How long the leader's lease lasts without renewal, in milliseconds
    /// [default: 3000]; 500 to 60000. A dead leader is replaced after about this long.
    #[arg(long, env = "OPENBATCH_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    /// Batch account name clients sign with [default: devbatch]
    #[arg(long, env = "OPENBATCH_ACCOUNT")]
    pub account: Option<String>,
    /// Primary account key (base64). Prefer --key-file or the environment: a key on the
    /// command line is visible to local users until it is wiped after start. Without
    /// any key, the development key is used, on loopback only.
    #[arg(long, env = "OPENBATCH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A file holding the primary account key (base64); mode 0600.
    #[arg(long, env = "OPENBATCH_KEY_FILE", conflicts_with = "key")]
    pub key_file: Option<PathBuf>,
    /// Secondary account key (base64), for key rotation. Prefer --key2-file.
    #[arg(long, env = "OPENBATCH_KEY2", hide_env_values = true)]
    pub key2: Option<String>,
    /// A file holding the secondary account key (base64); mode 0600.
    #[arg(long, env = "OPENBATCH_KEY2_FILE", conflicts_with = "key2")]
    pub key2_file: Option<PathBuf>,
    /// Base URL clients reach the server at (used in `url` and `odata.nextLink`);
    /// defaults to http:// plus the request's Host header.
    #[arg(long, env = "OPENBATCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Milliseconds a job shows a transitional state (deleting, terminating, ...) before it completes.
    #[arg(long, env = "OPENBATCH_TRANSITION_DELAY_MS")]
    pub transition_delay_ms: Option<u64>,
    /// Enforce the service's limits where openbatch is more generous by default
    /// (see COMPATIBILITY.md, "Limits").
    #[arg(long, env = "OPENBATCH_STRICT_LIMITS", num_args = 0..=1, default_missing_value = "true")]
    pub strict_limits: Option<bool>,
    /// Seconds between the samples autoscale formulas read ($PendingTasks,
    /// $CPUPercent, ...) [default: 30, the service's period]; 1 to 3600.
    #[arg(long, env = "OPENBATCH_AUTOSCALE_SAMPLE_INTERVAL")]
    pub autoscale_sample_interval: Option<u64>,
    /// Directories that `file://` resource-file sources and output-file destinations of
    /// tasks on local nodes may use, separated by ':' (default: any path).
    #[arg(long, env = "OPENBATCH_FILE_ROOTS")]
    pub file_roots: Option<String>,
    /// Where application packages are registered: `{id}/{version}.zip|.tar.gz`
    /// [default: <data-dir>/applications]
    #[arg(long, env = "OPENBATCH_APPLICATIONS_DIR")]
    pub applications_dir: Option<PathBuf>,
    /// The account's linked storage account, as an Azure Storage connection string:
    /// resource files with `autoStorageContainerName` are read from its containers.
    #[arg(long, env = "OPENBATCH_AUTO_STORAGE", hide_env_values = true)]
    pub auto_storage: Option<String>,
    // Connection settings: TLS and the connection layer's limits.
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, env = "OPENBATCH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "OPENBATCH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address other than loopback (e.g. behind a
    /// TLS-terminating proxy); without TLS, only loopback is served.
    #[arg(long, env = "OPENBATCH_INSECURE_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_http: Option<bool>,
    /// Most connections open at once [default: 8192]; beyond it, the connection idle longest is closed.
    #[arg(long, env = "OPENBATCH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a request head may take from its first byte [default: 20].
    #[arg(long, env = "OPENBATCH_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body may take after its head [default: 60].
    #[arg(long, env = "OPENBATCH_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Seconds a connection may stay open without a request [default: 60].
    #[arg(long, env = "OPENBATCH_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    // Prometheus metrics at /metrics, on the API's port by default, readable without the account key.
    /// Serve /metrics on this address (HOST:PORT, plain HTTP) instead of the API's port.
    #[arg(long, env = "OPENBATCH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Require `Authorization: Bearer TOKEN` to read /metrics. Prefer the environment or
    /// the config file: a token on the command line is visible to local users until it is wiped.
    #[arg(long, env = "OPENBATCH_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Do not serve /metrics at all.
    #[arg(long, env = "OPENBATCH_NO_METRICS", num_args = 0..=1, default_missing_value = "true")]
    pub no_metrics: Option<bool>,
    /// Node providers (`[providers.<name>]` tables; config file only): see `providers`.
    #[arg(skip)]
    pub providers: Option<toml::Table>,
}

/// The certificate chain and key files of `--tls-cert`/`--tls-key`.
type TlsFiles = Option<(PathBuf, PathBuf)>;

impl RawServe {
    /// TLS files and limits, checked; plain HTTP off loopback needs --insecure-http.
    fn net(&self, listen: SocketAddr) -> Result<(TlsFiles, bool, api::server::Limits), String> {
        let tls = match (self.tls_cert.clone(), self.tls_key.clone()) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let insecure = self.insecure_http.unwrap_or(false);
        if tls.is_none() && !insecure && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve plain HTTP on {listen}: give --tls-cert and --tls-key, or --insecure-http \
                 if a TLS-terminating proxy or a private network protects it"
            ));
        }
        let mut limits = api::server::Limits::default();
        let secs = |name: &str, v: Option<u64>, default: Duration| match v {
            None => Ok(default),
            Some(0) => Err(format!("--{name} must be at least 1")),
            Some(s) => Ok(Duration::from_secs(s)),
        };
        limits.header_timeout = secs("header-timeout-secs", self.header_timeout_secs, limits.header_timeout)?;
        limits.body_timeout = secs("body-timeout-secs", self.body_timeout_secs, limits.body_timeout)?;
        limits.idle_timeout = secs("idle-timeout-secs", self.idle_timeout_secs, limits.idle_timeout)?;
        match self.max_connections {
            Some(n) if n < 1 => return Err("--max-connections must be at least 1".into()),
            Some(n) => limits.max_connections = n,
            None => {}
        }
        let insecure = insecure && tls.is_none() && !listen.ip().is_loopback();
        Ok((tls, insecure, limits))
    }
}

impl RawServe {
    /// Fills unset fields from `other`.
    pub fn or(self, other: RawServe) -> RawServe {
        RawServe {
            listen: self.listen.or(other.listen),
            data_dir: self.data_dir.or(other.data_dir),
            database: self.database.or(other.database),
            replica: self.replica.or(other.replica),
            advertise_url: self.advertise_url.or(other.advertise_url),
            lease_ttl_ms: self.lease_ttl_ms.or(other.lease_ttl_ms),
            account: self.account.or(other.account),
            // A key and its file are one setting: the source that gives
            // either gives both.
            key: if self.key.is_some() || self.key_file.is_some() { self.key.clone() } else { other.key.clone() },
            key_file: if self.key.is_some() || self.key_file.is_some() { self.key_file.clone() } else { other.key_file.clone() },
            key2: if self.key2.is_some() || self.key2_file.is_some() { self.key2.clone() } else { other.key2.clone() },
            key2_file: if self.key2.is_some() || self.key2_file.is_some() { self.key2_file } else { other.key2_file },
            public_url: self.public_url.or(other.public_url),
            transition_delay_ms: self.transition_delay_ms.or(other.transition_delay_ms),
            strict_limits: self.strict_limits.or(other.strict_limits),
            autoscale_sample_interval: self.autoscale_sample_interval.or(other.autoscale_sample_interval),
            file_roots: self.file_roots.or(other.file_roots),
            applications_dir: self.applications_dir.or(other.applications_dir),
            auto_storage: self.auto_storage.or(other.auto_storage),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            insecure_http: self.insecure_http.or(other.insecure_http),
            max_connections: self.max_connections.or(other.max_connections),
            header_timeout_secs: self.header_timeout_secs.or(other.header_timeout_secs),
            body_timeout_secs: self.body_timeout_secs.or(other.body_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(other.idle_timeout_secs),
            metrics_listen: self.metrics_listen.or(other.metrics_listen),
            metrics_token: self.metrics_token.or(other.metrics_token),
            no_metrics: self.no_metrics.or(other.no_metrics),
            providers: self.providers.or(other.providers),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: the store lives there, not in the data directory.
    pub database: Option<String>,
    /// Replicated: this server's advertised URL and the lease's time to live.
    pub replica: Option<(String, Duration)>,
    pub account: String,
    pub keys: Vec<Vec<u8>>,
    pub using_dev_key: bool,
    pub public_url: Option<String>,
    pub transition_delay: Duration,
    pub strict_limits: bool,
    /// The autoscale sample period (`--autoscale-sample-interval`).
    pub autoscale_sample_interval: Duration,
    pub file_roots: Option<String>,
    pub applications_dir: Option<PathBuf>,
    pub auto_storage: Option<control::data::AutoStorage>,
    /// PEM certificate chain and key files: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP on an address other than loopback (--insecure-http).
    pub insecure_http: bool,
    pub limits: api::server::Limits,
    /// How /metrics is served, and its own address (--metrics-listen).
    pub metrics: api::metrics::MetricsConfig,
    pub metrics_listen: Option<SocketAddr>,
    /// The node providers the file declares (the local one is always there).
    pub providers: Vec<control::provider::registry::ProviderDecl>,
}

/// A key given as text or in a file (never both).
fn key_text(flag: &str, text: Option<String>, file: Option<PathBuf>) -> Result<Option<(String, String)>, String> {
    match (text, file) {
        (Some(_), Some(_)) => Err(format!("give either --{flag} or --{flag}-file, not both")),
        (Some(t), None) => Ok(Some((format!("--{flag}"), t))),
        (None, Some(path)) => {
            let name = format!("--{flag}-file");
            let t = crate::secrets::read_file(&name, &path)?;
            Ok(Some((format!("{name} {}", path.display()), t)))
        }
        (None, None) => Ok(None),
    }
}

fn decode_key(name: &str, v: &str) -> Result<Vec<u8>, String> {
    let k = STANDARD.decode(v.trim()).map_err(|e| format!("{name} is not valid base64: {e}"))?;
    if k.is_empty() {
        return Err(format!("{name} is empty"));
    }
    Ok(k)
}

impl ServeConfig {
    pub fn from_raw(raw: RawServe) -> Result<ServeConfig, String> {
        let listen_text = raw.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text
            .to_socket_addrs()
            .map_err(|e| format!("--listen {listen_text}: {e}"))?
            .next()
            .ok_or_else(|| format!("--listen {listen_text}: the address does not resolve"))?;
        let (tls, insecure_http, limits) = raw.net(listen)?;
        let account = raw.account.unwrap_or_else(|| DEV_ACCOUNT.to_string());
        if account.is_empty() || account.len() > 64 || !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("--account {account:?}: an account name is 1 to 64 letters and digits"));
        }
        let key = key_text("key", raw.key, raw.key_file)?;
        let key2 = key_text("key2", raw.key2, raw.key2_file)?;
        let (keys, using_dev_key) = match key {
            Some((name, k)) => {
                let mut keys = vec![decode_key(&name, &k)?];
                if let Some((name2, k2)) = key2 {
                    keys.push(decode_key(&name2, &k2)?);
                }
                (keys, false)
            }
            None => {
                if key2.is_some() {
                    return Err("--key2 needs --key".into());
                }
                if !listen.ip().is_loopback() {
                    return Err(format!(
                        "refusing to listen on {listen} with the public development key: give --key (and --key2) \
                         or listen on a loopback address such as 127.0.0.1"
                    ));
                }
                (vec![decode_key("the development key", DEV_KEY)?], true)
            }
        };
        let public_url = match raw.public_url {
            Some(u) => {
                let u = u.trim_end_matches('/').to_string();
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(format!("--public-url {u}: must start with http:// or https://"));
                }
                Some(u)
            }
            None => None,
        };
        let autoscale_sample_interval = match raw.autoscale_sample_interval {
            None => Duration::from_secs(30),
            Some(s @ 1..=3600) => Duration::from_secs(s),
            Some(s) => return Err(format!("--autoscale-sample-interval {s}: must be from 1 to 3600 seconds")),
        };
        let database = match raw.database {
            Some(u) if u.starts_with("postgresql://") || u.starts_with("postgres://") => Some(u),
            Some(u) => {
                return Err(format!(
                    "--database {}: must be a postgresql://USER[:PASSWORD]@HOST[:PORT]/DB URL",
                    store::postgres::redact(&u)
                ))
            }
            None => None,
        };
        let replica = match (raw.replica.unwrap_or(false), raw.advertise_url, raw.lease_ttl_ms) {
            (false, None, None) => None,
            (false, _, _) => return Err("--advertise-url and --lease-ttl-ms are settings of --replica".into()),
            (true, url, ttl) => {
                if database.is_none() {
                    return Err("--replica needs --database: replicas share one PostgreSQL database".into());
                }
                if tls.is_some() {
                    return Err("--replica does not support --tls-cert yet: replicas forward to each other over plain HTTP".into());
                }
                let url = match url {
                    Some(u) if u.starts_with("http://") => u.trim_end_matches('/').to_string(),
                    Some(u) => return Err(format!("--advertise-url {u}: must be an http:// URL")),
                    None if listen.ip().is_unspecified() => {
                        return Err(format!("--replica on {listen}: give --advertise-url, the URL the other replicas reach this one at"))
                    }
                    None => format!("http://{listen}"),
                };
                let ttl = match ttl.unwrap_or(3000) {
                    t @ 500..=60_000 => Duration::from_millis(t),
                    t => return Err(format!("--lease-ttl-ms {t}: must be from 500 to 60000")),
                };
                Some((url, ttl))
            }
        };
        let no_metrics = raw.no_metrics.unwrap_or(false);
        if no_metrics && (raw.metrics_listen.is_some() || raw.metrics_token.is_some()) {
            return Err("--no-metrics turns /metrics off: leave out --metrics-listen and --metrics-token".into());
        }
        let metrics_listen = match &raw.metrics_listen {
            Some(text) => Some(
                text.to_socket_addrs()
                    .map_err(|e| format!("--metrics-listen {text}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--metrics-listen {text}: the address does not resolve"))?,
            ),
            None => None,
        };
        if raw.metrics_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err("--metrics-token must not be empty".into());
        }
        let metrics = api::metrics::MetricsConfig { off: no_metrics, separate: metrics_listen.is_some(), token: raw.metrics_token.clone() };
        let providers = match &raw.providers {
            Some(t) => parse_providers(t)?,
            None => Vec::new(),
        };
        Ok(ServeConfig {
            providers,
            autoscale_sample_interval,
            database,
            replica,
            metrics,
            metrics_listen,
            tls,
            insecure_http,
            limits,
            listen,
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            account,
            keys,
            using_dev_key,
            public_url,
            transition_delay: Duration::from_millis(raw.transition_delay_ms.unwrap_or(300).min(60_000)),
            strict_limits: raw.strict_limits.unwrap_or(false),
            file_roots: raw.file_roots,
            applications_dir: raw.applications_dir,
            auto_storage: raw
                .auto_storage
                .map(|c| control::data::AutoStorage::parse(&c).map_err(|e| format!("--auto-storage: {e}")))
                .transpose()?,
        })
    }
}

/// The `[providers.<name>]` tables: `kind` (`local`, `docker` or `slurm`),
/// `default` (sizes that name no provider go to it), `max-nodes`,
/// `description`, and the kind's own settings (`providers::docker::DockerSpec`,
/// `providers::slurm::SlurmSpec`; unknown ones are refused).
pub fn parse_providers(table: &toml::Table) -> Result<Vec<control::provider::registry::ProviderDecl>, String> {
    use control::provider::registry::{BuildProvider, ProviderDecl};
    use std::sync::Arc;
    let mut decls = Vec::new();
    for (name, value) in table {
        let at = format!("[providers.{name}]");
        let mut t = match value {
            toml::Value::Table(t) => t.clone(),
            _ => return Err(format!("{at}: must be a table (kind = \"docker\", ...)")),
        };
        let kind = match t.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(_) => return Err(format!("{at}: kind must be a string: \"local\", \"docker\" or \"slurm\"")),
            None => return Err(format!("{at}: kind is missing: \"local\", \"docker\" or \"slurm\"")),
        };
        let default = match t.remove("default") {
            None => false,
            Some(toml::Value::Boolean(b)) => b,
            Some(_) => return Err(format!("{at}: default must be true or false")),
        };
        let max_nodes = match t.remove("max-nodes") {
            None => None,
            Some(toml::Value::Integer(n)) if n >= 1 => Some(n as usize),
            Some(_) => return Err(format!("{at}: max-nodes must be a whole number of at least 1")),
        };
        let description = match t.remove("description") {
            None => None,
            Some(toml::Value::String(d)) => Some(d),
            Some(_) => return Err(format!("{at}: description must be a string")),
        };
        let rest = toml::Value::Table(t);
        let (describe, build): (String, Option<BuildProvider>) = match kind.as_str() {
            "local" => {
                if !rest.as_table().is_some_and(|t| t.is_empty()) {
                    let keys: Vec<&String> = rest.as_table().map(|t| t.keys().collect()).unwrap_or_default();
                    return Err(format!(
                        "{at}: a local provider takes no settings besides kind, default, max-nodes and description (found {keys:?})"
                    ));
                }
                ("agent processes on the server's machine".into(), None)
            }
            "docker" => {
                let spec: providers::docker::DockerSpec = rest.try_into().map_err(|e| format!("{at}: {e}"))?;
                spec.check().map_err(|e| format!("{at}: {e}"))?;
                let n = name.clone();
                (
                    spec.describe(),
                    Some(Arc::new(move |c: &control::ClusterConfig| -> Arc<dyn control::provider::NodeProvider> {
                        Arc::new(providers::docker::DockerProvider::new(&n, spec.clone(), c))
                    })),
                )
            }
            "slurm" => {
                let spec: providers::slurm::SlurmSpec = rest.try_into().map_err(|e| format!("{at}: {e}"))?;
                spec.check().map_err(|e| format!("{at}: {e}"))?;
                let n = name.clone();
                (
                    spec.describe(),
                    Some(Arc::new(move |c: &control::ClusterConfig| -> Arc<dyn control::provider::NodeProvider> {
                        Arc::new(providers::slurm::SlurmProvider::new(&n, spec.clone(), c))
                    })),
                )
            }
            other => return Err(format!("{at}: kind = {other:?} is not a provider kind: \"local\", \"docker\" or \"slurm\"")),
        };
        decls.push(ProviderDecl { name: name.clone(), kind, default, max_nodes, description: description.unwrap_or(describe), build });
    }
    control::provider::registry::check(&decls)?;
    Ok(decls)
}

/// Reads a TOML config file (kebab-case keys, same names as the flags).
pub fn read_file(path: &std::path::Path) -> Result<RawServe, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_key_only_on_loopback() {
        let c = ServeConfig::from_raw(RawServe::default()).unwrap();
        assert!(c.using_dev_key);
        assert_eq!(c.account, DEV_ACCOUNT);
        assert_eq!(c.keys[0].len(), 64);
        let e = ServeConfig::from_raw(RawServe { listen: Some("0.0.0.0:1".into()), ..Default::default() }).unwrap_err();
        assert!(e.contains("refusing"), "{e}");
        let c = ServeConfig::from_raw(RawServe {
            listen: Some("0.0.0.0:1".into()),
            key: Some("a2V5".into()),
            key2: Some("a2V5Mg==".into()),
            insecure_http: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.keys, vec![b"key".to_vec(), b"key2".to_vec()]);
    }

    #[test]
    fn plain_http_only_on_loopback_unless_asked() {
        let keyed = |listen: &str| RawServe { listen: Some(listen.into()), key: Some("a2V5".into()), ..Default::default() };
        let e = ServeConfig::from_raw(keyed("0.0.0.0:1")).unwrap_err();
        assert!(e.contains("plain HTTP") && e.contains("--insecure-http"), "{e}");
        let c = ServeConfig::from_raw(RawServe { insecure_http: Some(true), ..keyed("0.0.0.0:1") }).unwrap();
        assert!(c.insecure_http && c.tls.is_none());
        let c = ServeConfig::from_raw(RawServe { tls_cert: Some("c.pem".into()), tls_key: Some("k.pem".into()), ..keyed("0.0.0.0:1") })
            .unwrap();
        assert!(!c.insecure_http);
        assert_eq!(c.tls, Some((PathBuf::from("c.pem"), PathBuf::from("k.pem"))));
        let c = ServeConfig::from_raw(keyed("127.0.0.1:1")).unwrap();
        assert!(!c.insecure_http && c.tls.is_none());
        let e = ServeConfig::from_raw(RawServe { tls_cert: Some("c.pem".into()), ..keyed("127.0.0.1:1") }).unwrap_err();
        assert!(e.contains("together"), "{e}");
    }

    #[test]
    fn replica_settings() {
        let db = Some("postgresql://u@h/d".to_string());
        let c = ServeConfig::from_raw(RawServe { replica: Some(true), database: db.clone(), ..Default::default() }).unwrap();
        assert_eq!(c.replica, Some(("http://127.0.0.1:8520".to_string(), Duration::from_millis(3000))));
        let c = ServeConfig::from_raw(RawServe {
            replica: Some(true),
            database: db.clone(),
            advertise_url: Some("http://10.0.0.1:8520/".into()),
            lease_ttl_ms: Some(1500),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.replica, Some(("http://10.0.0.1:8520".to_string(), Duration::from_millis(1500))));
        assert!(ServeConfig::from_raw(RawServe::default()).unwrap().replica.is_none());
        for (raw, says) in [
            (RawServe { replica: Some(true), ..Default::default() }, "needs --database"),
            (RawServe { advertise_url: Some("http://x".into()), ..Default::default() }, "settings of --replica"),
            (RawServe { replica: Some(true), database: db.clone(), lease_ttl_ms: Some(100), ..Default::default() }, "500 to 60000"),
            (
                RawServe { replica: Some(true), database: db.clone(), advertise_url: Some("https://x".into()), ..Default::default() },
                "http:// URL",
            ),
            (
                RawServe {
                    replica: Some(true),
                    database: db.clone(),
                    listen: Some("0.0.0.0:1".into()),
                    key: Some("a2V5".into()),
                    insecure_http: Some(true),
                    ..Default::default()
                },
                "--advertise-url",
            ),
        ] {
            let e = ServeConfig::from_raw(raw).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn connection_limits() {
        let c = ServeConfig::from_raw(RawServe::default()).unwrap();
        assert_eq!(c.limits.max_connections, api::server::Limits::default().max_connections);
        let c = ServeConfig::from_raw(RawServe {
            max_connections: Some(10),
            header_timeout_secs: Some(3),
            body_timeout_secs: Some(4),
            idle_timeout_secs: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.limits.max_connections, 10);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(4));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(5));
        assert!(ServeConfig::from_raw(RawServe { max_connections: Some(0), ..Default::default() }).is_err());
        assert!(ServeConfig::from_raw(RawServe { idle_timeout_secs: Some(0), ..Default::default() }).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for raw in [
            RawServe { listen: Some("nonsense".into()), ..Default::default() },
            RawServe { key: Some("***".into()), ..Default::default() },
            RawServe { account: Some("a b".into()), ..Default::default() },
            RawServe { public_url: Some("ftp://x".into()), ..Default::default() },
            RawServe { key2: Some("a2V5".into()), ..Default::default() },
        ] {
            assert!(ServeConfig::from_raw(raw).is_err());
        }
    }

    #[test]
    fn keys_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
        std::fs::write(&k1, "a2V5\n").unwrap();
        std::fs::write(&k2, "a2V5Mg==").unwrap();
        let c = ServeConfig::from_raw(RawServe {
            listen: Some("0.0.0.0:1".into()),
            key_file: Some(k1.clone()),
            key2_file: Some(k2.clone()),
            insecure_http: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.keys, vec![b"key".to_vec(), b"key2".to_vec()]);
        assert!(!c.using_dev_key);
        // A key and a key file together are ambiguous.
        let e = ServeConfig::from_raw(RawServe { key: Some("a2V5".into()), key_file: Some(k1.clone()), ..Default::default() }).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        // A missing or bad file is an error, not the development key.
        assert!(ServeConfig::from_raw(RawServe { key_file: Some(dir.path().join("nope")), ..Default::default() }).is_err());
        std::fs::write(&k1, "***").unwrap();
        assert!(ServeConfig::from_raw(RawServe { key_file: Some(k1.clone()), ..Default::default() }).is_err());
        // The TOML file names them key-file and key2-file; a key from a
        // higher source replaces a key file from a lower one.
        let toml = dir.path().join("c.toml");
        std::fs::write(&toml, format!("key-file = {:?}\nkey2-file = {:?}\n", k2.display().to_string(), k2.display().to_string())).unwrap();
        let file = read_file(&toml).unwrap();
        assert_eq!(file.key_file.as_deref(), Some(k2.as_path()));
        let merged = RawServe { key: Some("a2V5".into()), ..Default::default() }.or(file);
        assert_eq!((merged.key.as_deref(), merged.key_file), (Some("a2V5"), None));
        assert_eq!(merged.key2_file.as_deref(), Some(k2.as_path()));
    }

    #[test]
    fn file_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:9\"\naccount = \"fromfile\"\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"\n").unwrap();
        let file = read_file(&p).unwrap();
        let flags = RawServe { account: Some("fromflag".into()), ..Default::default() };
        let c = ServeConfig::from_raw(flags.or(file)).unwrap();
        assert_eq!(c.account, "fromflag");
        assert_eq!(c.listen.port(), 9);
        assert_eq!(c.tls, Some((PathBuf::from("c.pem"), PathBuf::from("k.pem"))));
        std::fs::write(&p, "bogus = 1\n").unwrap();
        assert!(read_file(&p).is_err());
    }

    fn providers_of(text: &str) -> Result<Vec<control::provider::registry::ProviderDecl>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        ServeConfig::from_raw(read_file(&p)?).map(|c| c.providers)
    }

    #[test]
    fn provider_tables() {
        let decls = providers_of(
            "[providers.docker]\nkind = \"docker\"\ncpus = 1.5\nmemory-mb = 512\nmax-nodes = 8\n\
             [providers.hpc]\nkind = \"slurm\"\npartition = \"debug\"\ntime-limit = \"1:00:00\"\ndefault = true\n\
             [providers.small]\nkind = \"local\"\n",
        )
        .unwrap();
        let d = |n: &str| decls.iter().find(|d| d.name == n).unwrap();
        assert_eq!((d("docker").kind.as_str(), d("docker").max_nodes, d("docker").default), ("docker", Some(8), false));
        assert!(d("docker").description.contains("1.5 CPUs"), "{}", d("docker").description);
        assert!(d("hpc").default && d("hpc").build.is_some());
        assert!(d("small").build.is_none());
        // No table: no declared provider, as before.
        assert!(ServeConfig::from_raw(RawServe::default()).unwrap().providers.is_empty());
    }

    #[test]
    fn bad_provider_tables_are_refused_with_the_reason() {
        for (text, says) in [
            ("[providers.x]\ncpus = 1\n", "kind is missing"),
            ("[providers.x]\nkind = \"kubernetes\"\n", "not a provider kind"),
            ("[providers.x]\nkind = \"docker\"\ncpu = 1\n", "unknown field"),
            ("[providers.x]\nkind = \"docker\"\ncpus = -1\n", "cpus"),
            ("[providers.x]\nkind = \"slurm\"\n", "partition"),
            ("[providers.x]\nkind = \"slurm\"\npartition = \"a b\"\n", "partition"),
            ("[providers.x]\nkind = \"local\"\nimage = \"i\"\n", "no settings"),
            ("[providers.x]\nkind = \"docker\"\nmax-nodes = 0\n", "max-nodes"),
            ("[providers.x]\nkind = \"docker\"\ndefault = true\n[providers.y]\nkind = \"docker\"\ndefault = true\n", "default"),
            ("[providers.local]\nkind = \"docker\"\n", "local"),
            ("[providers]\nx = 1\n", "table"),
        ] {
            let e = providers_of(text).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains("providers"), "{text:?}: the message names the table: {e}");
        }
    }
}
