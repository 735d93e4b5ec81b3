//! One backup or prune per target at a time.
//!
//! A prune that ran beside a backup could delete a blob the backup found
//! present and did not send. The lock is an object created only if absent,
//! renewed while held; one not renewed for [`STALE`] (its holder died) is
//! taken over, by one taker only (a create-only marker per stale lock).

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{RemoteError, Target, now_ms, transfer};

const RENEW: Duration = Duration::from_secs(15);
pub const STALE: Duration = Duration::from_secs(120);

#[derive(Serialize, Deserialize)]
struct Held {
    holder: String,
    /// Who holds it: a take-over changes it, which the holder finds out
    /// before it commits anything ([`TargetLock::check`]).
    #[serde(default)]
    token: String,
    renewed_ms: u64,
}

pub struct TargetLock {
    target: Target,
    path: Path,
    token: String,
    renew: JoinHandle<()>,
}

async fn read(t: &Target, path: &Path) -> Result<Option<Held>, RemoteError> {
    match t.store.get(path).await {
        Ok(g) => {
            let bytes = g.bytes().await.map_err(RemoteError::at(t))?;
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Held {
                holder: "an unreadable lock".into(),
                token: String::new(),
                renewed_ms: 0,
            })))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(RemoteError::at(t)(e)),
    }
}

impl TargetLock {
    /// Takes the lock for `holder` (shown to whoever finds it taken).
    pub async fn take(t: &Target, holder: &str) -> Result<Self, RemoteError> {
        let path = t.path("lock");
        let token = format!("{:016x}", rand::random::<u64>());
        let body = move |holder: &str, token: &str| {
            Bytes::from(serde_json::to_vec(&Held { holder: holder.into(), token: token.into(), renewed_ms: now_ms() }).expect("json"))
        };
        while !transfer::put_new(t, &path, body(holder, &token)).await? {
            let Some(held) = read(t, &path).await? else { continue };
            let age = Duration::from_millis(now_ms().saturating_sub(held.renewed_ms));
            if age < STALE {
                return Err(RemoteError::Locked {
                    target: t.to_string(),
                    holder: held.holder,
                    age_s: age.as_secs(),
                    stale_s: STALE.as_secs(),
                });
            }
            // One taker per stale lock: whoever creates the marker of this
            // lock (its token and last renewal) takes it over; the others
            // find it held. Markers stay, so a taker that read the stale
            // lock late cannot take over the new holder's.
            let marker = t.path(&format!("lock-takeovers/{}-{}", held.token, held.renewed_ms));
            if !transfer::put_new(t, &marker, Bytes::from(token.clone())).await? {
                return Err(RemoteError::Locked {
                    target: t.to_string(),
                    holder: format!("a run taking over the stale lock of {}", held.holder),
                    age_s: 0,
                    stale_s: STALE.as_secs(),
                });
            }
            warn!(target = %t, holder = %held.holder, age_s = age.as_secs(), "taking over a stale lock");
            t.store.put(&path, PutPayload::from_bytes(body(holder, &token))).await.map_err(RemoteError::at(t))?;
            break;
        }
        let (t2, p2, h2, k2) = (t.clone(), path.clone(), holder.to_string(), token.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW).await;
                // Renew only what is still ours; a lost lock stays lost.
                match read(&t2, &p2).await {
                    Ok(Some(h)) if h.token == k2 => {}
                    Ok(_) => {
                        warn!(target = %t2, "the lock was taken over; this run will fail before it commits");
                        return;
                    }
                    Err(e) => {
                        warn!(target = %t2, error = %e, "could not renew the lock");
                        continue;
                    }
                }
                if let Err(e) = t2.store.put(&p2, PutPayload::from_bytes(body(&h2, &k2))).await {
                    warn!(target = %t2, error = %e, "could not renew the lock");
                }
            }
        });
        Ok(Self { target: t.clone(), path, token, renew })
    }

    /// Fails unless the lock is still this holder's: call right before
    /// committing (a manifest, a deletion), so a run whose lock went stale
    /// and was taken over does not commit beside the new holder.
    pub async fn check(&self) -> Result<(), RemoteError> {
        match read(&self.target, &self.path).await? {
            Some(h) if h.token == self.token => Ok(()),
            other => Err(RemoteError::LockLost {
                target: self.target.to_string(),
                holder: other.map_or_else(|| "nobody".to_string(), |h| h.holder),
            }),
        }
    }

    pub async fn release(self) {
        self.renew.abort();
        // Only our own lock is removed.
        if self.check().await.is_err() {
            return;
        }
        if let Err(e) = self.target.store.delete(&self.path).await {
            warn!(target = %self.target, error = %e, "could not release the lock; it goes stale by itself");
        }
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TargetSpec;

    #[tokio::test]
    async fn one_taker_wins_a_stale_lock() {
        let dir = tempfile::tempdir().unwrap();
        let spec: TargetSpec = serde_json::from_value(serde_json::json!({ "url": format!("file://{}", dir.path().display()) })).unwrap();
        let t = Target::open(&spec).unwrap();
        for round in 0..5 {
            let stale = Held { holder: "a run that died".into(), token: format!("{round:02}"), renewed_ms: 1000 };
            t.store.put(&t.path("lock"), PutPayload::from(serde_json::to_vec(&stale).unwrap())).await.unwrap();
            let takes = (0..8).map(|i| {
                let t = t.clone();
                async move { TargetLock::take(&t, &format!("run {i}")).await }
            });
            let won: Vec<TargetLock> = futures::future::join_all(takes).await.into_iter().filter_map(Result::ok).collect();
            assert_eq!(won.len(), 1, "round {round}: one taker holds the lock");
            won[0].check().await.unwrap();
            for l in won {
                l.release().await;
            }
        }
    }
}
