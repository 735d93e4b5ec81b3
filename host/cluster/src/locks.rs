//! Named locks with leases, decided by the replicated state.
//!
//! Every rule reads only the entry (its log index and the leader's time in
//! it) and the state before it, so every replica reaches the same answer.
//! A grant's fencing token is the log index of the entry that made it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::LockGrant;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Locks {
    grants: BTreeMap<String, LockGrant>,
}

/// What a lock command did: the grant it concerns, or why it did nothing.
pub type Outcome = (Option<LockGrant>, Option<String>);

impl Locks {
    /// The grant of `name`, if one is live at log time `now`.
    pub fn live(&self, name: &str, now: u64) -> Option<&LockGrant> {
        self.grants.get(name).filter(|g| g.expires_ms > now)
    }

    pub fn get(&self, name: &str) -> Option<&LockGrant> {
        self.grants.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &LockGrant> {
        self.grants.values()
    }

    pub fn lock(&mut self, name: &str, holder: &str, request: u64, ttl_ms: u64, index: u64, now: u64) -> Outcome {
        // Leases that ran out an hour ago are forgotten, so abandoned
        // names do not pile up (judged by log time: every replica alike).
        if self.grants.len() > 1024 {
            self.grants.retain(|_, g| g.expires_ms + 3_600_000 > now);
        }
        if let Some(g) = self.live(name, now) {
            let left = g.expires_ms - now;
            return (Some(g.clone()), Some(format!("held by {} (token {}) for another {left} ms", g.holder, g.token)));
        }
        let g = LockGrant { name: name.into(), holder: holder.into(), token: index, expires_ms: now + ttl_ms, request };
        self.grants.insert(name.into(), g.clone());
        (Some(g), None)
    }

    pub fn renew(&mut self, name: &str, token: u64, ttl_ms: u64, now: u64) -> Outcome {
        match self.grants.get_mut(name) {
            Some(g) if g.token == token && g.expires_ms > now => {
                g.expires_ms = now + ttl_ms;
                (Some(g.clone()), None)
            }
            Some(g) if g.token == token => (Some(g.clone()), Some("the lease ran out; acquire the lock again".into())),
            other => (other.map(|g| g.clone()), Some(format!("token {token} does not hold {name}"))),
        }
    }

    pub fn unlock(&mut self, name: &str, token: u64) -> Outcome {
        match self.grants.get(name) {
            Some(g) if g.token == token => (self.grants.remove(name), None),
            other => (other.cloned(), Some(format!("token {token} does not hold {name}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_until_release_or_expiry_and_tokens_grow() {
        let mut l = Locks::default();
        let (g, e) = l.lock("a", "x", 1, 100, 5, 1000);
        assert_eq!((g.unwrap().token, e), (5, None));
        // Held: someone else is refused, even the same holder.
        assert!(l.lock("a", "y", 2, 100, 6, 1050).1.is_some());
        assert!(l.lock("a", "x", 3, 100, 7, 1099).1.is_some());
        // Renew moves the lease; a wrong token cannot.
        assert!(l.renew("a", 6, 100, 1099).1.is_some());
        assert_eq!(l.renew("a", 5, 100, 1099).0.unwrap().expires_ms, 1199);
        assert!(l.lock("a", "y", 4, 100, 8, 1150).1.is_some());
        // Expired: the next grant gets the newer index.
        let (g, e) = l.lock("a", "y", 5, 100, 9, 1199);
        assert_eq!((g.unwrap().token, e), (9, None));
        assert!(l.renew("a", 5, 100, 1200).1.is_some(), "the old holder lost it");
        assert!(l.unlock("a", 5).1.is_some());
        assert_eq!(l.unlock("a", 9).1, None);
        assert_eq!(l.lock("a", "z", 6, 100, 10, 1201).0.unwrap().token, 10);
    }
}
