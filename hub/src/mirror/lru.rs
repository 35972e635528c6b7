//! Which blobs to evict: an I/O-free index of the store's blobs by last use, with pins for blobs
//! being read.
//!
//! The store keeps one [`Lru`] behind a mutex and deletes the files this index gives up. A blob
//! being written is not in it yet (it is a temporary file until verified), and a pinned one is
//! never chosen, so eviction takes neither from under a transfer.

use std::collections::HashMap;

use super::digest::Digest;

/// One blob's place in the index.
#[derive(Clone, Copy, Debug)]
struct Entry {
    size: u64,
    /// The logical time of its last use: larger is more recent.
    last_used: u64,
    /// Readers holding it.
    pins: u32,
}

/// Blobs by last use, their sizes and pins.
#[derive(Debug, Default)]
pub struct Lru {
    entries: HashMap<Digest, Entry>,
    total: u64,
    /// A logical clock: each use takes the next tick, so order never depends on a wall clock.
    clock: u64,
}

impl Lru {
    /// Record a blob as just used (a new one, or one found on disk in order of age).
    pub fn insert(&mut self, digest: Digest, size: u64) {
        self.clock += 1;
        let entry = Entry {
            size,
            last_used: self.clock,
            pins: 0,
        };
        if let Some(old) = self.entries.insert(digest, entry) {
            self.total -= old.size;
        }
        self.total += size;
    }

    /// Pin a blob for a reader and mark it used; `None` if it is not in the store.
    pub fn pin(&mut self, digest: &Digest) -> Option<u64> {
        self.clock += 1;
        let entry = self.entries.get_mut(digest)?;
        entry.pins += 1;
        entry.last_used = self.clock;
        Some(entry.size)
    }

    /// A reader is done with a blob.
    pub fn unpin(&mut self, digest: &Digest) {
        if let Some(entry) = self.entries.get_mut(digest) {
            entry.pins = entry.pins.saturating_sub(1);
        }
    }

    /// Take a blob out whatever its pins (its file is gone).
    pub fn remove(&mut self, digest: &Digest) {
        if let Some(entry) = self.entries.remove(digest) {
            self.total -= entry.size;
        }
    }

    /// Take out every blob `doomed` picks, pinned or not (a reader keeps its open file); returns
    /// them with their sizes, for the caller to delete.
    pub fn remove_where(&mut self, doomed: impl Fn(&Digest) -> bool) -> Vec<(Digest, u64)> {
        let removed: Vec<(Digest, u64)> = self
            .entries
            .iter()
            .filter(|(digest, _)| doomed(digest))
            .map(|(digest, entry)| (digest.clone(), entry.size))
            .collect();
        for (digest, _) in &removed {
            self.remove(digest);
        }
        removed
    }

    /// Bytes of all blobs in the index.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Blobs in the index.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Take unpinned blobs out, least recently used first, until the total is at most `limit`;
    /// returns them for the caller to delete. Pinned blobs stay even if the limit is not reached.
    pub fn evict_to(&mut self, limit: u64) -> Vec<Digest> {
        if self.total <= limit {
            return Vec::new();
        }
        let mut candidates: Vec<(u64, Digest)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.pins == 0)
            .map(|(d, e)| (e.last_used, d.clone()))
            .collect();
        candidates.sort_unstable();
        let mut evicted = Vec::new();
        for (_, digest) in candidates {
            if self.total <= limit {
                break;
            }
            if let Some(entry) = self.entries.remove(&digest) {
                self.total -= entry.size;
                evicted.push(digest);
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn least_recently_used_go_first() {
        let mut lru = Lru::default();
        for n in 1..=4 {
            lru.insert(d(n), 10);
        }
        lru.pin(&d(1));
        lru.unpin(&d(1)); // 1 is now the most recent
        assert_eq!(lru.evict_to(25), vec![d(2), d(3)]);
        assert_eq!((lru.total(), lru.count()), (20, 2));
        assert_eq!(lru.evict_to(10), vec![d(4)]);
        assert!(lru.evict_to(10).is_empty());
    }

    #[test]
    fn pinned_blobs_are_never_evicted() {
        let mut lru = Lru::default();
        lru.insert(d(1), 100);
        lru.insert(d(2), 100);
        assert_eq!(lru.pin(&d(1)), Some(100));
        assert_eq!(lru.evict_to(0), vec![d(2)]);
        assert_eq!(lru.total(), 100);
        lru.unpin(&d(1));
        assert_eq!(lru.evict_to(0), vec![d(1)]);
        assert_eq!(lru.pin(&d(1)), None);
    }

    #[test]
    fn reinserting_does_not_count_twice() {
        let mut lru = Lru::default();
        lru.insert(d(1), 100);
        lru.insert(d(1), 100);
        assert_eq!((lru.total(), lru.count()), (100, 1));
    }
}
