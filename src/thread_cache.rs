//! The per-thread caches of the request path (opened cookie sessions,
//! verified bearer tokens, identity header values) are plain maps bounded
//! the same way: when one is full it starts over, with no LRU bookkeeping
//! on the hot path (a miss only costs the work the cache saves).

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

/// Inserts into `map`, emptying it first when it holds `capacity` entries.
pub fn insert_bounded<K: Eq + Hash, V, S: BuildHasher>(
    map: &mut HashMap<K, V, S>,
    capacity: usize,
    key: K,
    value: V,
) {
    if map.len() >= capacity {
        map.clear();
    }
    map.insert(key, value);
}

/// For maps keyed by a sealed cookie or a signed token: the keyed std
/// hasher over the key's last [`TAIL`] bytes only (the end of the
/// ciphertext and its tag, or the signature, which differ between any two
/// such values), instead of over all of its few hundred bytes on every
/// request. Keys that share a tail still compare whole; and only values
/// that opened or verified are ever stored, which an attacker cannot mint
/// with a chosen tail.
#[derive(Default, Clone)]
pub struct TailHash(RandomState);

/// How many trailing bytes of a key [`TailHash`] hashes.
pub const TAIL: usize = 32;

impl BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub struct TailHasher(DefaultHasher);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let from = bytes.len().saturating_sub(TAIL);
        self.0.write(bytes.get(from..).unwrap_or_default());
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    #[test]
    fn tail_hash_reads_only_the_tail() {
        let s = super::TailHash::default();
        let tail = "t".repeat(super::TAIL);
        // Same tail: same hash, whatever comes before it.
        assert_eq!(
            s.hash_one(format!("aaaa{tail}")),
            s.hash_one(format!("bbbbbbbb{tail}"))
        );
        // A different byte within the tail: another hash.
        let other = format!("aaaa{}u", "t".repeat(super::TAIL - 1));
        assert_ne!(s.hash_one(format!("aaaa{tail}")), s.hash_one(other));
        // Keys still compare whole.
        let mut m = std::collections::HashMap::with_hasher(s);
        m.insert(format!("a{tail}"), 1);
        m.insert(format!("b{tail}"), 2);
        assert_eq!(m.get(&format!("a{tail}")), Some(&1));
        assert_eq!(m.get(&format!("b{tail}")), Some(&2));
        assert_eq!(m.get(&format!("c{tail}")), None);
    }

    #[test]
    fn starts_over_when_full() {
        let mut m = std::collections::HashMap::new();
        for i in 0..3 {
            super::insert_bounded(&mut m, 3, i, i);
        }
        assert_eq!(m.len(), 3);
        super::insert_bounded(&mut m, 3, 9, 9);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&9), Some(&9));
    }
}
