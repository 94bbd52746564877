//! `openbatch`: a self-hosted Azure Batch service.
//!
//! Subcommands: `serve` runs the Batch API server with its embedded store.

mod config;

use clap::{Parser, Subcommand};
use config::{RawServe, ServeConfig};
use std::path::PathBuf;
use std::process::ExitCode;


#[derive(Parser)]
#[command(name = "openbatch", version, about = "A self-hosted, wire-compatible Azure Batch service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a compute node agent that joins a pool of an openbatch server.
    Agent {
        /// The server's URL, e.g. http://batch.example.com:8520
        #[arg(long, env = "OPENBATCH_SERVER")]
        server: String,
        /// The pool to join.
        #[arg(long, env = "OPENBATCH_POOL")]
        pool: String,
        /// The join token (the server's `<data-dir>/agent.token`).
        #[arg(long, env = "OPENBATCH_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// The node root directory (AZ_BATCH_NODE_ROOT_DIR).
        #[arg(long, env = "OPENBATCH_NODE_ROOT", default_value = "/var/lib/openbatch-node")]
        root: PathBuf,
        /// The address this node reports (AZ_BATCH_HOST_LIST and ipAddress).
        #[arg(long, env = "OPENBATCH_NODE_IP", default_value = "127.0.0.1")]
        ip: String,
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
    },
    /// Run the Batch API server (embedded SQLite store).
    Serve {
        /// A TOML file with the same settings (kebab-case keys); flags and environment variables win over it.
        #[arg(long, env = "OPENBATCH_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: RawServe,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENBATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Agent { server, pool, token, root, ip, file_roots, container_engine, give_up_after } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(r) => r,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            let file_roots = file_roots.map(|r| r.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect());
            let cfg = agent::AgentConfig {
                server: server.trim_end_matches('/').to_string(),
                pool_id: pool,
                token,
                root,
                ip_address: ip,
                file_roots,
                container_engine,
                give_up_after: give_up_after.map(std::time::Duration::from_secs),
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
        Command::Serve { config, settings } => {
            let raw = match config {
                Some(path) => match config::read_file(&path) {
                    Ok(file) => settings.or(file),
                    Err(e) => return fail(&e),
                },
                None => settings,
            };
            match ServeConfig::from_raw(raw) {
                Ok(cfg) => serve(cfg),
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("openbatch: {msg}");
    ExitCode::from(2)
}

fn serve(cfg: ServeConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let store = match store::Store::open(&cfg.data_dir) {
            Ok(s) => s,
            Err(e) => return fail(&e),
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
                file_roots: cfg.file_roots.clone(),
            },
        );
        let endpoint = cfg.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        if cfg.using_dev_key {
            println!(
                "openbatch: using the development account '{}' with the public development key {} (loopback only)",
                cfg.account,
                config::DEV_KEY
            );
        }
        println!("openbatch: serving Batch account '{}' at {endpoint} (data in {})", cfg.account, cfg.data_dir.display());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let shutdown = async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        };
        match api::serve(app, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("server error: {e}")),
        }
    })
}

/// The token agents join with: created once, kept in the data directory
/// (readable by the server's user only).
fn agent_token(data_dir: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("agent.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes: {e}"))?;
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
