//! svault-loadgen: load tests with honest latency, a report people can look at, and svault
//! side by side with Postgres and Redis doing the same work.
//!
//! A run: [`workload`] makes the request stream (a pure function of the seed), a
//! [`target::Backend`] prepares the system untimed and reads its money back, [`drive`] sends
//! the stream open loop (latency from each request's intended send time) or closed loop,
//! [`stats`] counts into HDR histograms, [`report`] turns the counts into the JSON report and
//! the money check, [`html`] draws the pages. [`run`] ties them together; [`cli`] is the
//! command line. Start reading at [`run::run`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use loadgen::run::{run, RunSpec};
//! use loadgen::workload::Profile;
//! use std::time::Duration;
//! let spec = RunSpec {
//!     target: "http://127.0.0.1:8080".into(), admin: None, cards: 1000, dist: None,
//!     profile: Profile::Steady, mix: None, rate: 1000, duration: Duration::from_secs(5),
//!     warmup: Duration::from_secs(1), connections: 8, pipeline: 1, batch: 1, seed: 1,
//!     run_id: 1, label: None, keep: false, quiet: true, setup_via: None,
//!     durability_note: None,
//! };
//! let report = run(&spec).await?;
//! assert!(report.check.ok, "{}", report.check.message);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod drive;
pub mod html;
pub mod report;
pub mod run;
pub mod stats;
pub mod target;
pub mod workload;
