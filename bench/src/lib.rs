//! Criterion benchmarks of svault live in `benches/`; figures go to `RESULTS.md`. This library
//! holds what the benchmarks and the examples share.

pub mod cards;
pub mod load;
pub mod memory;
