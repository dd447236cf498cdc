//! Helpers for svault's black-box tests (spawning the binary, free ports, temp dirs).
pub mod api;
pub mod crash;
pub mod fuzz;
