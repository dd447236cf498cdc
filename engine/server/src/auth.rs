//! API keys: who may call, and which programs they may touch.
//!
//! Why a plain file: operators rotate keys by editing it and restarting; no key store to run.
//! Format (documented in README): one key per line, `KEY ROLE [PROGRAMS]`, where ROLE is
//! `admin` or `gateway` and PROGRAMS is a comma-separated list (gateway keys only).
//! Blank lines and lines starting with `#` are ignored.
//!
//! ```text
//! # admin can do everything, gateways only their programs' cards
//! s3cr3t-admin-key admin
//! coffee-gw-key gateway demo,coffee
//! ```

use runtime::Scope;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use svault_core::command::CallerId;

/// What a key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything, including programs and grants.
    Admin,
    /// Gateway calls on the cards of the listed programs only.
    Gateway(Arc<[String]>),
}

/// The authenticated caller of one request or connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// Whose idempotency keys these are: the API key's id ([`CallerId::of_api_key`]), or the
    /// one default caller when auth is off.
    pub id: CallerId,
}

impl Caller {
    /// The caller when auth is off (loopback only): full rights, the one default caller.
    pub fn unrestricted() -> Caller {
        Caller {
            role: Role::Admin,
            id: CallerId::DEFAULT,
        }
    }
    /// `true` for admin keys (programs, grants, every program's cards).
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Admin)
    }
    /// The engine's view of the caller's rights.
    pub fn scope(&self) -> Scope {
        match &self.role {
            Role::Admin => Scope::All,
            Role::Gateway(programs) => Scope::Programs(programs.clone()),
        }
    }
    /// `true` when the caller may touch cards of `program`.
    pub fn may_use_program(&self, program: &str) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Gateway(programs) => programs.iter().any(|p| p == program),
        }
    }
}

/// Why a key file was refused (start-up fails with the line number).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("key file has no keys")]
    Empty,
}

/// Longest accepted key, in bytes.
pub const KEY_LEN_MAX: usize = 256;

/// The keys loaded from `--api-keys`.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: HashMap<String, Caller>,
}

impl ApiKeys {
    /// Reads and parses a key file.
    pub fn load(path: &Path) -> Result<ApiKeys, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        ApiKeys::parse(&text)
    }

    /// Parses the text of a key file (see the module docs).
    pub fn parse(text: &str) -> Result<ApiKeys, KeyFileError> {
        let mut keys = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let err = |reason: &str| KeyFileError::Line {
                line,
                reason: reason.to_string(),
            };
            let mut parts = l.split_whitespace();
            let key = parts.next().ok_or_else(|| err("missing key"))?;
            if key.len() > KEY_LEN_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err("a key is 1-256 visible ASCII characters"));
            }
            let role = match (parts.next(), parts.next()) {
                (Some("admin"), None) => Role::Admin,
                (Some("gateway"), Some(list)) => {
                    let programs: Vec<String> = list
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect();
                    if programs.is_empty() {
                        return Err(err("a gateway key lists at least one program"));
                    }
                    Role::Gateway(programs.into())
                }
                (Some("gateway"), None) => return Err(err("a gateway key lists its programs")),
                _ => return Err(err("expected `KEY admin` or `KEY gateway prog1,prog2`")),
            };
            if parts.next().is_some() {
                return Err(err("trailing words"));
            }
            let caller = Caller {
                role,
                id: CallerId::of_api_key(key),
            };
            if keys.insert(key.to_string(), caller).is_some() {
                return Err(err("duplicate key"));
            }
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(ApiKeys { keys })
    }

    /// The caller holding `key`, if it is known.
    pub fn lookup(&self, key: &str) -> Option<&Caller> {
        self.keys.get(key)
    }
}

/// Authentication of a request: keys off ⇒ everyone is admin; keys on ⇒ a known key.
#[derive(Debug, Clone)]
pub enum Auth {
    Off,
    Keys(Arc<ApiKeys>),
}

/// Why a caller was refused (`401`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
}

impl Auth {
    /// Checks a presented key (`None` when the caller sent none).
    pub fn check(&self, key: Option<&str>) -> Result<Caller, AuthError> {
        match self {
            Auth::Off => Ok(Caller::unrestricted()),
            Auth::Keys(keys) => {
                let key = key.ok_or(AuthError::Missing)?;
                keys.lookup(key).cloned().ok_or(AuthError::Unknown)
            }
        }
    }
    /// `true` when keys are configured.
    pub fn is_on(&self) -> bool {
        matches!(self, Auth::Keys(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_and_refuses_bad_lines() {
        let keys = ApiKeys::parse("# c\n\nk1 admin\nk2 gateway demo,coffee\n").unwrap();
        assert!(keys.lookup("k1").unwrap().is_admin());
        let gw = keys.lookup("k2").unwrap();
        assert!(!gw.is_admin());
        assert!(gw.may_use_program("coffee"));
        assert!(!gw.may_use_program("gym"));
        assert!(keys.lookup("k3").is_none());
        assert!(ApiKeys::parse("k1 root").is_err());
        assert!(ApiKeys::parse("k1 gateway").is_err());
        assert!(ApiKeys::parse("k1 admin\nk1 admin").is_err());
        assert!(ApiKeys::parse("k1 admin extra").is_err());
        assert!(ApiKeys::parse("# only comments\n").is_err());
    }

    #[test]
    fn auth_off_is_admin_and_on_needs_a_known_key() {
        assert!(Auth::Off.check(None).unwrap().is_admin());
        let on = Auth::Keys(Arc::new(ApiKeys::parse("k1 admin").unwrap()));
        assert_eq!(on.check(None).unwrap_err(), AuthError::Missing);
        assert_eq!(on.check(Some("nope")).unwrap_err(), AuthError::Unknown);
        assert!(on.check(Some("k1")).is_ok());
    }
}
