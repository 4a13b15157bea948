//! A fast hasher for value-name tables (the parser's name map, the printer's name set).
//!
//! Names are short ASCII strings and a million-node file has a million of them, so SipHash (the
//! std default) dominates parsing in unoptimized builds. This is the multiply-rotate hash rustc
//! uses for identifiers (with MurmurHash3's finalizer), seeded per table from std's random keys so that hash values differ
//! between runs.
//!
//! Deliberately not provided: resistance to deliberately colliding inputs. Like rustc with
//! source files, the reader treats a `.gir` file as trusted not to be a hash-flooding attack; a
//! flood degrades speed only (never correctness or memory safety).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};

const K: u64 = 0xf135_7aea_2e62_a9c5;

/// The hasher state.
pub(super) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finalizer: every output bit depends on every state bit, so both
        // the bucket index (low bits) and the control tag (high bits) hashbrown takes are mixed.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

impl NameHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

/// Builds [`NameHasher`]s from a random per-table seed.
#[derive(Clone)]
pub(super) struct BuildNameHasher(u64);

impl Default for BuildNameHasher {
    fn default() -> Self {
        BuildNameHasher(RandomState::new().hash_one(0x9e37_79b9_u32))
    }
}

impl BuildHasher for BuildNameHasher {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(self.0)
    }
}

/// A map keyed by names.
pub(super) type NameMap<K, V> = HashMap<K, V, BuildNameHasher>;
/// A set of names.
pub(super) type NameSet<K> = HashSet<K, BuildNameHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_consistently_and_spread() {
        let b = BuildNameHasher::default();
        assert_eq!(b.hash_one("v12"), b.hash_one("v12"));
        let mut set: NameSet<String> = NameSet::default();
        let hashes: std::collections::HashSet<u64> =
            (0..10_000).map(|i| b.hash_one(format!("v{i}"))).collect();
        assert_eq!(hashes.len(), 10_000);
        // Lengths are mixed in, so zero padding does not collide.
        assert_ne!(b.hash_one(&b"ab"[..]), b.hash_one(&b"ab\0"[..]));
        set.insert("x".into());
        assert!(set.contains("x") && !set.contains("y"));
    }
}
