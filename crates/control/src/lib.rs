//! The control plane: compute nodes at run time and everything that decides
//! what runs where, with no HTTP in it (a test fails if this crate depends on
//! an HTTP crate).
//!
//! Where things are:
//! - `agents`: an agent's reports (join, preparing, started, finished, file
//!   replies, disconnect) — the agent path enters here;
//! - `scheduler`: the round (`round`), node queues (`queues`), ready tasks read
//!   ahead (`readahead`), attempt writes (`attempts`), placement (`placement`);
//! - `completion`: what follows an attempt's outcome;
//! - `multi`, `jobprep`, `starttask`: multi-instance runs, job preparation and
//!   release, the pool's start task;
//! - `nodes`: the node registry and operations on a node; `liveness`: silent
//!   nodes and recovery after a restart;
//! - `provider`: where nodes come from (`NodeProvider`; `local` starts agent
//!   processes on this machine);
//! - `launch`, `data`, `packages`, `tokens`: what an agent is sent to run;
//! - `execution`: task state changes; `metrics`: dispatch latency; `lifecycle`: job transitions' signals;
//! - `autoscale`: pool samples and the periodic evaluation of autoscale
//!   formulas (the language is the `autoscale` crate);
//! - `supervisor`: the background loops, stopped in order at shutdown.
//!
//! - `state`: the in-memory control state with one owner (`state::Core`,
//!   behind `Cluster::core`); `cluster`: the handle every entry point is a
//!   method of; `config`: settings and timing constants.
//!
//! The database stays the source of truth for tasks; the core holds what
//! only exists while nodes are connected (slots in use, queues, channels).
//! This file only declares modules and re-exports; no module imports a
//! module that imports it back (`tests/layering.rs`).

pub mod agents;
pub mod autopool;
pub mod autoscale;
pub mod certificates;
pub mod cluster;
pub mod completion;
pub mod config;
pub mod data;
pub mod execution;
pub mod jobprep;
pub mod jobs;
pub mod launch;
pub mod lifecycle;
pub mod liveness;
pub mod metrics;
pub mod multi;
pub mod nodes;
pub mod packages;
pub mod pool;
pub mod preempt;
pub mod provider;
pub mod scheduler;
pub mod schedules;
pub mod starttask;
mod state;
pub mod supervisor;
pub mod sync;
pub mod tokens;
pub mod transitions;
pub mod usage;

pub use cluster::Cluster;
pub use config::{ClusterConfig, HEARTBEAT, NODE_LOST_AFTER};
pub use state::node::{Drain, Node, NodeLoad, Slot};
pub use sync::lock;
