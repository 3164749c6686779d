//! Per-endpoint request counters, shared by the mock providers: tests ask
//! "how many token requests did the provider see?".

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Hits {
    names: &'static [&'static str],
    counts: Box<[AtomicUsize]>,
}

impl Hits {
    /// Counters for these endpoint names, all at zero.
    pub fn new(names: &'static [&'static str]) -> Hits {
        Hits {
            names,
            counts: names.iter().map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn slot(&self, name: &str) -> &AtomicUsize {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no endpoint counter {name:?} (have {:?})", self.names));
        &self.counts[i]
    }

    /// One more request at `name`.
    pub fn hit(&self, name: &str) {
        self.slot(name).fetch_add(1, Ordering::SeqCst);
    }

    /// Requests seen at `name` so far.
    pub fn get(&self, name: &str) -> usize {
        self.slot(name).load(Ordering::SeqCst)
    }
}
