//! One namespace across the cluster: a listing, a key's versions or a
//! bucket's count on any node is the cluster's answer, merged from every
//! reachable node's own.
//!
//! A node answers with each key's *newest* version it holds, delete
//! markers included, so that a marker on one node hides a live version a
//! stale node still has. Pages are merged round by round: each node sends
//! at most a page after the cursor, and only keys up to the smallest last
//! key of a node that filled its page are decided (a node may hold more
//! past it), so memory stays bounded by nodes × page, whatever the bucket.
//!
//! An answer is partial when the unreachable nodes are at least as many as
//! the bucket's replicas (some key may then have all its copies among
//! them), when this node reaches no majority (the majority may have
//! written since), or when any node is unreachable and the bucket is
//! eventual (each side of a partition takes writes). The answer names
//! them; otherwise every key still has a reachable copy and the answer is
//! whole.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use tracing::debug;

use super::plan::{self, Member};
use super::wire::{self, Query};
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_meta::{MetaError, ObjectRecord};
use strata_objects::ObjectError;

/// Keys counted per round when a bucket's objects are counted.
const COUNT_PAGE: u32 = 10_000;

/// A cluster-wide answer and the nodes it could not ask, when they could
/// hold something the answer lacks.
#[derive(Debug, Clone, Default)]
pub struct Merged<T> {
    pub value: T,
    /// "node N (ADDR)" for each such node; empty when the answer is whole.
    pub missing: Vec<String>,
}

impl<T> Merged<T> {
    pub fn whole(value: T) -> Self {
        Self { value, missing: Vec::new() }
    }
}

