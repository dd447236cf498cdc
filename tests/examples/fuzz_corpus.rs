//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/seed-<n>`:
//! `cargo run -p svault-tests --example fuzz_corpus`.
fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (i, (target, bytes)) in svault_tests::fuzz::seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{i}")), bytes)?;
    }
    println!("seeds written under {}", root.display());
    Ok(())
}
