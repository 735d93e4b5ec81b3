//! Deletes on a cluster. Deleting a key leaves a delete marker, minted here
//! like any version and recorded on every node that holds the key or is
//! meant to (queued for those out of reach), so it wins over the versions
//! it hides wherever they are. Removing one version for good reaches the
//! replicas that hold it and answer.

use std::sync::Arc;

use tracing::warn;

use super::wire::{Lookup, VersionHeader};
use super::{ReplicationError, Replicator, plan};
use strata_meta::{Deleted, MetaError};
use strata_objects::ObjectError;

impl Replicator {
    pub async fn delete(self: &Arc<Self>, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, ReplicationError> {
        self.require_bucket(bucket).await?;
        let (members, _) = plan::members(&self.cluster);
        let q = Lookup { heads: version.is_none(), ..Lookup::new(bucket, key, version) };
        let views = self.views_of(&members, &q).await?;
        let missing = || -> ReplicationError {
            ObjectError::from(match version {
                Some(v) => MetaError::NoSuchVersion { bucket: bucket.into(), key: key.into(), version: v.into() },
                None => MetaError::NotFound { bucket: bucket.into(), key: key.into() },
            })
            .into()
        };
        let Some(winner) = views.newest().cloned() else {
            return Err(self.out_of_reach(bucket, key, &views.unreachable).await.unwrap_or_else(missing));
        };
        if version.is_none() && winner.digest.is_none() {
            return Err(missing()); // deleted already
        }
        let me = self.cluster.id;
        let meta = self.objects.meta();
        let mut holders: Vec<u64> = views.found.iter().map(|(n, _)| *n).chain(winner.replicas.iter().copied()).collect();
        holders.sort_unstable();
        holders.dedup();
        match version {
            None => {
                let mut id = meta.mint(holders.clone());
                id.parents = Some(views.parents());
                meta.record_marker(bucket, key, &id).await?;
                let h = VersionHeader { marker: true, ..VersionHeader::control(bucket, key, id.clone()) };
                let owed = self.send_to(&members, holders.iter().copied().filter(|n| *n != me), &h).await;
                if !owed.is_empty() && meta.versioning_of(bucket) {
                    meta.enqueue(bucket, key, &id.version, &owed).await?;
                    self.wake();
                }
                Ok(if meta.versioning_of(bucket) { Deleted::Marker(id.version) } else { Deleted::Removed })
            }
            Some(v) => {
                let h = VersionHeader::forget(bucket, key, v);
                let holding: Vec<u64> = views.found.iter().filter(|(_, f)| f.version == v).map(|(n, _)| *n).collect();
                if holding.contains(&me) {
                    meta.delete(bucket, key, Some(v)).await?;
                }
                let failed = self.send_to(&members, holding.into_iter().filter(|n| *n != me), &h).await;
                if !failed.is_empty() {
                    warn!(?failed, %bucket, %key, version = v, "some replicas did not remove the version");
                }
                Ok(Deleted::Removed)
            }
        }
    }

    /// Sends a header-only push to each node; returns those it failed on.
    async fn send_to(&self, members: &[plan::Member], nodes: impl Iterator<Item = u64>, h: &VersionHeader) -> Vec<u64> {
        let sends = nodes.map(|n| async move {
            let r = match members.iter().find(|m| m.id == n) {
                Some(m) => self.send_alone(&m.addr, h).await,
                None => Err("not a member".into()),
            };
            (n, r)
        });
        futures::future::join_all(sends).await.into_iter().filter_map(|(n, r)| r.err().map(|_| n)).collect()
    }
}
