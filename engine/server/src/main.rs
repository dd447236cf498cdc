//! The `svault` binary: `serve`, `replay`, `inspect` and `report` (see [`server::cli`]). All
//! the code is in the `server` library, so tests/ can build the same command over an engine
//! with its test hooks compiled in.

/// mimalloc: the state machine allocates a reply per request, and mimalloc's per-thread
/// free lists make that a fraction of the system allocator's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    server::cli::main()
}
