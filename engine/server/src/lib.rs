//! svault's server: the two front doors over one runtime, and the `svault` command.
//!
//! - [`http`]: the HTTP/JSON gateway and admin API (axum), with its OpenAPI document;
//! - [`tcp`]: the binary protocol door (frames from svault-proto);
//! - [`idle`]: the HTTP door's socket-level idle timeout (a client that never reads);
//! - [`auth`]: API keys and roles, checked the same way by both doors;
//! - [`serve`]: opens the runtime and runs both doors until a signal;
//! - [`cli`]: the `svault` command (`serve`, `replay`, `inspect`, `report`).
//!
//! May depend on everything below it: svault-runtime, svault-proto, svault-core, and the
//! network, HTTP, OpenAPI and command-line crates. Nothing depends on this crate but the
//! `svault` binary and the tests.
//! Start reading at [`cli::main`], then [`serve::main`], [`http::router`] and [`tcp::serve`].
#![deny(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod http;
pub mod idle;
pub mod serve;
pub mod tcp;
