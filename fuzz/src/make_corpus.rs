//! Writes the seed inputs of every target into `corpus/<target>/seed-<n>`.
fn main() -> std::io::Result<()> {
    for (i, (target, bytes)) in svault_tests::fuzz::seeds().into_iter().enumerate() {
        let dir = std::path::Path::new("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{i}")), bytes)?;
    }
    Ok(())
}
