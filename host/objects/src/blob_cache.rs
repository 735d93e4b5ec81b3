//! An LRU of small, verified blobs kept in memory (`storage.max_cache_size`).
//!
//! Only whole blobs that were read and verified end to end enter it, so a
//! hit is as good as a verified read; quarantine evicts.

use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

use strata_store::Digest;

/// Larger blobs are streamed from disk every time.
const MAX_ITEM: u64 = 1 << 20;

pub struct BlobCache {
    capacity: u64,
    inner: Mutex<(LruCache<Digest, Bytes>, u64)>,
}

impl BlobCache {
    pub fn new(capacity: u64) -> Self {
        Self { capacity, inner: Mutex::new((LruCache::unbounded(), 0)) }
    }

    /// Whether a blob of this size would be cached.
    pub fn wants(&self, size: u64) -> bool {
        size <= MAX_ITEM.min(self.capacity)
    }

    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        self.inner.lock().expect("blob cache lock").0.get(digest).cloned()
    }

    pub fn put(&self, digest: Digest, data: Bytes) {
        if !self.wants(data.len() as u64) {
            return;
        }
        let mut g = self.inner.lock().expect("blob cache lock");
        let (lru, used) = &mut *g;
        if let Some(old) = lru.put(digest, data.clone()) {
            *used -= old.len() as u64;
        }
        *used += data.len() as u64;
        while *used > self.capacity {
            match lru.pop_lru() {
                Some((_, v)) => *used -= v.len() as u64,
                None => break,
            }
        }
    }

    pub fn remove(&self, digest: &Digest) {
        let mut g = self.inner.lock().expect("blob cache lock");
        if let Some(v) = g.0.pop(digest) {
            g.1 -= v.len() as u64;
        }
    }
}
