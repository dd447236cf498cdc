//! svault's core: the pure, deterministic card ledger. Everything that decides an answer lives
//! here; nothing here does I/O, reads a clock, starts a thread or logs.
//!
//! - [`money`]: amounts in minor units, rates, decimal parsing at the edge.
//! - [`rules`]: bounds on client input that both doors share (ids, keys, ttl).
//! - [`program`]: a brand's rules; `program::spec` their JSON form ([`program::ProgramSpec`])
//!   and the checked way between the two.
//! - [`command`], [`outcome`]: what goes into the state machine and what comes out.
//! - [`state`]: the state machine: `State::apply(request) -> reply`, ticks, snapshots.
//! - [`record`]: a logged request as it sits in the write-ahead log (rkyv), with the readers
//!   of the older record versions; `FORMAT.md` beside this crate gives the bytes.
//!
//! May depend on: rkyv, xxhash, thiserror, rust_decimal, serde (the program spec). Not on
//! tokio, threads, clocks, the file system, libc or tracing: `cargo tree -p svault-core`
//! shows the list (tests/tests/layering.rs fails if one creeps in), and
//! `clippy.toml` beside this crate forbids the std calls (`Instant::now`, `std::fs`, threads).
//! Time comes in as `Millis` inside each request, so a log replays to the same state.
//!
//! Start reading at [`state::State::apply`] and [`command::Command`].
#![deny(unsafe_code)]

#[cfg(test)]
mod alloc_count;
pub mod command;
pub mod money;
pub mod outcome;
pub mod program;
pub mod record;
pub mod rules;
pub mod state;
