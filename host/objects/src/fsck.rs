//! `strata fsck`: an offline check of one node's store, with a repair that
//! only does what cannot lose data.
//!
//! Safe here means: a damaged or missing blob is marked corrupt and its
//! file quarantined (reads then answer `DATA_LOSS`, and a put or a replica
//! of the same bytes heals it); a file no row knows is quarantined, not
//! deleted; reference counts and totals are recomputed from the rows.
//! Versions are never removed: what they lost is reported for a person
//! to decide.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::{ObjectError, Objects};
use strata_meta::fsck::{CounterMismatch, Dangling, RefMismatch};
use strata_store::{Digest, StoreError};

/// Blob rows checked per page.
const PAGE: u32 = 256;
/// Problems of one kind listed by name; the rest are counted.
const LISTED: usize = 50;

/// What a check found, and what a repair did about it.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// `integrity_check` and `foreign_key_check` findings.
    pub database: Vec<String>,
    pub blobs_checked: u64,
    /// Blobs with a row whose bytes are gone.
    pub missing: Vec<Digest>,
    /// Blobs whose bytes fail verification, with the reason.
    pub corrupt: Vec<(Digest, String)>,
    /// Rows on record as corrupt before this run.
    pub known_corrupt: u64,
    /// Blobs on object-store tiers: checked when read, not here.
    pub on_tiers: u64,
    /// Blobs that could not be read for another reason (permissions...).
    pub unreadable: Vec<(Digest, String)>,
    /// Blob files no row knows.
    pub orphans: Vec<Digest>,
    pub refcounts: Vec<RefMismatch>,
    pub dangling: Vec<Dangling>,
    pub counters: Vec<CounterMismatch>,
    /// Whether the repairs ran.
    pub repaired: bool,
}

impl FsckReport {
    /// Problems a repair cannot undo: lost or damaged bytes (found now or
    /// on record from before), a damaged database.
    pub fn data_problems(&self) -> usize {
        self.database.len()
            + self.missing.len()
            + self.corrupt.len()
            + self.unreadable.len()
            + self.dangling.len()
            + self.known_corrupt as usize
    }

    /// Problems a repair fixes for good.
    pub fn fixable_problems(&self) -> usize {
        self.orphans.len() + self.refcounts.len() + self.counters.len()
    }

    /// Human-readable findings, one line each.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let fixed = |what: &str| if self.repaired { format!(" ({what})") } else { String::new() };
        if self.database.is_empty() {
            let _ = writeln!(o, "metadata: integrity_check ok");
        }
        for p in &self.database {
            let _ = writeln!(o, "metadata: {p}");
        }
        let _ = writeln!(
            o,
            "blobs: {} checked, {} already on record as corrupt, {} on tiers (checked when read)",
            self.blobs_checked, self.known_corrupt, self.on_tiers
        );
        for d in self.missing.iter().take(LISTED) {
            let _ = writeln!(o, "missing blob {d}: its row has no bytes{}", fixed("marked corrupt"));
        }
        for (d, why) in self.corrupt.iter().take(LISTED) {
            let _ = writeln!(o, "corrupt blob {d}: {why}{}", fixed("marked corrupt, file quarantined"));
        }
        for (d, why) in self.unreadable.iter().take(LISTED) {
            let _ = writeln!(o, "unreadable blob {d}: {why}");
        }
        for d in self.orphans.iter().take(LISTED) {
            let _ = writeln!(
                o,
                "orphan file {d}: no row refers to it (a write cut off by a crash leaves one; GC removes it){}",
                fixed("quarantined")
            );
        }
        for m in self.refcounts.iter().take(LISTED) {
            let _ = writeln!(o, "refcount of blob {}: recorded {}, {} versions use it{}", m.digest, m.recorded, m.actual, fixed("set"));
        }
        for d in self.dangling.iter().take(LISTED) {
            let _ = writeln!(o, "lost version {}/{} {}: blob {} has no row", d.bucket, d.key, d.version, d.digest);
        }
        for c in &self.counters {
            let _ = writeln!(o, "total {}: recorded {}, rows add up to {}{}", c.name, c.recorded, c.actual, fixed("set"));
        }
        let hidden = [self.missing.len(), self.corrupt.len(), self.unreadable.len(), self.orphans.len(), self.refcounts.len()]
            .iter()
            .map(|n| n.saturating_sub(LISTED))
            .sum::<usize>();
        if hidden > 0 {
            let _ = writeln!(o, "... and {hidden} more not listed");
        }
        let (data, fixable) = (self.data_problems(), self.fixable_problems());
        let _ = match (data, fixable, self.repaired) {
            (0, 0, _) => writeln!(o, "clean"),
            (0, n, true) => writeln!(o, "{n} problems repaired"),
            (0, n, false) => writeln!(o, "{n} problems; `strata fsck --repair` fixes them"),
            (d, n, true) => writeln!(
                o,
                "{n} problems repaired; {d} cannot be repaired here (lost or damaged data): put the objects again, let a replica heal them, or restore from a backup"
            ),
            (d, n, false) => writeln!(
                o,
                "{} problems; {d} of them are lost or damaged data that `--repair` only marks (reads answer DATA_LOSS) and the rest it fixes",
                d + n
            ),
        };
        o
    }
}