impl Replicator {
    /// This node's part of a listing: each key's newest version here.
    pub async fn answer_list(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ObjectRecord>, ObjectError> {
        Ok(self.objects.meta().newest_after(bucket, prefix, after, limit).await?)
    }

    /// This node's part of a key's versions: those it holds.
    pub async fn answer_versions(&self, bucket: &str, key: &str) -> Result<Vec<ObjectRecord>, ObjectError> {
        match self.objects.meta().list_versions(bucket, key).await {
            Ok(v) => Ok(v),
            Err(MetaError::NotFound { .. } | MetaError::NoSuchBucket { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Asks every member not known to be down (this one through `local`),
    /// all at once; answers the nodes that answered and those that did not.
    pub(super) async fn ask_all<A, F>(&self, q: &Query, local: F) -> Result<(Vec<(u64, A)>, Vec<Member>), ReplicationError>
    where
        A: serde::de::DeserializeOwned,
        F: Future<Output = Result<A, ReplicationError>>,
    {
        let (members, _) = plan::members(&self.cluster);
        let me = self.cluster.id;
        let timeout = self.short_timeout();
        let remote = members.iter().filter(|m| m.id != me && m.health != Health::Down).map(|m| async move {
            let r: Result<A, _> = wire::query(&self.cluster.network, &m.addr, q, timeout).await;
            (m, r)
        });
        let (mine, theirs) = futures::join!(local, futures::future::join_all(remote));
        let mut answers = vec![(me, mine?)];
        let mut unreached: Vec<Member> = members.iter().filter(|m| m.id != me && m.health == Health::Down).cloned().collect();
        for (m, r) in theirs {
            match r {
                Ok(a) => answers.push((m.id, a)),
                Err(e) => {
                    debug!(node = m.id, error = %e, "a node did not answer its part");
                    unreached.push(m.clone());
                }
            }
        }
        Ok((answers, unreached))
    }

    /// The nodes to name when an answer may lack what `unreached` hold:
    /// none while every key must still have a reachable copy.
    pub(super) async fn missing(&self, bucket: &str, unreached: &BTreeMap<u64, String>) -> Vec<String> {
        if unreached.is_empty() {
            return Vec::new();
        }
        let policy = self.policy(bucket).await;
        let members = self.cluster.members().len().max(1);
        // A node that reaches no majority cannot know what the majority
        // wrote meanwhile; an eventual bucket takes writes on whatever
        // nodes a side reaches.
        let cut_off = (members - unreached.len().min(members)) * 2 <= members;
        let eventual = policy.consistency == strata_cluster::types::Consistency::Eventual;
        if !cut_off && !eventual && unreached.len() < policy.replicas.max(1) as usize {
            return Vec::new();
        }
        unreached.iter().map(|(id, addr)| format!("node {id} ({addr})")).collect()
    }

    /// When no reachable node holds a key: the error to answer if the
    /// unreachable nodes may hold it (as a listing would be partial), so a
    /// key out of reach is not reported gone.
    pub(super) async fn out_of_reach(&self, bucket: &str, key: &str, unreachable: &[u64]) -> Option<ReplicationError> {
        let unreached: BTreeMap<u64, String> = unreachable.iter().map(|n| (*n, self.addr_of(*n).unwrap_or_default())).collect();
        let missing = self.missing(bucket, &unreached).await;
        (!missing.is_empty()).then(|| {
            ReplicationError::Unavailable(format!(
                "{bucket}/{key} is on none of the nodes that answered, and {} could not be asked: it may be there",
                missing.join(", ")
            ))
        })
    }

    /// Live keys under `prefix` after `after`, in key order, each with its
    /// newest version across the cluster; with `markers`, also the keys
    /// whose newest version is a delete marker.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        markers: bool,
    ) -> Result<Merged<Vec<ObjectRecord>>, ReplicationError> {
        self.require_bucket(bucket).await?;
        let limit = limit.max(1);
        let mut cursor = after.map(str::to_string);
        let mut out = Vec::new();
        let mut unreached = BTreeMap::new();
        loop {
            let q = Query::List { bucket: bucket.into(), prefix: prefix.into(), after: cursor.clone(), limit };
            let here = async { Ok(self.answer_list(bucket, prefix, cursor.as_deref(), limit).await?) };
            let (answers, down) = self.ask_all::<Vec<ObjectRecord>, _>(&q, here).await?;
            unreached.extend(down.into_iter().map(|m| (m.id, m.addr)));
            // A node that filled its page may hold more keys past its last.
            let bound = answers.iter().filter(|(_, a)| a.len() as u32 >= limit).filter_map(|(_, a)| a.last().map(|r| r.key.clone())).min();
            let mut newest: BTreeMap<String, ObjectRecord> = BTreeMap::new();
            for rec in answers.into_iter().flat_map(|(_, a)| a) {
                if bound.as_ref().is_some_and(|b| rec.key > *b) {
                    continue;
                }
                match newest.get(&rec.key) {
                    Some(had) if had.version >= rec.version => {}
                    _ => {
                        newest.insert(rec.key.clone(), rec);
                    }
                }
            }
            for (_, mut rec) in newest {
                if rec.is_delete_marker() && !markers {
                    continue;
                }
                rec.latest = true;
                out.push(rec);
                if out.len() as u32 == limit {
                    return Ok(Merged { value: out, missing: self.missing(bucket, &unreached).await });
                }
            }
            match bound {
                Some(b) => cursor = Some(b),
                None => break,
            }
        }
        Ok(Merged { value: out, missing: self.missing(bucket, &unreached).await })
    }

    /// Every version of a key any reachable node holds, newest first.
    pub async fn versions(&self, bucket: &str, key: &str) -> Result<Merged<Vec<ObjectRecord>>, ReplicationError> {
        self.require_bucket(bucket).await?;
        let q = Query::Versions { bucket: bucket.into(), key: key.into() };
        let here = async { Ok(self.answer_versions(bucket, key).await?) };
        let (answers, down) = self.ask_all::<Vec<ObjectRecord>, _>(&q, here).await?;
        let mut all: BTreeMap<String, ObjectRecord> = BTreeMap::new();
        for rec in answers.into_iter().flat_map(|(_, a)| a) {
            all.entry(rec.version.clone()).or_insert(rec);
        }
        let unreached = down.into_iter().map(|m| (m.id, m.addr)).collect();
        let missing = self.missing(bucket, &unreached).await;
        if all.is_empty() && missing.is_empty() {
            return Err(ObjectError::from(MetaError::NotFound { bucket: bucket.into(), key: key.into() }).into());
        }
        let mut versions: Vec<ObjectRecord> = all.into_values().rev().collect();
        for (i, v) in versions.iter_mut().enumerate() {
            v.latest = i == 0;
        }
        Ok(Merged { value: versions, missing })
    }

    /// How many live keys a bucket has across the cluster: a merged listing
    /// of the whole bucket, so it costs a pass over its keys.
    pub async fn count(&self, bucket: &str) -> Result<Merged<u64>, ReplicationError> {
        let mut after: Option<String> = None;
        let mut n = 0u64;
        let mut missing = BTreeSet::new();
        loop {
            let page = self.list(bucket, "", after.as_deref(), COUNT_PAGE, false).await?;
            missing.extend(page.missing);
            n += page.value.len() as u64;
            if (page.value.len() as u32) < COUNT_PAGE {
                break;
            }
            after = page.value.last().map(|r| r.key.clone());
        }
        Ok(Merged { value: n, missing: missing.into_iter().collect() })
    }
}
