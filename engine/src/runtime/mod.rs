//! The sharded runtime: router, shard threads, group commit, snapshots, restart.
//! (Stub: the runtime work fills this in; servers code against this API.)

use crate::command::{Query, Request};
use crate::outcome::{Event, FloatTotals, Reply};
use crate::state::QueryAnswer;
use std::path::PathBuf;
use std::sync::Arc;

/// When a reply may be sent (SPEC "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// fsync every batch before replying (batches are small).
    Sync,
    /// one fsync shared by every request that arrived together (default).
    #[default]
    Group,
    /// reply before the fsync; a timer flushes. Loses a window on crash.
    Async,
}

/// How to open the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Fixed per data directory; `None` ⇒ what the directory says, or 2 for a new one.
    pub shards: Option<usize>,
    pub durability: Durability,
}

/// Which programs a caller may touch (gateway keys are limited to listed programs).
#[derive(Debug, Clone, Default)]
pub enum Scope {
    #[default]
    All,
    Programs(Arc<[String]>),
}

/// Why a request got no answer from the state machine.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// The shard's queue is full: `503` with `Retry-After`.
    #[error("overloaded")]
    Overloaded,
    /// The card belongs to a program outside the caller's scope: `403`.
    #[error("forbidden")]
    Forbidden,
    /// The log cannot be written (disk full, poisoned after a sync error): `503`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("shutting down")]
    ShuttingDown,
}

/// Errors opening the engine (recovery refused, wrong shard count, i/o).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error("{0}")]
    Config(String),
}

/// A handle to the running engine; cheap to clone, shared by all connections.
#[derive(Clone)]
pub struct Engine {}

impl Engine {
    /// Opens the data directory, recovers every shard, starts the shard threads.
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        let _ = config;
        todo!()
    }
    /// `true` when `open` found no data and created a new directory (serve then creates `demo`).
    pub fn created_new(&self) -> bool {
        todo!()
    }
    /// Submits one mutating request; resolves once its WAL record is durable (per durability).
    pub async fn submit(&self, request: Request, scope: &Scope) -> Result<Reply, SubmitError> {
        let _ = (request, scope);
        todo!()
    }
    /// Submits many requests at once (the binary protocol's frames); answers in the same order.
    pub async fn submit_batch(&self, requests: Vec<Request>, scope: &Scope) -> Vec<Result<Reply, SubmitError>> {
        let _ = (requests, scope);
        todo!()
    }
    /// A read, answered by the card's shard from memory.
    pub async fn query(&self, query: Query, scope: &Scope) -> Result<QueryAnswer, SubmitError> {
        let _ = (query, scope);
        todo!()
    }
    /// Outstanding principal/bonus/held per program, summed over shards.
    pub fn float(&self) -> Vec<(String, FloatTotals)> {
        todo!()
    }
    /// Events with sequence number > `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Vec<(u64, Event)> {
        let _ = (after, limit);
        todo!()
    }
    /// Appends the runtime's Prometheus lines (batch sizes, commit latency histogram, queue depth,
    /// shard LSNs) to `out`; the HTTP layer adds request counts, declines and the float.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = out;
        todo!()
    }
    /// Stops taking requests, commits what is in flight, writes seal records, joins the shards.
    pub fn shutdown(&self) {
        todo!()
    }
}
