//! Replays every input the fuzzers ever kept as a regression (`fuzz/regressions/<target>/`)
//! and the corpus seeds through the same checks the fuzz targets run, under stable
//! `cargo test`: a crash the fuzzer found stays fixed without a nightly toolchain.

use std::path::Path;

use svault_tests::fuzz::{seeds, TARGETS};

#[test]
fn every_kept_fuzz_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut replayed = 0;
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for path in files {
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read regression input");
            eprintln!("{name}: {}", path.display());
            check(&bytes);
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no regression inputs found under {}",
        root.display()
    );
}

#[test]
fn the_corpus_seeds_pass_their_targets() {
    for (name, bytes) in seeds() {
        let check = TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .expect("seed of a known target");
        check(&bytes);
    }
}
