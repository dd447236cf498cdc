//! The `svault` binary, rebuilt here so black-box tests can spawn it (`CARGO_BIN_EXE_svault-under-test`).
fn main() -> std::process::ExitCode {
    engine::cli::main()
}
