//! Repair and rebalance: one pass, run by each node over the versions it
//! leads (it holds them and is the lowest-id live member of their
//! placement), every `health_check_interval` once membership or health
//! changed, and on demand (`strata cluster repair`, `rebalance`).
//!
//! For each version the node asks the bucket's selector where it should
//! live now, among the members that are healthy or down for less than
//! `repair_delay`. Where that placement differs from the version's
//! replicas, the bucket's strategy plugin says what to do (`plan-repair`:
//! the SDK's default copies to the placement nodes that lack a copy and
//! removes the copies off it). Copies are queued on their source, so the
//! copying is paced by `max_concurrent_syncs`; removals wait until every
//! node of the placement holds the version (asked, not assumed). A node down longer than `repair_delay`
//! is no candidate, so its versions are copied elsewhere: repair and
//! rebalance are the same pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tracing::{info, warn};

use super::plan::{self, Member, Policy};
use super::wire::{self, Lookup, VersionHeader};
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_meta::{Identity, Placed};
use strata_plugin::{RepairAction, Replica, ReplicaState};

/// Versions read and placed per step.
const STEP: u32 = 512;

/// A step's changes, written together.
#[derive(Default)]
struct Moves {
    placements: Vec<(String, String, String, Vec<u64>)>,
    copies: Vec<(String, String, String, u64)>,
}

/// What a placement pass did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    pub checked: u64,
    pub copies: u64,
    pub copy_bytes: u64,
    pub dropped: u64,
    pub dry_run: bool,
}

/// What the placement passes did since start.
#[derive(Default)]
pub struct Totals {
    pub checked: AtomicU64,
    pub copies: AtomicU64,
    pub copy_bytes: AtomicU64,
    pub dropped: AtomicU64,
}

impl Totals {
    pub fn report(&self) -> RepairReport {
        RepairReport {
            checked: self.checked.load(Ordering::Relaxed),
            copies: self.copies.load(Ordering::Relaxed),
            copy_bytes: self.copy_bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            dry_run: false,
        }
    }

    fn add(&self, r: &RepairReport) {
        self.checked.fetch_add(r.checked, Ordering::Relaxed);
        self.copies.fetch_add(r.copies, Ordering::Relaxed);
        self.copy_bytes.fetch_add(r.copy_bytes, Ordering::Relaxed);
        self.dropped.fetch_add(r.dropped, Ordering::Relaxed);
    }
}

