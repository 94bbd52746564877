//! The command line for people: `openbatch job watch`, `openbatch task
//! logs`, `openbatch submit`, `openbatch node preempt|recover`. A client of the Batch REST API like any other
//! (requests signed with SharedKey, as the SDKs sign them), configured like
//! `az batch`: `AZURE_BATCH_ENDPOINT`, `AZURE_BATCH_ACCOUNT`,
//! `AZURE_BATCH_ACCESS_KEY`, or flags (which win).
//!
//! Exit status: 0 success; 1 some task failed (`job watch`, `submit`);
//! 2 an error (bad arguments, unreachable server, refused credentials, a
//! task the service did not take); 130 interrupted (Ctrl-C).

pub mod client;
pub mod logs;
pub mod node;
pub mod submit;
pub mod term;
pub mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Subcommand};

pub use client::{Client, Error};
use term::Term;

/// Where the account is and how to sign for it.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The Batch account's URL, e.g. https://myaccount.westeurope.batch.azure.com or http://127.0.0.1:8520.
    #[arg(long, env = "AZURE_BATCH_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// The Batch account's name.
    #[arg(long, env = "AZURE_BATCH_ACCOUNT", global = true)]
    pub account: Option<String>,
    /// The account key (base64). Prefer the environment: a key on the command line
    /// is visible to other local users until it is wiped after start.
    #[arg(long, env = "AZURE_BATCH_ACCESS_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
}

impl Connection {
    pub fn client(&self) -> Result<Client, Error> {
        let need = |v: &Option<String>, flag: &str, var: &str, what: &str| {
            v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| Error::Config(format!("no {what}: give {flag} or set {var}")))
        };
        let endpoint = need(&self.endpoint, "--endpoint URL", "AZURE_BATCH_ENDPOINT", "Batch endpoint")?;
        let account = need(&self.account, "--account NAME", "AZURE_BATCH_ACCOUNT", "account name")?;
        let key = need(&self.key, "--key KEY", "AZURE_BATCH_ACCESS_KEY", "account key")?;
        Client::new(&endpoint, &account, &key)
    }
}

/// How `job watch` (and `submit`'s watch) shows progress and failures.
#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Seconds between two polls of the job's task counts.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub interval: f64,
    /// How many failed tasks the summary lists, each with the end of its stderr.
    #[arg(long, default_value_t = 20)]
    pub show_failed: usize,
    /// How many lines of each failed task's stderr.txt to show.
    #[arg(long, default_value_t = 5)]
    pub tail: usize,
}

impl WatchArgs {
    fn options(&self) -> watch::WatchOptions {
        watch::WatchOptions { interval: Duration::from_secs_f64(self.interval), show_failed: self.show_failed, tail_lines: self.tail }
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.05..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds between 0.05 and 3600")),
    }
}

