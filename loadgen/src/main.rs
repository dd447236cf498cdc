//! `svault-loadgen`: not built yet (no open issue asks for it so far).
fn main() {
    eprintln!("svault-loadgen: not built yet");
    std::process::exit(2);
}
