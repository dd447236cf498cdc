//! The data directory's `meta` file: the layout facts that must never change for a directory
//! (today: the number of shards, since the router's card → shard mapping depends on it).
//!
//! Format (text, one `key=value` per line): `format=1`, `shards=N`. Written atomically:
//! temp file, fsync, rename, fsync of the directory.

use std::fs;
use std::io::Write;
use std::path::Path;

/// File name inside the data directory.
pub const META_FILE: &str = "meta";
/// Most shards a directory may have (each is an OS thread and a log).
pub const SHARDS_MAX: usize = 256;

/// What `meta` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub shards: usize,
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
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| malformed("line without '='"))?;
        match k.trim() {
            "format" => format = Some(v.trim().to_string()),
            "shards" => {
                shards = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| malformed("shards is not a number"))?,
                )
            }
            _ => return Err(malformed(&format!("unknown key {k:?}"))),
        }
    }
    if format.as_deref() != Some("1") {
        return Err(malformed("format is not 1"));
    }
    let shards = shards.ok_or_else(|| malformed("shards missing"))?;
    if shards == 0 || shards > SHARDS_MAX {
        return Err(malformed("shards out of range"));
    }
    Ok(Some(Meta { shards }))
}

/// Writes `dir/meta` atomically and durably.
pub fn write(dir: &Path, meta: Meta) -> Result<(), MetaError> {
    let path = dir.join(META_FILE);
    let tmp = dir.join("meta.tmp");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| MetaError::Io { path: p, source }
    };
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(format!("format=1\nshards={}\n", meta.shards).as_bytes())
        .map_err(io(&tmp))?;
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
        write(dir.path(), Meta { shards: 3 }).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(Meta { shards: 3 }));
    }

    #[test]
    fn refuses_malformed() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "shards=2\n",
            "format=1\nshards=0\n",
            "format=1\nshards=x\n",
            "format=1\nfoo=1\nshards=2\n",
            "junk",
        ] {
            fs::write(dir.path().join(META_FILE), bad).unwrap();
            assert!(read(dir.path()).is_err(), "{bad:?} accepted");
        }
    }
}
