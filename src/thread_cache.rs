//! The per-thread caches of the request path (opened cookie sessions,
//! verified bearer tokens, identity header values) are plain maps bounded
//! the same way: when one is full it starts over, with no LRU bookkeeping
//! on the hot path (a miss only costs the work the cache saves).

use std::collections::HashMap;
use std::hash::Hash;

/// Inserts into `map`, emptying it first when it holds `capacity` entries.
pub fn insert_bounded<K: Eq + Hash, V>(map: &mut HashMap<K, V>, capacity: usize, key: K, value: V) {
    if map.len() >= capacity {
        map.clear();
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
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
