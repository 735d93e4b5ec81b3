//! One backup or prune per target at a time.
//!
//! A prune that ran beside a backup could delete a blob the backup found
//! present and did not send. The lock is an object created only if absent,
//! renewed while held; one not renewed for [`STALE`] (its holder died) is
//! taken over.

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{RemoteError, Target, now_ms, transfer};

const RENEW: Duration = Duration::from_secs(60);
pub const STALE: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize)]
struct Held {
    holder: String,
    renewed_ms: u64,
}

pub struct TargetLock {
    target: Target,
    path: Path,
    renew: JoinHandle<()>,
}

impl TargetLock {
    /// Takes the lock for `holder` (shown to whoever finds it taken).
    pub async fn take(t: &Target, holder: &str) -> Result<Self, RemoteError> {
        let path = t.path("lock");
        let body = |holder: &str| Bytes::from(serde_json::to_vec(&Held { holder: holder.into(), renewed_ms: now_ms() }).expect("json"));
        if !transfer::put_new(t, &path, body(holder)).await? {
            let found = match t.store.get(&path).await {
                Ok(g) => g.bytes().await.map_err(RemoteError::at(t))?,
                Err(object_store::Error::NotFound { .. }) => return Box::pin(Self::take(t, holder)).await,
                Err(e) => return Err(RemoteError::at(t)(e)),
            };
            let held: Held = serde_json::from_slice(&found).unwrap_or(Held { holder: "an unreadable lock".into(), renewed_ms: 0 });
            let age = Duration::from_millis(now_ms().saturating_sub(held.renewed_ms));
            if age < STALE {
                return Err(RemoteError::Locked {
                    target: t.to_string(),
                    holder: held.holder,
                    age_s: age.as_secs(),
                    stale_s: STALE.as_secs(),
                });
            }
            warn!(target = %t, holder = %held.holder, age_s = age.as_secs(), "taking over a stale lock");
            t.store.put(&path, PutPayload::from_bytes(body(holder))).await.map_err(RemoteError::at(t))?;
        }
        let (t2, p2, h2) = (t.clone(), path.clone(), holder.to_string());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW).await;
                if let Err(e) = t2.store.put(&p2, PutPayload::from_bytes(body(&h2))).await {
                    warn!(target = %t2, error = %e, "could not renew the lock");
                }
            }
        });
        Ok(Self { target: t.clone(), path, renew })
    }

    pub async fn release(self) {
        self.renew.abort();
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
