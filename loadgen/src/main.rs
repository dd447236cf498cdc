//! `svault-loadgen`: see `loadgen::cli`.
fn main() -> std::process::ExitCode {
    loadgen::cli::main()
}
