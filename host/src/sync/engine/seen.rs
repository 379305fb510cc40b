//! The keys a sync has seen (directory ids, usernames), each with the index of the
//! first result that had it, kept as 64-bit hashes under a key drawn for each sync: 12
//! bytes a key whatever its length, so that a million keys cost about 26 MB with the
//! table's room, against about 100 MB as a map of strings.
//!
//! Two keys whose hashes are equal read as one. For a million keys the chance that any
//! two do is about 3 in 100 million per sync, and a new hash key is drawn for the next
//! sync: an entry would fail once as a duplicate, or a user gone from the directory
//! would stay one sync longer; nothing wrong would be written.

use foldhash::quality::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Keys, each with the index of its first result.
#[derive(Default)]
pub(crate) struct SeenKeys {
    table: HashTable<Slot>,
    hasher: RandomState,
}

/// One key: its hash, and its first result (packed: 12 bytes, not 16).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Slot {
    hash: u64,
    first: u32,
}

impl SeenKeys {
    /// Records `key` as first seen at result `index`; returns the first index when it
    /// was seen before.
    pub(crate) fn first_seen(&mut self, key: &str, index: usize) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        if let Some(slot) = self.table.find(hash, |slot| slot.hash == hash) {
            return Some(slot.first as usize);
        }
        let first = u32::try_from(index).unwrap_or(u32::MAX);
        self.table
            .insert_unique(hash, Slot { hash, first }, |slot| slot.hash);
        None
    }

    /// Whether `key` was seen.
    pub(crate) fn contains(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |slot| slot.hash == hash).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart_and_remember_their_first_index() {
        let mut seen = SeenKeys::default();
        for i in 0..100_000 {
            assert_eq!(seen.first_seen(&format!("id-{i}"), i), None);
        }
        assert_eq!(seen.first_seen("id-42", 200_000), Some(42));
        assert_eq!(seen.first_seen("", 7), None);
        assert_eq!(seen.first_seen("", 8), Some(7));
        assert!(seen.contains("id-99999"));
        assert!(!seen.contains("id-100000"));
        assert!(!seen.contains("id-"), "a prefix of a key is another key");
        assert_eq!(seen.table.len(), 100_001);
    }
}
