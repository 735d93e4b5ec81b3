//! Reads on a cluster: any node serves any key. The newest version is
//! found by asking the reachable nodes (strong) or taken from the local
//! store when it has one (eventual); the bytes come from the local copy or
//! from a healthy replica (same zone, least loaded first), and a read that
//! fails on one replica (error, timeout, corrupt data) resumes on the next
//! at the byte where it stopped. Replicas found stale or damaged on the way
//! are queued for repair.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::plan::{self, Member};
use super::wire::{self, Fetch, Found, Lookup};
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_cluster::types::Consistency as ConsistencyLevel;
use strata_meta::{MetaError, ObjectRecord};
use strata_objects::ObjectError;
use strata_store::{Range, StoreError};

/// Frames buffered between a replica and the client.
const PIPE_DEPTH: usize = 4;

/// Every node's answer about one key.
pub(super) struct Views {
    /// (node, what it holds); nodes that hold nothing are absent.
    pub found: Vec<(u64, Found)>,
    /// Nodes that answered (holding something or not).
    pub answered: Vec<u64>,
    /// Nodes that could not be asked.
    pub unreachable: Vec<u64>,
    /// The first refusal a node answered (a fenced lookup behind a newer
    /// fence); that node also counts as unreachable.
    pub refused: Option<ReplicationError>,
    /// The key's heads on the nodes that answered, when the lookup asked.
    pub heads: Vec<String>,
}

impl Views {
    pub(super) fn newest(&self) -> Option<&Found> {
        self.found.iter().map(|(_, f)| f).max_by(|a, b| a.version.cmp(&b.version))
    }

