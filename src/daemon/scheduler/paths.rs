//! Changed paths with their sizes, and the byte total kept as they come
//! and go: the board shows pending files and bytes after every file
//! event, and summing a map of 20,000 paths for each event made a burst
//! quadratic (a daemon filling an empty root with 10,000 files spent ~7%
//! of its CPU summing).

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::path::PathBuf;

#[derive(Debug, Default)]
pub(super) struct SizedPaths {
    sizes: BTreeMap<PathBuf, u64>,
    bytes: u64,
}

impl SizedPaths {
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The sum of the sizes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn keys(&self) -> btree_map::Keys<'_, PathBuf, u64> {
        self.sizes.keys()
    }

    /// Add `path`, or give it its latest `size`.
    pub fn insert(&mut self, path: PathBuf, size: u64) {
        if let Some(old) = self.sizes.insert(path, size) {
            self.bytes = self.bytes.saturating_sub(old);
        }
        self.bytes = self.bytes.saturating_add(size);
    }

    /// Add `path` unless it is here already (then its size stays).
    pub fn insert_if_absent(&mut self, path: PathBuf, size: u64) {
        if let btree_map::Entry::Vacant(v) = self.sizes.entry(path) {
            v.insert(size);
            self.bytes = self.bytes.saturating_add(size);
        }
    }

    pub fn clear(&mut self) {
        self.sizes.clear();
        self.bytes = 0;
    }
}

impl Extend<(PathBuf, u64)> for SizedPaths {
    fn extend<I: IntoIterator<Item = (PathBuf, u64)>>(&mut self, iter: I) {
        for (path, size) in iter {
            self.insert(path, size);
        }
    }
}

impl IntoIterator for SizedPaths {
    type Item = (PathBuf, u64);
    type IntoIter = btree_map::IntoIter<PathBuf, u64>;

    fn into_iter(self) -> Self::IntoIter {
        self.sizes.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(p: &SizedPaths) -> u64 {
        p.sizes.values().sum()
    }

    #[test]
    fn the_total_follows_inserts_updates_and_moves() {
        let mut pending = SizedPaths::default();
        pending.extend([("a".into(), 10), ("b".into(), 5)]);
        pending.insert("a".into(), 3); // the latest size wins
        pending.insert_if_absent("b".into(), 100); // already there: kept
        pending.insert_if_absent("c".into(), 7);
        assert_eq!((pending.len(), pending.bytes()), (3, 15));
        assert_eq!(pending.bytes(), sum(&pending));

        let mut inflight = SizedPaths::default();
        inflight.extend(std::mem::take(&mut pending));
        assert_eq!((pending.len(), pending.bytes()), (0, 0));
        assert_eq!(inflight.bytes(), 15);

        pending.insert("a".into(), 1);
        for (p, size) in std::mem::take(&mut inflight) {
            pending.insert_if_absent(p, size);
        }
        assert_eq!((pending.len(), pending.bytes()), (3, 13));
        assert_eq!(pending.bytes(), sum(&pending));
        pending.clear();
        assert_eq!((pending.len(), pending.bytes()), (0, 0));
    }

    #[test]
    fn sizes_a_file_name_cannot_overflow_the_total() {
        let mut p = SizedPaths::default();
        p.insert("huge".into(), u64::MAX);
        p.insert("more".into(), 1);
        assert_eq!(p.bytes(), u64::MAX);
    }
}
