//! The `svault-loadgen` command line, rebuilt here so black-box tests can spawn it
//! (`CARGO_BIN_EXE_svault-loadgen-under-test`) next to the `svault` they load.
fn main() -> std::process::ExitCode {
    loadgen::cli::main()
}
