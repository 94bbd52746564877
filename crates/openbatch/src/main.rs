//! `openbatch`: a self-hosted Azure Batch service.
//!
//! Subcommands: `serve` runs the Batch API server with its embedded store,
//! `agent` a compute node; `job`, `task` and `submit` are the command line
//! for people (the `cli` crate), a client of any Batch endpoint.

mod config;
mod secrets;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use config::{RawServe, ServeConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "openbatch", version, about = "A self-hosted, wire-compatible Azure Batch service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the server and the agent log (on stderr; the level comes from OPENBATCH_LOG).
#[derive(clap::Args, Clone, Copy)]
struct LogArgs {
    /// text: for people (coloured on a terminal only); json: one JSON object per line, for log collectors.
    #[arg(long, env = "OPENBATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum LogFormat {
    Text,
    Json,
}

// Parsed once at start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a compute node agent that joins a pool of an openbatch server.
    Agent {
        /// The server's URL, e.g. http://batch.example.com:8520; for a replicated
        /// server, every replica's URL (comma-separated or the flag repeated): the agent
        /// finds the leader among them.
        #[arg(long, env = "OPENBATCH_SERVER", value_delimiter = ',', required = true)]
        server: Vec<String>,
        /// The pool to join.
        #[arg(long, env = "OPENBATCH_POOL")]
        pool: String,
        /// The join token (the server's `<data-dir>/agent.token`). Prefer --token-file or
        /// the environment: a token on the command line is visible to local users until
        /// it is wiped after start.
        #[arg(long, env = "OPENBATCH_AGENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A file holding the join token (a copy of the server's `<data-dir>/agent.token`; mode 0600).
        #[arg(long, env = "OPENBATCH_AGENT_TOKEN_FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// The node root directory (AZ_BATCH_NODE_ROOT_DIR).
        #[arg(long, env = "OPENBATCH_NODE_ROOT", default_value = "/var/lib/openbatch-node")]
        root: PathBuf,
        /// The address this node reports (AZ_BATCH_HOST_LIST and ipAddress).
        #[arg(long, env = "OPENBATCH_NODE_IP", default_value = "127.0.0.1")]
        ip: String,
        /// The port of this machine's SSH server, reported as the node's
        /// remote login port (remoteLoginPort) with --ip.
        #[arg(long, env = "OPENBATCH_NODE_SSH_PORT", default_value_t = 22)]
        ssh_port: u16,
        /// Directories that `file://` resource-file sources and output-file
        /// destinations may use, separated by ':' (default: any path the agent can reach).
        #[arg(long, env = "OPENBATCH_FILE_ROOTS")]
        file_roots: Option<String>,
        /// The container engine that runs container tasks: docker or podman.
        #[arg(long, env = "OPENBATCH_CONTAINER_ENGINE", default_value = "docker")]
        container_engine: String,
        /// Stop every task and exit after this many seconds without reaching
        /// the server (default: keep trying for ever). Local nodes use 600.
        #[arg(long, env = "OPENBATCH_AGENT_GIVE_UP_AFTER")]
        give_up_after: Option<u64>,
        /// PEM certificates trusted, besides the system's roots, for an https:// server
        /// (repeatable; in the environment, paths separated by ':').
        #[arg(long, env = "OPENBATCH_CA_FILE", value_delimiter = ':')]
        ca_file: Vec<PathBuf>,
        /// Verify the server's certificate for this name instead of the --server URL's host.
        #[arg(long, env = "OPENBATCH_TLS_SERVER_NAME")]
        tls_server_name: Option<String>,
        /// The node's id, for a node root that has none yet (node providers name
        /// their nodes before they join); without it the server gives one.
        #[arg(long, env = "OPENBATCH_NODE_ID")]
        node_id: Option<String>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run the Batch API server (embedded SQLite store).
    Serve {
        /// A TOML file with the same settings (kebab-case keys); flags and environment variables win over it.
        #[arg(long, env = "OPENBATCH_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: RawServe,
        #[command(flatten)]
        log: LogArgs,
    },
    /// A container task's process on a node whose container tasks run
    /// through the server's engine gateway (started by the agent).
    #[command(hide = true)]
    EngineRun {
        /// The request the agent wrote (removed once read).
        spec: PathBuf,
        /// Where the container's id goes once it exists.
        #[arg(long)]
        cidfile: Option<PathBuf>,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Logs go to stderr: as text for people, with colour only when stderr is
/// a terminal (a log file gets no escape codes), or as one JSON object per
/// line. The level comes from OPENBATCH_LOG (default `info`; the client
/// commands default to `warn`).
///
/// An agent also keeps its logs as text in its node root
/// (`agent::logs`: hourly files, bounded), which
/// `uploadbatchservicelogs` uploads.
fn init_logging(format: LogFormat, default_level: &str, files: Option<agent::logs::LogFiles>) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("OPENBATCH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = match format {
        LogFormat::Text => stderr.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => stderr.json().flatten_event(true).with_current_span(false).with_span_list(false).boxed(),
    };
    let files = files.map(|f| tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || f.clone()));
    tracing_subscriber::registry().with(filter).with(stderr).with(files).init();
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match &cli.command {
        Command::Serve { log, .. } => init_logging(log.log_format, "info", None),
        Command::Agent { log, root, .. } => {
            let files = agent::logs::LogFiles::open(root);
            if let Err(e) = &files {
                eprintln!("openbatch: the agent keeps no log files: {e}");
            }
            init_logging(log.log_format, "info", files.ok())
        }
        Command::Client(_) => init_logging(LogFormat::Text, "warn", None),
        Command::EngineRun { spec, cidfile } => {
            return ExitCode::from(agent::gateway::run_client(spec, cidfile.as_deref()) as u8);
        }
    }
    hide_secrets(&cli, &matches);
    match cli.command {
        Command::Client(command) => cli::run(command),
        // Ran above, before logging.
        Command::EngineRun { .. } => ExitCode::from(125),
        Command::Agent {
            server,
            pool,
            token,
            token_file,
            root,
            ip,
            ssh_port,
            file_roots,
            container_engine,
            give_up_after,
            ca_file,
            tls_server_name,
            node_id,
            log: _,
        } => {
            let token = match (token, token_file) {
                (Some(t), None) => t,
                (None, Some(path)) => match secrets::read_file("--token-file", &path) {
                    Ok(t) => t,
                    Err(e) => return fail(&e),
                },
                (Some(_), Some(_)) => return fail("give either --token or --token-file, not both"),
                (None, None) => return fail("the join token is missing: give --token-file FILE or set OPENBATCH_AGENT_TOKEN"),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(r) => r,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            let file_roots = file_roots.map(|r| r.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect());
            let cfg = agent::AgentConfig {
                servers: server.iter().map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect(),
                pool_id: pool,
                token,
                root,
                ip_address: ip,
                ssh_port,
                file_roots,
                container_engine,
                give_up_after: give_up_after.map(std::time::Duration::from_secs),
                ca_file,
                tls_server_name,
                node_id,
            };
            // On a worker thread, not the main one: the connection's reader
            // then wakes where its socket's readiness is seen, with no
            // hand-off between threads per frame.
            match runtime.block_on(async { tokio::spawn(agent::run(cfg)).await }) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => fail(&e),
                Err(e) => fail(&format!("the agent stopped: {e}")),
            }
        }
        Command::Serve { config, settings, log } => {
            let raw = match config {
                Some(path) => match config::read_file(&path) {
                    Ok(file) => settings.or(file),
                    Err(e) => return fail(&e),
                },
                None => settings,
            };
            match ServeConfig::from_raw(raw) {
                Ok(cfg) => serve(cfg, log.log_format),
                Err(e) => fail(&e),
            }
        }
    }
}

/// Secrets given on the command line are visible to every local user in
/// /proc/<pid>/cmdline: warn, and wipe them from the process's argument
/// area (clap has its own copy). Secrets are also taken out of the
/// environment, so that no process this one starts inherits them (local
/// agents get the join token explicitly).
fn hide_secrets(cli: &Cli, matches: &clap::ArgMatches) {
    let Some((_, sub)) = matches.subcommand() else { return };
    if let Command::Client(command) = &cli.command {
        // The client's key (`--key`, as `az batch --account-key` takes it):
        // wiped without a warning — a person at a terminal typed it.
        let key = match command {
            cli::ClientCommand::Job { connection, .. }
            | cli::ClientCommand::Task { connection, .. }
            | cli::ClientCommand::Node { connection, .. }
            | cli::ClientCommand::Submit { connection, .. } => connection.key.as_deref(),
        };
        let mut level = Some(sub);
        let mut typed = false;
        while let Some(m) = level {
            typed |= m.value_source("key") == Some(clap::parser::ValueSource::CommandLine);
            level = m.subcommand().map(|(_, m)| m);
        }
        if let (true, Some(k)) = (typed, key) {
            secrets::wipe_from_command_line(&[k]);
        }
        return;
    }
    let on_command_line = |id: &str| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let given: Vec<(&str, &Option<String>, &str)> = match &cli.command {
        Command::Serve { settings, .. } => vec![
            ("key", &settings.key, "--key-file FILE or the OPENBATCH_KEY environment variable"),
            ("key2", &settings.key2, "--key2-file FILE or the OPENBATCH_KEY2 environment variable"),
            ("auto_storage", &settings.auto_storage, "the OPENBATCH_AUTO_STORAGE environment variable or the config file"),
            ("metrics_token", &settings.metrics_token, "the OPENBATCH_METRICS_TOKEN environment variable or the config file"),
        ]
        .into_iter()
        // A database URL is a secret when it holds a password.
        .chain(
            settings
                .database
                .as_ref()
                .filter(|u| store::postgres::redact(u) != **u)
                .map(|_| ("database", &settings.database, "the OPENBATCH_DATABASE environment variable or the config file")),
        )
        .collect(),
        Command::Agent { token, .. } => {
            vec![("token", token, "--token-file FILE or the OPENBATCH_AGENT_TOKEN environment variable")]
        }
        Command::Client(_) | Command::EngineRun { .. } => return,
    };
    let mut wipe = Vec::new();
    for (id, value, instead) in given {
        if let (true, Some(v)) = (on_command_line(id), value) {
            secrets::warn_command_line(&format!("--{}", id.replace('_', "-")), instead);
            wipe.push(v.as_str());
        }
    }
    if !wipe.is_empty() && secrets::wipe_from_command_line(&wipe) < wipe.len() {
        tracing::warn!("could not wipe every secret from /proc/self/cmdline");
    }
    for var in [
        "OPENBATCH_KEY",
        "OPENBATCH_KEY2",
        "OPENBATCH_AUTO_STORAGE",
        "OPENBATCH_AGENT_TOKEN",
        "OPENBATCH_METRICS_TOKEN",
        "OPENBATCH_DATABASE",
    ] {
        // Single-threaded still: no other thread reads the environment.
        std::env::remove_var(var);
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("openbatch: {msg}");
    ExitCode::from(2)
}

fn serve(cfg: ServeConfig, log_format: LogFormat) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    if let Err(e) = secure_data_dir(&cfg.data_dir) {
        return fail(&e);
    }
    runtime.block_on(async move {
        let opened = match &cfg.database {
            Some(url) => store::Store::connect_postgres(url).await,
            None => store::Store::open(&cfg.data_dir),
        };
        let mut store = match opened {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        // A replica's writes are fenced by the leader's lease from the start:
        // until it leads, it writes nothing (it forwards).
        let replica = match &cfg.replica {
            Some((url, ttl)) => {
                let fence = store::Fence::new(api::replica::LEASE, &api::replica::holder(url));
                store = match store.with_fence(fence.clone()) {
                    Ok(s) => s,
                    Err(e) => return fail(&format!("--replica: {e}")),
                };
                Some(api::replica::Replica::new(fence, *ttl))
            }
            None => None,
        };
        let agent_token = match agent_token(&cfg.data_dir) {
            Ok(t) => t,
            Err(e) => return fail(&e),
        };
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", cfg.listen)),
        };
        let addr = listener.local_addr().unwrap_or(cfg.listen);
        let app = api::App::new(
            store,
            api::ApiConfig {
                account: cfg.account.clone(),
                keys: cfg.keys.clone(),
                public_url: cfg.public_url.clone(),
                transition_delay: cfg.transition_delay,
                agent_token,
                nodes_dir: cfg.data_dir.join("nodes"),
                applications_dir: cfg.applications_dir.clone().unwrap_or_else(|| cfg.data_dir.join("applications")),
                auto_storage: cfg.auto_storage.clone(),
                agent_program: std::env::current_exe().ok(),
                strict_limits: cfg.strict_limits,
                autoscale_sample_interval: cfg.autoscale_sample_interval,
                file_roots: cfg.file_roots.clone(),
                metrics: cfg.metrics.clone(),
                providers: cfg.providers.clone(),
            },
        );
        if let Some(r) = replica {
            println!(
                "openbatch: replica advertised at {} (lease time to live {:?})",
                r.advertise_url,
                cfg.replica.as_ref().map(|(_, t)| *t).unwrap_or_default()
            );
            let _ = app.replica.set(r);
        }
        let mut metrics_at = None;
        if let Some(addr) = cfg.metrics_listen {
            let metrics_listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => return fail(&format!("cannot listen on {addr} (--metrics-listen): {e}")),
            };
            let app = app.clone();
            metrics_at = Some(metrics_listener.local_addr().unwrap_or(addr));
            tokio::spawn(async move {
                if let Err(e) = api::serve_metrics(app, metrics_listener, shutdown_signal()).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let mut opts = match serve_options(&cfg, addr) {
            Ok(o) => o,
            Err(e) => return fail(&e),
        };
        // Local agents share the server's stderr: the same log format.
        if log_format == LogFormat::Json {
            opts.agent_env.push(("OPENBATCH_LOG_FORMAT".into(), "json".into()));
        }
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let endpoint = cfg.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
        if cfg.insecure_http {
            tracing::warn!("serving plain HTTP on {addr} (--insecure-http): requests, keys' signatures and task data travel unencrypted");
        }
        if cfg.using_dev_key {
            println!(
                "openbatch: using the development account '{}' with the public development key {} (loopback only)",
                cfg.account,
                config::DEV_KEY
            );
        }
        println!("openbatch: serving Batch account '{}' at {endpoint} (data in {})", cfg.account, cfg.data_dir.display());
        if let Some(at) = metrics_at {
            println!("openbatch: metrics at http://{at}{}", api::metrics::PATH);
        }
        if !cfg.providers.is_empty() {
            let providers = app.cluster.providers();
            for e in providers.entries() {
                let default = if e.name == providers.default_name() { ", the default" } else { "" };
                println!("openbatch: node provider '{}' ({}{default}): {}", e.name, e.kind, e.description);
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let shutdown = async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        };
        match api::serve(app, listener, opts, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("server error: {e}")),
        }
    })
}

/// Makes the data directory private to the server's user, creating it
/// (0700) if needed. Read and write permissions of group and others are
/// removed from it and from `nodes` (local node roots) and the default
/// application registry; the search (x) bit stays where it is — local
/// agents add it for others so that tasks can reach their node roots —
/// since every file beneath protects itself (the database and the join
/// token are 0600, node roots `root:<node group> 0750`). A directory that
/// others may write to (`/tmp`, say) is left alone, with a warning: it
/// cannot be made private.
fn secure_data_dir(data_dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    for (dir, mask) in [(data_dir.to_path_buf(), 0o066), (data_dir.join("nodes"), 0o066), (data_dir.join("applications"), 0o077)] {
        let Ok(m) = std::fs::symlink_metadata(&dir) else { continue };
        let mode = m.permissions().mode() & 0o7777;
        if !m.is_dir() {
            continue;
        }
        if mode & 0o002 != 0 {
            tracing::warn!(
                "{} is writable by every user (mode {mode:o}): openbatch leaves it as it is; give a private data directory",
                dir.display()
            );
            continue;
        }
        if mode & mask != 0 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode & !mask))
                .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
            tracing::info!("{}: removed other users' access (mode {mode:o} → {:o})", dir.display(), mode & !mask);
        }
    }
    Ok(())
}

