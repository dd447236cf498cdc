//! `svault-loadgen`: see `loadgen::cli`.

/// mimalloc, as the server: the load generator shares the machine's cores with the system
/// under test, and every request it sends allocates its body and its parsed answer; with the
/// system allocator a fifth of its CPU went to `malloc` and `free`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    loadgen::cli::main()
}
