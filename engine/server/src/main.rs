/// mimalloc: the state machine allocates a reply per request, and mimalloc's per-thread
/// free lists make that a fraction of the system allocator's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    server::cli::main()
}
