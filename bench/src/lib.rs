//! Criterion benchmarks of svault live in `benches/`; figures go to `RESULTS.md`.
