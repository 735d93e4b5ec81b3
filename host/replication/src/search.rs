//! Search on a cluster: the query runs on every node over the versions it
//! holds (with that node's copies of the indexes), and the pages merge in
//! the requested order.
//!
//! A node's match may be stale: another node may hold a newer version of
//! the key that does not match (or a delete marker). So every match is
//! checked against the key's newest version across the reachable nodes,
//! and only a match that *is* the newest is kept. As with listings, pages
//! merge round by round up to the smallest last position of a node that
//! filled its page, so the keyset cursor of the merged page is exact and
//! memory is bounded by nodes × page.

use std::collections::BTreeMap;
use std::time::Instant;

use super::namespace::Merged;
use super::wire::Query;
use super::{ReplicationError, Replicator};
use strata_meta::{ObjectRecord, Position};
use strata_objects::ObjectError;
use strata_search::run::{self, Found, Search};

impl Replicator {
    /// This node's part of a search.
    pub async fn search_here(&self, s: &Search, indexes: bool) -> Result<Found, ObjectError> {
        Ok(run::run(self.objects.meta(), indexes.then_some(&*self.plugins), s).await?)
    }

    /// This node's newest version of each key (a marker included).
    pub async fn newest_here(&self, bucket: &str, keys: &[String]) -> Result<Vec<Option<String>>, ObjectError> {
        let meta = self.objects.meta();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(meta.newest(bucket, k).await?.map(|r| r.version));
        }
        Ok(out)
    }

    /// The newest version of each key across the reachable nodes.
    async fn newest_anywhere(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<(Vec<Option<String>>, Vec<(u64, String)>), ReplicationError> {
        let q = Query::Newest { bucket: bucket.into(), keys: keys.clone() };
        let here = async { Ok(self.newest_here(bucket, &keys).await?) };
        let (answers, down) = self.ask_all::<Vec<Option<String>>, _>(&q, here).await?;
        let mut newest: Vec<Option<String>> = vec![None; keys.len()];
        for (_, a) in answers {
            for (slot, v) in newest.iter_mut().zip(a) {
                if v > *slot {
                    *slot = v;
                }
            }
        }
        Ok((newest, down.into_iter().map(|m| (m.id, m.addr)).collect()))
    }

    /// A page of the cluster's objects the search matches.
    pub async fn search(&self, s: &Search, indexes: bool) -> Result<Merged<Found>, ReplicationError> {
        self.require_bucket(&s.bucket).await?;
        let started = Instant::now();
        let limit = s.limit.max(1);
        let mut after = s.after.clone();
        let (mut out, mut positions): (Vec<ObjectRecord>, Vec<Position>) = (Vec::new(), Vec::new());
        let mut unreached = BTreeMap::new();
        let (mut plans, mut scanned, mut indexed, mut rounds, mut stale, mut bytes) = (BTreeMap::new(), 0u64, true, 0, 0, 0usize);
        let mut next = None;
        'rounds: loop {
            rounds += 1;
            let page = Search { after: after.clone(), limit, ..s.clone() };
            let q = Query::Search { search: page.clone(), indexes };
            let here = async { Ok(self.search_here(&page, indexes).await?) };
            let (answers, down) = self.ask_all::<Found, _>(&q, here).await?;
            unreached.extend(down.into_iter().map(|m| (m.id, m.addr)));
            // A node with more to give is decided only up to where it stopped.
            let bound = answers.iter().filter_map(|(_, f)| f.next.clone()).min_by(|a, b| run::order(a, b, s.descending));
            let mut best: BTreeMap<String, (ObjectRecord, Position)> = BTreeMap::new();
            for (node, f) in answers {
                scanned += f.scanned;
                indexed &= f.indexed;
                plans.entry(node).or_insert(f.plan);
                for (rec, pos) in f.records.into_iter().zip(f.positions) {
                    if bound.as_ref().is_some_and(|b| run::order(&pos, b, s.descending).is_gt()) {
                        continue;
                    }
                    match best.get(&rec.key) {
                        Some((had, _)) if had.version >= rec.version => {}
                        _ => {
                            best.insert(rec.key.clone(), (rec, pos));
                        }
                    }
                }
            }
            let keys: Vec<String> = best.keys().cloned().collect();
            let candidates = keys.len();
            let (newest, down) = self.newest_anywhere(&s.bucket, keys).await?;
            unreached.extend(down);
            let mut page: Vec<(ObjectRecord, Position)> = best
                .into_values()
                .zip(newest)
                .filter_map(|((rec, pos), n)| (n.as_deref() == Some(&rec.version)).then_some((rec, pos)))
                .collect();
            stale += candidates - page.len();
            page.sort_by(|a, b| run::order(&a.1, &b.1, s.descending));
            for (rec, pos) in page {
                bytes += rec.reply_bytes();
                if bytes > s.max_bytes && !out.is_empty() {
                    next = positions.last().cloned();
                    break 'rounds;
                }
                out.push(rec);
                positions.push(pos.clone());
                if out.len() as u32 == limit {
                    next = Some(pos);
                    break 'rounds;
                }
            }
            match bound {
                Some(b) => after = Some(b),
                None => break,
            }
        }
        let mut plan: Vec<String> = plans.into_iter().map(|(n, p)| format!("node {n}: {p}")).collect();
        plan.push(format!("merged {} in {rounds} round(s) across the nodes; {stale} stale match(es) dropped", out.len()));
        let missing = self.missing(&s.bucket, &unreached).await;
        let found = Found { records: out, positions, next, scanned, took: started.elapsed(), plan: plan.join(" | "), indexed };
        Ok(Merged { value: found, missing })
    }
}
