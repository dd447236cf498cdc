//! The stores a shard's spends and holds named, each kept once.
//!
//! Why a table: the history line of a spend names its store for reconciliation, and a history
//! entry is a fixed 64 bytes; it holds the store's index here instead of the name. Stores are
//! added in apply order (approved spends and holds only), so replay builds the same table; it
//! is part of the snapshot and the digest. Bounded: past [`STORES_MAX`] distinct stores in a
//! shard, later new stores are not recorded (their history lines show no store); the limit is
//! far above the store count of any brand.

use std::collections::HashMap;
use std::sync::Arc;

/// Most distinct stores a shard records.
pub(crate) const STORES_MAX: usize = 1 << 20;

/// Store names by index, and the index of each name.
#[derive(Default, Clone)]
pub(crate) struct Stores {
    names: Vec<Arc<str>>,
    /// Looked up only, never iterated: the hasher's seed never reaches an output.
    index: HashMap<Arc<str>, u32>,
}

impl Stores {
    /// The `refers_to` value of a spend or hold at `store`: its index + 1, or 0 for none (no
    /// store, or the table is full).
    pub fn slot_of(&mut self, store: Option<&str>) -> u32 {
        let Some(s) = store else { return 0 };
        if let Some(&i) = self.index.get(s) {
            return i + 1;
        }
        if self.names.len() >= STORES_MAX {
            return 0;
        }
        let i = self.names.len() as u32;
        let name: Arc<str> = s.into();
        self.names.push(name.clone());
        self.index.insert(name, i);
        i + 1
    }

    /// The store at index `i`.
    pub fn get(&self, i: u32) -> Option<&Arc<str>> {
        self.names.get(i as usize)
    }

    /// All names, in index order (the snapshot form).
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.names.iter()
    }

    /// Rebuilds the table from its snapshot form; `None` if a name repeats or there are too many.
    pub fn from_names(names: Vec<String>) -> Option<Stores> {
        if names.len() > STORES_MAX {
            return None;
        }
        let mut st = Stores::default();
        for n in names {
            let name: Arc<str> = n.into();
            let i = st.names.len() as u32;
            if st.index.insert(name.clone(), i).is_some() {
                return None;
            }
            st.names.push(name);
        }
        Some(st)
    }

    /// Approximate heap bytes.
    pub fn bytes(&self) -> usize {
        self.names.iter().map(|n| n.len() + 16 + 48).sum()
    }
}
