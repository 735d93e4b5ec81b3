//! `backup prune`: drop old backups by a retention rule, then the blobs no
//! remaining backup needs.

use std::collections::{BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::lock::TargetLock;
use crate::manifest::{self, Manifest};
use crate::{RemoteError, Target};

/// Which backups to keep; a backup any rule keeps stays.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest N.
    #[serde(default)]
    pub last: usize,
    /// The newest of each of the last N days (UTC) that have one.
    #[serde(default)]
    pub daily: usize,
    /// The newest of each of the last N weeks that have one.
    #[serde(default)]
    pub weekly: usize,
}

impl Keep {
    pub fn is_empty(&self) -> bool {
        self.last == 0 && self.daily == 0 && self.weekly == 0
    }

    /// The ids `backups` (oldest first) keeps: the rules apply to the
    /// backups of each node (or cluster) apart, so one server's backups
    /// never push out another's at a shared target.
    pub fn choose(&self, backups: &[Manifest]) -> BTreeSet<String> {
        let mut groups: std::collections::BTreeMap<String, Vec<&Manifest>> = Default::default();
        for m in backups {
            let group = match &m.cluster {
                Some(c) => format!("cluster {}", c.cluster_id),
                None => m.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(","),
            };
            groups.entry(group).or_default().push(m);
        }
        groups.values().flat_map(|g| self.choose_one(g)).collect()
    }

    fn choose_one(&self, backups: &[&Manifest]) -> BTreeSet<String> {
        let mut keep = BTreeSet::new();
        let newest_first: Vec<&Manifest> = backups.iter().rev().copied().collect();
        keep.extend(newest_first.iter().take(self.last).map(|m| m.id.clone()));
        for (span, n) in [(DAY_MS, self.daily), (7 * DAY_MS, self.weekly)] {
            let mut seen = HashSet::new();
            for m in &newest_first {
                if seen.len() >= n {
                    break;
                }
                if seen.insert(m.created_ms / span) {
                    keep.insert(m.id.clone());
                }
            }
        }
        keep
    }
}

const DAY_MS: u64 = 24 * 3600 * 1000;

#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

/// Removes the backups `keep` does not keep and every blob no kept backup
/// needs. `dry_run`: only report.
pub async fn prune(t: &Target, keep: Keep, dry_run: bool) -> Result<PruneReport, RemoteError> {
    if keep.is_empty() {
        return Err(RemoteError::Invalid("say what to keep: --keep-last, --keep-daily or --keep-weekly (at least 1)".into()));
    }
    let lock = TargetLock::take(t, "prune").await?;
    let r = prune_locked(t, keep, dry_run, &lock).await;
    lock.release().await;
    r
}

async fn prune_locked(t: &Target, keep: Keep, dry_run: bool, lock: &TargetLock) -> Result<PruneReport, RemoteError> {
    let backups = manifest::list(t).await?;
    let kept = keep.choose(&backups);
    let mut report = PruneReport::default();
    let mut needed = HashSet::new();
    for m in &backups {
        if kept.contains(&m.id) {
            report.kept.push(m.id.clone());
            needed.extend(m.needs().map(|b| b.digest));
        } else {
            report.removed.push(m.id.clone());
        }
    }
    // Directories of unfinished backups go too: nothing refers to them.
    let finished: HashSet<&str> = backups.iter().map(|m| m.id.as_str()).collect();
    let gone: Vec<String> =
        manifest::ids(t).await?.into_iter().filter(|id| !kept.contains(id) || !finished.contains(id.as_str())).collect();
    if !dry_run {
        lock.check().await?;
        for id in &gone {
            let prefix = t.path(&format!("backups/{id}"));
            let paths = t.store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
            t.store.delete_stream(paths).try_collect::<Vec<_>>().await.map_err(RemoteError::at(t))?;
        }
    }
    let unneeded: Vec<_> = manifest::present(t).await?.into_iter().filter(|(d, _)| !needed.contains(d)).collect();
    // Still ours? A run whose lock went stale deletes nothing more.
    lock.check().await?;
    for (d, size) in &unneeded {
        if !dry_run {
            match t.store.delete(&manifest::blob_path(t, d)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(RemoteError::at(t)(e)),
            }
        }
        report.blobs_removed += 1;
        report.bytes_freed += size;
    }
    Ok(report)
}
