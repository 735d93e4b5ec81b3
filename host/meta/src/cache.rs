//! An LRU cache of each key's live version (or its absence).
//!
//! A reader that misses takes a ticket (the cache's generation), reads the
//! database, and fills the cache only if no write invalidated anything in
//! between; otherwise a reader racing a writer could put back the value the
//! writer just replaced.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;

use super::ObjectRecord;

type Entry = Option<ObjectRecord>;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub capacity: u64,
}

impl CacheStats {
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 { 0.0 } else { self.hits as f64 / total as f64 }
    }
}

pub struct MetaCache {
    inner: Option<Mutex<Inner>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Inner {
    lru: LruCache<(String, String), Entry>,
    generation: u64,
}

/// Proof of when a miss started; see the module docs.
pub struct Ticket(u64);

impl MetaCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(capacity).map(|c| Mutex::new(Inner { lru: LruCache::new(c), generation: 0 })),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Entry, Ticket> {
        let Some(inner) = &self.inner else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Err(Ticket(0));
        };
        let mut inner = inner.lock().expect("cache lock");
        // Borrowed lookups would need a custom key type; keys are short.
        match inner.lru.get(&(bucket.to_owned(), key.to_owned())) {
            Some(e) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(e.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(Ticket(inner.generation))
            }
        }
    }

    pub fn fill(&self, ticket: Ticket, bucket: &str, key: &str, entry: Entry) {
        if let Some(inner) = &self.inner {
            let mut inner = inner.lock().expect("cache lock");
            if inner.generation == ticket.0 {
                inner.lru.put((bucket.to_owned(), key.to_owned()), entry);
            }
        }
    }

    pub fn invalidate(&self, bucket: &str, key: &str) {
        if let Some(inner) = &self.inner {
            let mut inner = inner.lock().expect("cache lock");
            inner.generation += 1;
            inner.lru.pop(&(bucket.to_owned(), key.to_owned()));
        }
    }

    pub fn clear(&self) {
        if let Some(inner) = &self.inner {
            let mut inner = inner.lock().expect("cache lock");
            inner.generation += 1;
            inner.lru.clear();
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.inner.as_ref().map_or(0, |i| i.lock().expect("cache lock").lru.len() as u64),
            capacity: self.capacity as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_after_an_invalidation_is_dropped() {
        let c = MetaCache::new(4);
        let ticket = c.get("b", "k").unwrap_err();
        c.invalidate("b", "k");
        c.fill(ticket, "b", "k", None);
        assert!(c.get("b", "k").is_err(), "stale fill must not land");
        let ticket = c.get("b", "k").unwrap_err();
        c.fill(ticket, "b", "k", None);
        assert_eq!(c.get("b", "k").ok(), Some(None));
        assert_eq!(c.stats().hits, 1);
    }
}