/// How the API is served: the connection limits and, with --tls-cert, TLS
/// (local agents then trust the server's certificate file and verify it for
/// a name it holds).
fn serve_options(cfg: &ServeConfig, addr: std::net::SocketAddr) -> Result<api::server::ServeOptions, String> {
    let mut opts = api::server::ServeOptions { limits: cfg.limits, ..Default::default() };
    let Some((cert, key)) = &cfg.tls else { return Ok(opts) };
    opts.tls = Some(api::tls::server_config(cert, key)?);
    let cert = std::fs::canonicalize(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let ip = addr.ip();
    let mut candidates = vec![if ip.is_unspecified() {
        if ip.is_ipv4() {
            "127.0.0.1".to_string()
        } else {
            "::1".to_string()
        }
    } else {
        ip.to_string()
    }];
    candidates.push("localhost".into());
    if let Some(host) = cfg.public_url.as_deref().and_then(|u| u.split_once("://")).map(|(_, rest)| rest) {
        let host = host.split('/').next().unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        candidates.push(host.trim_start_matches('[').trim_end_matches(']').to_string());
    }
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        candidates.push(h.trim().to_string());
    }
    // Local agents trust the server's certificate file, and the CA files
    // the server's own environment names (a private root the chain file
    // does not hold).
    let mut cas = cert.display().to_string();
    if let Some(more) = std::env::var_os("OPENBATCH_CA_FILE").filter(|v| !v.is_empty()) {
        cas = format!("{cas}:{}", more.to_string_lossy());
    }
    opts.agent_env.push(("OPENBATCH_CA_FILE".into(), cas));
    match api::tls::name_for(&cert, &candidates) {
        Some(name) => opts.agent_env.push(("OPENBATCH_TLS_SERVER_NAME".into(), name)),
        None => {
            tracing::warn!("the certificate in {} names none of {candidates:?}: local nodes will not be able to verify it", cert.display())
        }
    }
    Ok(opts)
}

/// The token agents join with: created once, kept in the data directory
/// (readable by the server's user only: 0600 from its creation on, and
/// made so again on start).
fn agent_token(data_dir: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join("agent.token");
    match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        r => r.map_err(|e| format!("cannot make {} private: {e}", path.display()))?,
    }
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| format!("cannot read random bytes: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(token.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