impl Objects {
    /// Checks everything; with `repair`, fixes what is safe to fix.
    /// Run only with no server on the store (the store lock sees to that).
    pub async fn fsck(&self, repair: bool) -> Result<FsckReport, ObjectError> {
        let mut r = FsckReport { repaired: repair, ..Default::default() };
        let meta = self.meta();
        r.database = meta.integrity_problems().await?;
        if !r.database.is_empty() {
            // Queries over a damaged database answer wrongly or not at all.
            return Ok(r);
        }

        let mut after = None;
        loop {
            let page = meta.blob_rows_after(after.as_ref(), PAGE).await?;
            let Some(last) = page.last().map(|b| b.digest) else { break };
            for b in page {
                if b.corrupt {
                    r.known_corrupt += 1;
                    continue;
                }
                r.blobs_checked += 1;
                match self.verify(b.digest, b.size).await {
                    Ok(()) => {}
                    Err(ObjectError::Store(StoreError::TierUnavailable { .. })) => {
                        r.blobs_checked -= 1;
                        r.on_tiers += 1;
                    }
                    Err(ObjectError::Store(e)) if e.is_damage() => {
                        if repair {
                            self.report_corrupt(b.digest, b.size, &e).await;
                        }
                        match e {
                            StoreError::Missing { .. } => r.missing.push(b.digest),
                            e => r.corrupt.push((b.digest, e.to_string())),
                        }
                    }
                    Err(ObjectError::Store(e)) => r.unreadable.push((b.digest, e.to_string())),
                    Err(e) => return Err(e),
                }
            }
            after = Some(last);
        }

        let store = self.store().clone();
        let files = tokio::task::spawn_blocking(move || store.scan()).await.map_err(|e| ObjectError::Aborted(e.to_string()))??;
        let on_disk: Vec<Digest> = files.into_iter().map(|(d, _, _)| d).collect();
        let mut known = HashSet::new();
        for chunk in on_disk.chunks(PAGE as usize) {
            known.extend(meta.blob_rows(chunk).await?);
        }
        r.orphans = on_disk.into_iter().filter(|d| !known.contains(d)).collect();
        if repair {
            for d in r.orphans.clone() {
                let store = self.store().clone();
                tokio::task::spawn_blocking(move || store.quarantine(&d)).await.map_err(|e| ObjectError::Aborted(e.to_string()))??;
            }
        }

        r.refcounts = meta.refcount_mismatches().await?;
        r.dangling = meta.dangling_versions(LISTED as u32).await?;
        if repair && !r.refcounts.is_empty() {
            meta.fix_refcounts().await?;
        }
        r.counters = meta.counter_mismatches().await?;
        if repair && !r.counters.is_empty() {
            meta.fix_counters().await?;
        }
        Ok(r)
    }
}
