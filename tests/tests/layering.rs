//! The crates of `engine/` form layers and every arrow points down:
//!
//! ```text
//! server ─► runtime ─► core        (runtime ─► wal)
//!    └────► proto ───► core        loadgen ─► proto, core
//! ```
//! This test reads the dependency graph as `cargo tree` shows it and fails when an arrow
//! points up or sideways (the runtime reaching for the protocol, anything below the server
//! depending on it), or when the pure core reaches, however deep, a crate that does I/O,
//! logs or parses a command line (tokio, axum, clap, tracing, libc, ...).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The crates `package` links (normal and build dependencies, as built for this host with
/// that package's own features), as `cargo tree` lists them; `depth` 1 for the direct ones.
fn tree(package: &str, depth: Option<u32>) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "tree",
        "--offline",
        "-e",
        "normal,build",
        "--prefix",
        "none",
    ])
    .args(["--format", "{p}", "-p", package])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"));
    if let Some(d) = depth {
        cmd.args(["--depth", &d.to_string()]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        names.remove(package),
        "cargo tree -p {package} does not list {package} itself: the parser is out of step"
    );
    names
}

fn direct(package: &str) -> BTreeSet<String> {
    tree(package, Some(1))
}

/// Everything `package` links, however deep.
fn transitive(package: &str) -> BTreeSet<String> {
    tree(package, None)
}

/// svault's own crates below the tests, by layer.
const OURS: [&str; 6] = [
    "svault-wal",
    "svault-core",
    "svault-proto",
    "svault-runtime",
    "svault-server",
    "svault-loadgen",
];

/// Of a package's direct dependencies, the ones that are svault's own crates.
fn ours(package: &str) -> BTreeSet<String> {
    direct(package)
        .iter()
        .filter(|d| OURS.contains(&d.as_str()))
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_arrow_between_svault_crates_points_down() {
    let allowed: [(&str, &[&str]); 6] = [
        ("svault-wal", &[]),
        ("svault-core", &[]),
        ("svault-proto", &["svault-core"]),
        ("svault-runtime", &["svault-core", "svault-wal"]),
        (
            "svault-server",
            &["svault-core", "svault-proto", "svault-runtime"],
        ),
        ("svault-loadgen", &["svault-core", "svault-proto"]),
    ];
    for (package, may) in allowed {
        let has = ours(package);
        let may_set = set(may);
        let up: Vec<_> = has.difference(&may_set).collect();
        assert!(
            up.is_empty(),
            "{package} depends on {up:?}; its layer allows only {may:?}"
        );
    }
}

#[test]
fn the_core_reaches_nothing_that_does_io_logs_or_parses_a_command_line() {
    let reach = transitive("svault-core");
    let forbidden = [
        "tokio",
        "mio",
        "axum",
        "hyper",
        "utoipa",
        "clap",
        "tracing",
        "tracing-subscriber",
        "libc",
        "rustix",
        "crossbeam-channel",
        "parking_lot",
        "memmap2",
        "svault-wal",
    ];
    for f in forbidden {
        assert!(
            !reach.contains(f),
            "svault-core reaches `{f}` (everything it reaches: {reach:?})"
        );
    }
}

#[test]
fn the_protocol_crate_pulls_in_no_engine_and_no_http() {
    let reach = transitive("svault-proto");
    for f in [
        "svault-runtime",
        "svault-server",
        "svault-wal",
        "axum",
        "hyper",
        "utoipa",
        "clap",
    ] {
        assert!(!reach.contains(f), "svault-proto reaches `{f}`");
    }
}

#[test]
fn the_runtime_knows_no_network_door_and_no_command_line() {
    let reach = transitive("svault-runtime");
    for f in [
        "svault-proto",
        "svault-server",
        "axum",
        "hyper",
        "utoipa",
        "clap",
    ] {
        assert!(!reach.contains(f), "svault-runtime reaches `{f}`");
    }
}

/// The hooked copies under tests/with-faults/ compile the same sources: their dependency lists
/// must match the product's, hooked crate for product crate, or the copy stops compiling (or
/// worse, compiles against something else).
#[test]
fn the_hooked_copies_depend_on_what_the_product_crates_do() {
    let unhook = |names: &BTreeSet<String>| -> BTreeSet<String> {
        names
            .iter()
            .map(|n| n.strip_suffix("-with-faults").unwrap_or(n).to_string())
            .collect()
    };
    for crate_ in ["svault-wal", "svault-runtime", "svault-server"] {
        let hooked = format!("{crate_}-with-faults");
        assert_eq!(
            unhook(&direct(&hooked)),
            direct(crate_),
            "tests/with-faults: {hooked} is out of step with {crate_}"
        );
    }
}

/// Module cycles inside a crate, once broken, stay broken: each file below may not name the
/// module that depends on it (`cli` runs `serve`, `openapi` documents `handlers`, opening a
/// `wal` is `recovery`'s job).
#[test]
fn broken_module_cycles_stay_broken() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, dependant) in [
        ("engine/server/src/serve.rs", "cli::"),
        ("engine/server/src/http/handlers.rs", "openapi::"),
        ("wal/src/writer.rs", "recovery::"),
    ] {
        let path = root.join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !text.contains(dependant),
            "{file} names `{dependant}`, which depends on it: a module cycle"
        );
    }
}