    /// What a version written now supersedes: the newest version seen and
    /// every head seen.
    pub(super) fn parents(&self) -> Vec<String> {
        let mut all: Vec<String> = self.heads.iter().cloned().chain(self.newest().map(|f| f.version.clone())).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

impl Replicator {
    /// What every reachable node (this one included) holds of a key.
    pub(super) async fn views(
        &self,
        members: &[Member],
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Views, ReplicationError> {
        self.views_of(members, &Lookup::new(bucket, key, version)).await
    }

    /// Every reachable node's answer to the lookup `q`.
    pub(super) async fn views_of(&self, members: &[Member], q: &Lookup) -> Result<Views, ReplicationError> {
        let me = self.cluster.id;
        let mut views = Views { found: Vec::new(), answered: vec![me], unreachable: Vec::new(), refused: None, heads: Vec::new() };
        let here = self.holding(q).await?;
        views.heads.extend(here.heads);
        if let Some(f) = here.found {
            views.found.push((me, f));
        }
        let timeout = self.short_timeout();
        let asks = members
            .iter()
            .filter(|m| m.id != me && m.health != Health::Down)
            .map(|m| async move { (m.id, wire::lookup(&self.cluster.network, &m.addr, q, timeout).await) });
        for (node, r) in futures::future::join_all(asks).await {
            match r {
                Ok(h) => {
                    self.objects.meta().observe(h.clock);
                    views.answered.push(node);
                    views.heads.extend(h.heads);
                    if let Some(f) = h.found {
                        views.found.push((node, f));
                    }
                }
                Err(e) => {
                    debug!(node, error = %e, "lookup failed");
                    views.unreachable.push(node);
                    if e.kind() == strata_objects::Kind::Refused && views.refused.is_none() {
                        views.refused = Some(e);
                    }
                }
            }
        }
        views.unreachable.extend(members.iter().filter(|m| m.health == Health::Down).map(|m| m.id));
        Ok(views)
    }

    /// The version a read should serve, and the nodes to read it from in
    /// order of preference.
    async fn locate(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<(Found, Vec<Member>, Views), ReplicationError> {
        let (members, _) = plan::members(&self.cluster);
        let views = self.views(&members, bucket, key, version).await?;
        let Some(winner) = views.newest().cloned() else {
            if let Some(e) = self.out_of_reach(bucket, key, &views.unreachable).await {
                return Err(e);
            }
            let meta = self.objects.meta();
            // Answer as a single node would: no such bucket, version or key.
            let e = meta.get(bucket, key, version).await.err().map(ObjectError::from);
            let e = e.unwrap_or_else(|| MetaError::NotFound { bucket: bucket.into(), key: key.into() }.into());
            return Err(e.into());
        };
        let me = self.cluster.id;
        let my_zone = &self.cluster.me.zone;
        let mut sources: Vec<Member> = views
            .found
            .iter()
            .filter(|(_, f)| f.version == winner.version && f.sound)
            .filter_map(|(n, _)| members.iter().find(|m| m.id == *n).cloned())
            .collect();
        sources.sort_by(|a, b| {
            let rank = |m: &Member| (m.id != me, &m.zone != my_zone, (m.load * 1000.0) as i64);
            rank(a).cmp(&rank(b))
        });
        Ok((winner, sources, views))
    }

    /// Replicas meant to hold `winner` that answered without it: queued
    /// for a copy from a node that has it.
    fn repair_stale(self: &Arc<Self>, bucket: &str, key: &str, winner: &Found, views: &Views, source: u64) {
        let stale: Vec<u64> = winner
            .replicas
            .iter()
            .copied()
            .filter(|n| views.answered.contains(n))
            .filter(|n| !views.found.iter().any(|(m, f)| m == n && f.version >= winner.version && f.sound))
            .collect();
        if stale.is_empty() {
            return;
        }
        let this = self.clone();
        let (bucket, key, version) = (bucket.to_string(), key.to_string(), winner.version.clone());
        tokio::spawn(async move {
            debug!(?stale, %bucket, %key, "queueing copies to stale replicas");
            if let Err(e) = this.enqueue_on(source, &bucket, &key, &version, &stale).await {
                warn!(error = %e, "could not queue the repair of stale replicas");
            }
        });
    }

    /// Opens one source's stream of (a range of) the version's bytes.
    /// Streams a version's bytes from one replica. Errors say whether the
    /// replica's copy is damaged (as opposed to a replica that failed).
    async fn open(
        &self,
        m: &Member,
        bucket: &str,
        key: &str,
        version: &str,
        range: Range,
    ) -> Result<BoxStream<'static, Result<Bytes, SourceError>>, SourceError> {
        let local = |e: ObjectError| SourceError {
            damaged: matches!(
                e,
                ObjectError::Store(StoreError::Corrupt { .. } | StoreError::Missing { .. })
                    | ObjectError::Meta(MetaError::CorruptVersion { .. })
            ),
            message: e.to_string(),
        };
        let remote = |e: ReplicationError| SourceError { damaged: e.kind() == strata_objects::Kind::DataLoss, message: e.to_string() };
        if m.id == self.cluster.id {
            let (_, rx) = self.objects.get(bucket, key, Some(version), range).await.map_err(local)?;
            return Ok(ReceiverStream::new(rx).map(move |r| r.map_err(local)).boxed());
        }
        let q = Fetch { bucket: bucket.into(), key: key.into(), version: version.into(), offset: range.offset, len: range.len };
        let s = wire::fetch(&self.cluster.network, &m.addr, &q).await.map_err(remote)?;
        Ok(s.map(move |r| r.map_err(remote)).boxed())
    }

    /// Looks up a version anywhere in the cluster and streams its bytes.
    pub async fn get(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Range,
    ) -> Result<(ObjectRecord, mpsc::Receiver<Result<Bytes, ObjectError>>), ReplicationError> {
        let policy = self.policy(bucket).await;
        if policy.consistency == ConsistencyLevel::Eventual
            && let Ok(got) = self.objects.get(bucket, key, version, range).await
        {
            return Ok(got);
        }
        let (winner, sources, views) = self.locate(bucket, key, version).await?;
        if winner.digest.is_none() {
            return Err(deleted(bucket, key, version, &winner));
        }
        if range.offset > winner.size {
            // As one node answers it, before any replica is asked.
            return Err(ObjectError::from(StoreError::BadRange { offset: range.offset, size: winner.size }).into());
        }
        let Some(first) = sources.first() else {
            // Every replica answered and none holds the version sound.
            if views.unreachable.is_empty() && views.found.iter().any(|(_, f)| f.version == winner.version) {
                return Err(ObjectError::Damaged(format!(
                    "no replica of {bucket}/{key} version {} is sound (replicas: {:?})",
                    winner.version, winner.replicas
                ))
                .into());
            }
            return Err(ReplicationError::Unavailable(format!(
                "no sound replica of {bucket}/{key} version {} is reachable (replicas: {:?})",
                winner.version, winner.replicas
            )));
        };
        if version.is_none() {
            self.repair_stale(bucket, key, &winner, &views, first.id);
        }
        let rec = winner.record(bucket, key);
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        let this = self.clone();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        tokio::spawn(async move {
            let version = winner.version.clone();
            // What the read must deliver; a source that sends less (or
            // more) has failed.
            let total = winner.size.saturating_sub(range.offset);
            let want = range.len.map_or(total, |l| l.min(total));
            let wait = this.config.sync_timeout;
            let mut sent = 0u64;
            let mut errors = Vec::new();
            // Sources whose copy was damaged; if every source's was, the
            // read is data loss, not a failure to retry.
            let mut damaged = 0;
            for m in &sources {
                let from = Range { offset: range.offset + sent, len: Some(want - sent) };
                let mut s = match tokio::time::timeout(wait, this.open(m, &bucket, &key, &version, from)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        damaged += usize::from(e.damaged);
                        errors.push(format!("node {}: {}", m.id, e.message));
                        continue;
                    }
                    Err(_) => {
                        errors.push(format!("node {}: no answer within {wait:?}", m.id));
                        continue;
                    }
                };
                let mut failed = None;
                while sent < want {
                    match tokio::time::timeout(wait, s.next()).await {
                        Ok(Some(Ok(b))) if sent + b.len() as u64 <= want => {
                            sent += b.len() as u64;
                            if tx.send(Ok(b)).await.is_err() {
                                return; // the client went away
                            }
                        }
                        Ok(Some(Ok(_))) => failed = Some("sent more bytes than the version has".to_string()),
                        Ok(Some(Err(e))) => {
                            damaged += usize::from(e.damaged);
                            failed = Some(e.message)
                        }
                        Ok(None) => failed = Some(format!("the stream ended after {sent} of {want} bytes")),
                        Err(_) => failed = Some(format!("no data for {wait:?}")),
                    }
                    if failed.is_some() {
                        break;
                    }
                }
                match failed {
                    None => return,
                    Some(e) => {
                        warn!(node = m.id, %bucket, %key, error = %e, sent, "a replica failed mid-read; failing over");
                        if m.id == this.cluster.id
                            && let Some(other) = sources.iter().find(|o| o.id != m.id)
                        {
                            // This node's copy is damaged: have a sound one sent.
                            let _ = this.enqueue_on(other.id, &bucket, &key, &version, &[m.id]).await;
                        }
                        errors.push(format!("node {}: {e}", m.id));
                    }
                }
            }
            let why = errors.join("; ");
            let e = if damaged == sources.len() {
                ObjectError::Damaged(why)
            } else {
                ObjectError::Aborted(format!("every replica failed: {why}"))
            };
            let _ = tx.send(Err(e)).await;
        });
        Ok((rec, rx))
    }

    /// The record of a version with the state of each replica.
    pub async fn stat(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<(ObjectRecord, Vec<ReplicaInfo>), ReplicationError> {
        let (winner, _, views) = self.locate(bucket, key, version).await?;
        if winner.digest.is_none() && version.is_none() {
            return Err(deleted(bucket, key, version, &winner));
        }
        let (members, _) = plan::members(&self.cluster);
        // Every node some holder lists, and every holder: lists differ
        // while a repair or rebalance is under way.
        let mut listed: Vec<u64> = views
            .found
            .iter()
            .filter(|(_, f)| f.version == winner.version)
            .flat_map(|(n, f)| f.replicas.iter().copied().chain([*n]))
            .chain(winner.replicas.iter().copied())
            .collect();
        listed.sort_unstable();
        listed.dedup();
        let replicas = listed
            .iter()
            .map(|n| {
                let state = match views.found.iter().find(|(m, _)| m == n) {
                    _ if views.unreachable.contains(n) => "unreachable",
                    Some((_, f)) if f.version == winner.version && f.sound => "ok",
                    Some((_, f)) if f.version == winner.version => "corrupt",
                    Some(_) if version.is_some() => "missing",
                    Some(_) => "stale",
                    None if views.answered.contains(n) => "missing",
                    None => "unreachable",
                };
                ReplicaInfo { node: *n, address: members.iter().find(|m| m.id == *n).map(|m| m.addr.clone()).unwrap_or_default(), state }
            })
            .collect();
        Ok((winner.record(bucket, key), replicas))
    }
}

/// One replica of a version, as a stat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub node: u64,
    pub address: String,
    /// ok, corrupt, missing, stale or unreachable.
    pub state: &'static str,
}

/// Why a replica could not serve a read.
struct SourceError {
    /// Its copy is corrupt or missing (not a failure of the node).
    damaged: bool,
    message: String,
}

/// A read that found a delete marker newest: as on a single node, the key
/// is not found, or the asked-for version is a marker.
fn deleted(bucket: &str, key: &str, version: Option<&str>, winner: &Found) -> ReplicationError {
    match version {
        Some(_) => ObjectError::DeleteMarker { key: key.into(), version: winner.version.clone() }.into(),
        None => ObjectError::from(strata_meta::MetaError::NotFound { bucket: bucket.into(), key: key.into() }).into(),
    }
}
