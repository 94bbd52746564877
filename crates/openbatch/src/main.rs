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