impl Replicator {
    /// Members a version may be placed on now.
    fn candidates(&self, members: &[Member]) -> Vec<u32> {
        members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.health == Health::Healthy || m.silent.is_none_or(|s| s < self.config.repair_delay))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Runs the pass every `health_check_interval` while membership or
    /// health changed since the last one, or the last one found work.
    pub fn spawn_placement(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last: Option<Vec<(u64, bool)>> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(this.config.health_check_interval) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
                let (members, _) = plan::members(&this.cluster);
                let cands = this.candidates(&members);
                let shape: Vec<(u64, bool)> = members.iter().enumerate().map(|(i, m)| (m.id, cands.contains(&(i as u32)))).collect();
                if last.as_ref() == Some(&shape) || !members.iter().any(|m| m.id == this.cluster.id) {
                    continue;
                }
                match this.placement_pass(false).await {
                    // Work found: look again next time (to drop surplus
                    // copies once the new ones are in place).
                    Ok(r) if r.copies + r.dropped > 0 => {
                        info!(copies = r.copies, bytes = r.copy_bytes, dropped = r.dropped, "placement pass");
                        last = None;
                    }
                    Ok(_) => last = Some(shape),
                    Err(e) => warn!(error = %e, "placement pass failed"),
                }
            }
        });
    }

    /// One pass over the versions this node leads.
    pub async fn placement_pass(self: &Arc<Self>, dry_run: bool) -> Result<RepairReport, ReplicationError> {
        let _one = self.pass_lock.lock().await;
        let (members, infos) = plan::members(&self.cluster);
        let cands = self.candidates(&members);
        let live: Vec<u64> = cands.iter().map(|&i| members[i as usize].id).collect();
        let me = self.cluster.id;
        let mut report = RepairReport { dry_run, ..Default::default() };
        let mut policies: BTreeMap<String, Policy> = BTreeMap::new();
        let meta = self.objects.meta().clone();
        let mut after = 0;
        loop {
            // Figures reach the totals a batch at a time, so `status` shows
            // a long pass progressing.
            let before = report;
            let batch = meta.placed_after(after, STEP, false).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            // Versions placed by replication whose leader is this node.
            let led: Vec<Placed> = batch
                .into_iter()
                .filter(|p| !p.replicas.is_empty())
                .filter(|p| p.replicas.iter().filter(|n| live.contains(n)).min().is_none_or(|l| *l == me))
                .collect();
            let mut items = Vec::with_capacity(led.len());
            for p in &led {
                if !policies.contains_key(&p.bucket) {
                    policies.insert(p.bucket.clone(), self.policy(&p.bucket).await);
                }
                items.push((policies[&p.bucket].clone(), plan::object_info(&p.bucket, &p.key, p.size)));
            }
            let chosen = plan::select_many(&self.plugins, infos.clone(), cands.clone(), items).await?;
            // The strategy is asked only where a version's replicas and its
            // placement differ.
            let mut asked = Vec::new();
            let mut questions = Vec::new();
            for (p, want) in led.into_iter().zip(chosen) {
                report.checked += 1;
                let want = match want {
                    Ok(w) => w,
                    Err(e) => {
                        warn!(bucket = %p.bucket, key = %p.key, error = %e, "cannot place a version");
                        continue;
                    }
                };
                let ids: Vec<u64> = want.iter().map(|&i| members[i as usize].id).collect();
                if ids.len() == p.replicas.len() && ids.iter().all(|n| p.replicas.contains(n)) {
                    continue;
                }
                questions.push(self.repair_question(&members, policies[&p.bucket].clone(), &p, want));
                asked.push((p, ids));
            }
            let answers = plan::repair_many(&self.plugins, infos.clone(), questions).await?;
            let mut moves = Moves::default();
            for ((p, want), actions) in asked.into_iter().zip(answers) {
                let actions = match actions {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(bucket = %p.bucket, key = %p.key, error = %e, "the strategy cannot plan a version's repair");
                        continue;
                    }
                };
                let id = |i: u32| members[i as usize].id;
                let mut copies = Vec::new();
                let mut removes = Vec::new();
                for a in actions {
                    match a {
                        RepairAction::Copy(c) => copies.push((id(c.source), id(c.target))),
                        RepairAction::Remove(n) => removes.push(id(n)),
                    }
                }
                self.place_one(&members, &p, &want, (&copies[..], &removes[..]), dry_run, &mut report, &mut moves).await?;
            }
            // A step's new placements and copies in two statements.
            let meta = self.objects.meta();
            meta.set_replicas_many(&moves.placements).await?;
            meta.enqueue_many(&moves.copies).await?;
            if !moves.copies.is_empty() {
                self.wake();
            }
            if !dry_run {
                self.totals.add(&RepairReport {
                    checked: report.checked - before.checked,
                    copies: report.copies - before.copies,
                    copy_bytes: report.copy_bytes - before.copy_bytes,
                    dropped: report.dropped - before.dropped,
                    dry_run,
                });
            }
        }
        if !dry_run {
            self.resolve_all_siblings().await?;
        }
        Ok(report)
    }

    /// What the strategy's `plan-repair` is told about a version: each
    /// replica's state as this node sees it (its own copy healthy, members
    /// not seen healthy unreachable; nodes that left are not listed).
    fn repair_question(&self, members: &[Member], policy: Policy, p: &Placed, placement: Vec<u32>) -> plan::RepairQuestion {
        let replicas = p
            .replicas
            .iter()
            .filter_map(|n| {
                let i = members.iter().position(|m| m.id == *n)?;
                let healthy = *n == self.cluster.id || members[i].health == Health::Healthy;
                Some(Replica { node: i as u32, state: if healthy { ReplicaState::Healthy } else { ReplicaState::Unreachable } })
            })
            .collect();
        plan::RepairQuestion { policy, object: plan::object_info(&p.bucket, &p.key, p.size), replicas, placement }
    }

    /// Applies a version's repair actions: the copies are queued at once
    /// (on their source); the removals wait until nothing is queued and
    /// every node of the placement answers that it holds the version, sound.
    #[allow(clippy::too_many_arguments)]
    async fn place_one(
        &self,
        members: &[Member],
        p: &Placed,
        want: &[u64],
        (copies, removes): (&[(u64, u64)], &[u64]),
        dry_run: bool,
        report: &mut RepairReport,
        moves: &mut Moves,
    ) -> Result<(), ReplicationError> {
        let meta = self.objects.meta();
        let me = self.cluster.id;
        if !copies.is_empty() {
            report.copies += copies.len() as u64;
            report.copy_bytes += p.size * copies.len() as u64;
            if !dry_run {
                let mut all = p.replicas.clone();
                all.extend(copies.iter().map(|(_, t)| *t).filter(|t| !p.replicas.contains(t)));
                moves.placements.push((p.bucket.clone(), p.key.clone(), p.version.clone(), all));
                for &(source, target) in copies {
                    if source == me {
                        moves.copies.push((p.bucket.clone(), p.key.clone(), p.version.clone(), target));
                    } else if let Err(e) = self.enqueue_on(source, &p.bucket, &p.key, &p.version, &[target]).await {
                        warn!(source, target, error = %e, "could not queue a repair copy on its source");
                    }
                }
            }
            return Ok(());
        }
        if removes.is_empty() || meta.queued(&p.bucket, &p.key, &p.version).await? {
            return Ok(());
        }
        // Drop copies only once every wanted node answers that it holds the
        // version, sound.
        let q = Lookup::new(&p.bucket, &p.key, Some(&p.version));
        for n in want {
            if *n == me {
                continue;
            }
            let Some(m) = members.iter().find(|m| m.id == *n) else { return Ok(()) };
            match wire::lookup(&self.cluster.network, &m.addr, &q, self.short_timeout()).await {
                Ok(h) if h.found.as_ref().is_some_and(|f| f.sound && f.version == p.version) => {}
                _ => return Ok(()),
            }
        }
        report.dropped += removes.len() as u64;
        if dry_run {
            return Ok(());
        }
        let header = VersionHeader::forget(&p.bucket, &p.key, &p.version);
        // Kept: the placement and every listed member not removed (nodes
        // that left the cluster drop out).
        let mut kept: Vec<u64> = want.to_vec();
        let stays: Vec<u64> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| !want.contains(n) && !removes.contains(n) && members.iter().any(|m| m.id == *n))
            .collect();
        kept.extend(stays);
        // This node's own copy, if removed, goes last (below).
        for &n in removes.iter().filter(|n| **n != me) {
            let r = match members.iter().find(|m| m.id == n) {
                None => Ok(()), // it left the cluster
                Some(m) => self.send_alone(&m.addr, &header).await,
            };
            if r.is_err() && !kept.contains(&n) {
                kept.push(n); // down: it keeps its copy until a later pass
            }
        }
        // The other holders learn the new placement, so that no pass of
        // theirs (anti-entropy) copies the version back to a dropped node.
        let relist = VersionHeader {
            identity: Identity { replicas: kept.clone(), ..header.identity.clone() },
            forget: false,
            relist: true,
            ..header
        };
        for n in want.iter().filter(|n| **n != me) {
            if let Some(m) = members.iter().find(|m| m.id == *n)
                && let Err(e) = self.send_alone(&m.addr, &relist).await
            {
                warn!(node = n, error = %e, "could not send a version's new placement");
            }
        }
        if removes.contains(&me) {
            meta.delete(&p.bucket, &p.key, Some(&p.version)).await?;
            return Ok(());
        }
        meta.set_replicas(&p.bucket, &p.key, &p.version, &kept).await?;
        Ok(())
    }
}