/// The client's subcommands (flattened into the binary's).
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Jobs: watch one until its tasks are done.
    Job {
        #[command(subcommand)]
        command: JobCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Tasks: print their output.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Nodes: preempt a low-priority node (openbatch's own operation), or bring it back.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Add one task per number of a range or line of a file, from a command template, then watch them.
    ///
    /// Example: openbatch submit --pool p --command "/bin/sh -c 'echo {} >out-{}'" --range 1..100
    Submit {
        #[command(flatten)]
        submit: SubmitArgs,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Show a live count of the job's tasks until all have completed, then the failed
    /// ones with the end of their stderr. Exits 1 when any task failed.
    Watch {
        /// The job's id.
        job: String,
        #[command(flatten)]
        watch: WatchArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Print a task's stdout.txt (or stderr.txt).
    Logs {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
        /// Keep printing what the task appends until it completes.
        #[arg(long, short)]
        follow: bool,
        /// stderr.txt instead of stdout.txt.
        #[arg(long)]
        stderr: bool,
        /// Seconds between two reads with --follow.
        #[arg(long, default_value_t = 0.5, value_parser = positive_seconds)]
        interval: f64,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Preempt a low-priority (spot) node as Azure would: it goes `preempted`, takes no
    /// tasks, and the tasks it ran are requeued. It stays so until `node recover`, or
    /// until --recover-after has passed. A dedicated node cannot be preempted.
    Preempt {
        /// The pool's id.
        pool: String,
        /// The node's id.
        node: String,
        /// Seconds after which the node comes back by itself (reimaged, then idle).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
        recover_after: Option<u64>,
    },
    /// Bring a preempted node back: it is reimaged (its start task runs again), then idle.
    Recover {
        /// The pool's id.
        pool: String,
        /// The node's id.
        node: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct SubmitArgs {
    /// The pool the job runs on (needed when the job is created).
    #[arg(long)]
    pub pool: Option<String>,
    /// The job to add the tasks to: created when it does not exist (default: a new
    /// job named submit-<time>-<random>).
    #[arg(long)]
    pub job: Option<String>,
    /// The command of each task: every {} becomes the task's argument (appended after a
    /// space when there is no {}). Commands run without a shell: use /bin/sh -c '…' for one.
    #[arg(long, short = 'c')]
    pub command: String,
    /// The arguments: the integers FIRST..LAST, both included.
    #[arg(long, conflicts_with = "args_file", required_unless_present = "args_file")]
    pub range: Option<String>,
    /// The arguments: one per line of FILE (empty lines skipped; - reads stdin).
    #[arg(long)]
    pub args_file: Option<PathBuf>,
    /// Task ids are this prefix and the argument's number (zero-padded).
    #[arg(long, default_value = "task-")]
    pub id_prefix: String,
    /// How many collections of 100 tasks are sent at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Exit once every task is added, without watching the job.
    #[arg(long)]
    pub no_watch: bool,
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// Runs a client command to its exit status. Errors are printed as one
/// line on stderr.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let term = Term::detect();
    // What to say when interrupted, kept up to date by the command.
    let note: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let result = runtime.block_on(async {
        tokio::select! {
            r = execute(command, term, &note) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match result {
        Some(Ok(code)) => code,
        Some(Err(e)) => fail(&e.to_string()),
        None => {
            let note = note.lock().map(|n| n.clone()).unwrap_or_default();
            if note.is_empty() {
                eprintln!("openbatch: interrupted");
            } else {
                eprintln!("openbatch: interrupted; {note}");
            }
            ExitCode::from(130)
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("openbatch: {msg}");
    ExitCode::from(2)
}

async fn execute(command: ClientCommand, term: Term, note: &Arc<Mutex<String>>) -> Result<ExitCode, Error> {
    let set_note = |s: String| {
        if let Ok(mut n) = note.lock() {
            *n = s;
        }
    };
    match command {
        ClientCommand::Job { command: JobCommand::Watch { job, watch }, connection } => {
            let client = connection.client()?;
            set_note(format!("the job goes on; watch it again with: openbatch job watch {job}"));
            let summary = watch::watch(&client, &job, &watch.options(), term).await?;
            Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        ClientCommand::Task { command: TaskCommand::Logs { job, task, follow, stderr, interval }, connection } => {
            let client = connection.client()?;
            let file = if stderr { "stderr.txt" } else { "stdout.txt" };
            logs::logs(&client, &job, &task, file, follow, Duration::from_secs_f64(interval)).await?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Node { command: NodeCommand::Preempt { pool, node, recover_after }, connection } => {
            let client = connection.client()?;
            node::preempt(&client, &pool, &node, recover_after.map(Duration::from_secs)).await?;
            match recover_after {
                Some(s) => println!("node {node} of pool {pool} is preempted; it recovers in {s} s"),
                None => println!("node {node} of pool {pool} is preempted; bring it back with: openbatch node recover {pool} {node}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Node { command: NodeCommand::Recover { pool, node }, connection } => {
            let client = connection.client()?;
            node::recover(&client, &pool, &node).await?;
            println!("node {node} of pool {pool} recovers (reimaging, then idle)");
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Submit { submit: s, connection } => {
            submit::check_prefix(&s.id_prefix).map_err(Error::Config)?;
            if s.command.trim().is_empty() {
                return Err(Error::Config("the --command template is empty".into()));
            }
            let tasks = match (&s.range, &s.args_file) {
                (Some(r), _) => {
                    let (first, last) = submit::parse_range(r).map_err(Error::Config)?;
                    if last - first >= 10_000_000 {
                        return Err(Error::Config(format!("the range {r} makes more than 10,000,000 tasks")));
                    }
                    submit::range_tasks(&s.command, &s.id_prefix, first, last)
                }
                (None, Some(path)) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin()).map_err(|e| Error::Config(format!("cannot read stdin: {e}")))?
                    } else {
                        std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?
                    };
                    submit::file_tasks(&s.command, &s.id_prefix, &text)
                }
                (None, None) => return Err(Error::Config("give --range FIRST..LAST or --args-file FILE".into())),
            };
            if tasks.is_empty() {
                return Err(Error::Config("there are no arguments, so no tasks to add".into()));
            }
            if let Some(long) = tasks.iter().find(|t| t.id.len() > 64) {
                return Err(Error::Config(format!("the task id {} is longer than 64 characters: use a shorter --id-prefix", long.id)));
            }
            let client = connection.client()?;
            let job = s.job.clone().unwrap_or_else(submit::new_job_id);
            let created = submit::ensure_job(&client, &job, s.pool.as_deref()).await?;
            set_note(format!("0 of {} tasks were added to job {job}", tasks.len()));
            let added = submit::add_tasks(&client, &job, &tasks, s.parallel.into(), term, note).await?;
            println!(
                "job {job}{}: {} tasks added in {:.2} s",
                if created { " (created)" } else { "" },
                added.added,
                added.took.as_secs_f64()
            );
            if !added.refused.is_empty() {
                for r in added.refused.iter().take(10) {
                    eprintln!("openbatch: task {} was not added: {}", r.id, r.reason);
                }
                if added.refused.len() > 10 {
                    eprintln!("openbatch: … and {} more", added.refused.len() - 10);
                }
                return Err(Error::Other(format!("{} of {} tasks were not added to job {job}", added.refused.len(), tasks.len())));
            }
            if s.no_watch {
                return Ok(ExitCode::SUCCESS);
            }
            set_note(format!("all {} tasks were added; the job goes on: openbatch job watch {job}", tasks.len()));
            let summary = watch::watch(&client, &job, &s.watch.options(), term).await?;
            Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser, Debug)]
    struct Top {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        let m = Top::command().try_get_matches_from(std::iter::once("openbatch").chain(args.iter().copied()))?;
        Top::from_arg_matches(&m).map(|t| t.command)
    }

    #[test]
    fn submit_takes_a_range_or_a_file_not_both_nor_neither() {
        let c =
            parse(&["submit", "--pool", "p", "--command", "echo {}", "--range", "1..10", "--endpoint", "http://h", "--no-watch"]).unwrap();
        let ClientCommand::Submit { submit, connection } = c else { panic!("{c:?}") };
        assert_eq!(submit.range.as_deref(), Some("1..10"));
        assert_eq!((submit.parallel, submit.no_watch, submit.id_prefix.as_str()), (4, true, "task-"));
        assert_eq!(connection.endpoint.as_deref(), Some("http://h"));
        assert!(parse(&["submit", "--command", "x", "--range", "1..2", "--args-file", "f"]).is_err());
        assert!(parse(&["submit", "--command", "x"]).is_err());
        assert!(parse(&["submit", "--command", "x", "--range", "1..2", "--parallel", "0"]).is_err());
    }

    #[test]
    fn connection_flags_go_anywhere_and_missing_ones_are_named() {
        let c = parse(&["job", "--account", "a", "watch", "j", "--key", "a2V5", "--interval", "0.2"]).unwrap();
        let ClientCommand::Job { command: JobCommand::Watch { job, watch }, connection } = c else { panic!() };
        assert_eq!((job.as_str(), watch.interval), ("j", 0.2));
        assert_eq!((connection.account.as_deref(), connection.key.as_deref()), (Some("a"), Some("a2V5")));
        assert!(parse(&["job", "watch", "j", "--interval", "0"]).is_err());
        let missing = Connection { endpoint: Some("http://h".into()), account: None, key: None };
        let e = missing.client().unwrap_err().to_string();
        assert_eq!(e, "no account name: give --account NAME or set AZURE_BATCH_ACCOUNT");
        let c = parse(&["node", "preempt", "p", "n", "--recover-after", "30"]).unwrap();
        assert!(matches!(c, ClientCommand::Node { command: NodeCommand::Preempt { recover_after: Some(30), .. }, .. }));
        assert!(parse(&["node", "recover", "p"]).is_err(), "the node is required");
        let c = parse(&["task", "logs", "j", "t", "-f", "--stderr"]).unwrap();
        assert!(matches!(c, ClientCommand::Task { command: TaskCommand::Logs { follow: true, stderr: true, .. }, .. }));
    }
}
