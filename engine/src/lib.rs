//! svault: a stored-value card authorization engine.
//!
//! - [`money`]: amounts in minor units, rates, parsing at the edge.
//! - [`command`], [`outcome`]: what goes into the state machine and what comes out.
//! - [`program`]: a brand's rules.
//! - [`state`]: the pure, deterministic state machine.
//! - [`runtime`]: shards, group commit, snapshots, restart.
//! - [`http`], [`tcp`]: the two front doors; [`client`]: the binary protocol's client.
//! - [`replay`], [`inspect`]: offline tools over a data directory.
//! - [`cli`]: the `svault` command (`serve`, `replay`, `inspect`).
#![deny(unsafe_code)]

pub mod cli;
pub mod client;
pub mod command;
pub mod http;
pub mod inspect;
pub mod money;
pub mod outcome;
pub mod program;
pub mod progress;
pub mod replay;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod state;
pub mod tcp;
