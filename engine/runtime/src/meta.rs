//! The data directory's `meta` file: the facts that must never change for a directory, because
//! the log only means what it means under them: the number of shards (the router's card →
//! shard mapping depends on it) and the state config (idempotency key TTL and cap, history
//! limit: they change what `State::apply` answers, so replay must use the ones the live engine
//! used).
//!
//! Format (text, one `key=value` per line): `format=2`, `shards=N`,
//! `state.idempotency_ttl_ms=MS`, `state.idempotency_keys_max=N`,
//! `state.history_per_card_max=N`. `format=1` (written before the state config was recorded)
//! has only `shards`; it reads as `state: None` and is rewritten as `format=2` with today's
//! defaults when the engine opens it. Written atomically: temp file, fsync, rename, fsync of
//! the directory.

use std::fs;
use std::io::Write;
use std::path::Path;
use svault_core::state::StateConfig;

/// File name inside the data directory.
pub const META_FILE: &str = "meta";
/// Most shards a directory may have (each is an OS thread and a log).
pub const SHARDS_MAX: usize = 256;

/// What `meta` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub shards: usize,
    /// `None`: a `format=1` directory, written before the state config was recorded (it ran
    /// with the defaults of [`StateConfig`], the only ones the server could run with).
    pub state: Option<StateConfig>,
}

/// Why `meta` could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
}

/// Reads `dir/meta`; `Ok(None)` when the file does not exist (a new directory).
pub fn read(dir: &Path) -> Result<Option<Meta>, MetaError> {
    let path = dir.join(META_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MetaError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let malformed = |reason: &str| MetaError::Malformed {
        path: path.display().to_string(),
        reason: reason.into(),
    };
    let mut format = None;
    let mut shards = None;
    let (mut ttl, mut keys_max, mut history_max) = (None, None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| malformed("line without '='"))?;
        let (k, v) = (k.trim(), v.trim());
        let number = |what: &str| {
            v.parse::<u64>()
                .map_err(|_| malformed(&format!("{what} is not a number")))
        };
        match k {
            "format" => format = Some(v.to_string()),
            "shards" => shards = Some(number(k)?),
            "state.idempotency_ttl_ms" => ttl = Some(number(k)?),
            "state.idempotency_keys_max" => keys_max = Some(number(k)?),
            "state.history_per_card_max" => history_max = Some(number(k)?),
            _ => return Err(malformed(&format!("unknown key {k:?}"))),
        }
    }
    let shards = shards.ok_or_else(|| malformed("shards missing"))?;
    if shards == 0 || shards > SHARDS_MAX as u64 {
        return Err(malformed("shards out of range"));
    }
    let state = match (format.as_deref(), ttl, keys_max, history_max) {
        (Some("1"), None, None, None) => None,
        (Some("2"), Some(ttl), Some(keys), Some(history)) => {
            let ttl = i64::try_from(ttl)
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| malformed("state.idempotency_ttl_ms out of range"))?;
            let int = |n: u64, what: &str| {
                usize::try_from(n)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| malformed(&format!("{what} out of range")))
            };
            Some(StateConfig {
                idempotency_ttl_ms: ttl,
                idempotency_keys_max: int(keys, "state.idempotency_keys_max")?,
                history_per_card_max: int(history, "state.history_per_card_max")?,
            })
        }
        (Some("1"), ..) => return Err(malformed("format 1 has no state keys")),
        (Some("2"), ..) => return Err(malformed("format 2 needs every state key")),
        _ => return Err(malformed("format is not 1 or 2")),
    };
    Ok(Some(Meta {
        shards: shards as usize,
        state,
    }))
}

/// The settings of `state` that differ from `stored`, as `name: stored → asked` (empty when
/// they agree): for the error that refuses to open a directory with other ones.
pub fn state_differences(stored: &StateConfig, asked: &StateConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, a: u64, b: u64| {
        if a != b {
            out.push(format!("{name}: {a} in meta, {b} asked"));
        }
    };
    cmp(
        "idempotency_ttl_ms",
        stored.idempotency_ttl_ms as u64,
        asked.idempotency_ttl_ms as u64,
    );
    cmp(
        "idempotency_keys_max",
        stored.idempotency_keys_max as u64,
        asked.idempotency_keys_max as u64,
    );
    cmp(
        "history_per_card_max",
        stored.history_per_card_max as u64,
        asked.history_per_card_max as u64,
    );
    out
}

/// Writes `dir/meta` atomically and durably (always `format=2`; `state: None` writes the
/// defaults, which is what a `format=1` directory ran with).
pub fn write(dir: &Path, meta: &Meta) -> Result<(), MetaError> {
    let path = dir.join(META_FILE);
    let tmp = dir.join("meta.tmp");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| MetaError::Io { path: p, source }
    };
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    let st = meta.state.clone().unwrap_or_default();
    let text = format!(
        "format=2\nshards={}\nstate.idempotency_ttl_ms={}\nstate.idempotency_keys_max={}\nstate.history_per_card_max={}\n",
        meta.shards, st.idempotency_ttl_ms, st.idempotency_keys_max, st.history_per_card_max
    );
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let state = StateConfig {
            idempotency_ttl_ms: 5_000,
            idempotency_keys_max: 77,
            history_per_card_max: 9,
        };
        let meta = Meta {
            shards: 3,
            state: Some(state.clone()),
        };
        write(dir.path(), &meta).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(meta));
        let text = fs::read_to_string(dir.path().join(META_FILE)).unwrap();
        assert!(text.contains("state.history_per_card_max=9"), "{text}");
        assert_eq!(
            state_differences(&state, &StateConfig::default()).len(),
            3,
            "every setting named"
        );
        assert!(state_differences(&state, &state).is_empty());
    }

    #[test]
    fn reads_format_1_without_state() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(META_FILE), "format=1\nshards=2\n").unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            Some(Meta {
                shards: 2,
                state: None
            })
        );
    }

    #[test]
    fn refuses_malformed() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "shards=2\n",
            "format=1\nshards=0\n",
            "format=1\nshards=x\n",
            "format=1\nfoo=1\nshards=2\n",
            "format=2\nshards=2\n",
            "format=1\nshards=2\nstate.idempotency_ttl_ms=5\n",
            "format=2\nshards=2\nstate.idempotency_ttl_ms=0\nstate.idempotency_keys_max=1\nstate.history_per_card_max=1\n",
            "format=3\nshards=2\n",
            "junk",
        ] {
            fs::write(dir.path().join(META_FILE), bad).unwrap();
            assert!(read(dir.path()).is_err(), "{bad:?} accepted");
        }
    }
}
