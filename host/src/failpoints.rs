//! Fault injection for tests, with the `fail` crate.
//!
//! Inert unless the server starts with `STRATA_FAILPOINTS_FILE` set: that
//! file is read every 50 ms, one `name=actions` per line in `fail`'s syntax
//! (`store.write=return(enospc)`, `meta.commit=30%return(full)`), and a name
//! that leaves the file is turned off. So a test can make a step of the
//! write path fail, clear the fault, and check the next write succeeds,
//! all without a restart.
//!
//! Points: `store.write` and `store.sync` (a staged blob's data and fsync),
//! `store.publish` and `store.dirsync` (rename into place, directory sync),
//! `meta.commit` (the metadata transaction, before COMMIT).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Starts applying the file named by `STRATA_FAILPOINTS_FILE`, if any.
pub fn spawn_from_env() {
    let Some(path) = std::env::var_os("STRATA_FAILPOINTS_FILE").map(PathBuf::from) else { return };
    tracing::warn!(path = %path.display(), "fault injection is on (STRATA_FAILPOINTS_FILE); for tests only");
    tokio::spawn(async move {
        let mut active: HashMap<String, String> = HashMap::new();
        loop {
            let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
            let wanted: HashMap<String, String> =
                text.lines().filter_map(|l| l.split_once('=')).map(|(n, a)| (n.trim().to_string(), a.trim().to_string())).collect();
            for name in active.keys().filter(|n| !wanted.contains_key(*n)) {
                fail::remove(name);
            }
            for (name, actions) in &wanted {
                if active.get(name) != Some(actions)
                    && let Err(e) = fail::cfg(name, actions)
                {
                    tracing::warn!(name, actions, error = %e, "bad failpoint line");
                }
            }
            active = wanted;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
