//! Failure injection for svault's own tests. This module exists only under `cfg(svault_faults)`,
//! which only the test harness's build of these sources sets (tests/with-faults/): the `svault`
//! binary never holds it, however the workspace is built.
//!
//! In-process tests call [`crate::Engine::inject`]; black-box tests against a real
//! `svault serve` send a request whose idempotency key is one of [`KEYS`].

/// Logged whenever a hook fires; also the marker a release check looks for in a binary.
pub const MARKER: &str = "svault-fault-hooks-compiled-in";

/// The message of an injected panic.
pub const PANIC_MESSAGE: &str = "svault-fault-hooks-compiled-in: injected panic";

/// A failure a test makes one shard suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next commit loses its batch and its sync reports EIO.
    CommitFails,
    /// The next segment rotation (inside an append) loses the pending batch; its sync reports EIO.
    RotationFails,
    /// The shard thread panics (a bug in the state machine or the loop).
    ShardPanics,
    /// The snapshot writer panics on the next snapshot, which is taken at once.
    SnapshotWriterPanics,
}

/// Idempotency keys that arm a fault on the shard that receives the request, before the
/// request itself is handled.
pub const KEYS: [(&str, Fault); 4] = [
    ("svault-fault:commit-fails", Fault::CommitFails),
    ("svault-fault:rotation-fails", Fault::RotationFails),
    ("svault-fault:shard-panics", Fault::ShardPanics),
    (
        "svault-fault:snapshot-writer-panics",
        Fault::SnapshotWriterPanics,
    ),
];

/// The fault a request's idempotency key arms, if any.
pub fn from_key(key: &str) -> Option<Fault> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, f)| *f)
}

/// Hooks armed on one shard that fire later than the message that armed them.
#[derive(Debug, Default)]
pub(crate) struct Armed {
    pub snapshot_writer_panics: bool,
}
