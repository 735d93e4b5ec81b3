//! Candidates sorted by key come from the term rows, including rows written
//! before terms kept keys, and only live versions reach a page.

use std::sync::Arc;

use super::{Candidates, IndexDef, MetaOptions, MetaStore, NewVersion, ObjectRecord, TermMaker, TermMatch};
use strata_config::IndexingMode;
use strata_store::Digest;

/// One term per object: its `c` attribute.
struct ByC;

impl TermMaker for ByC {
    fn terms(&self, _: &IndexDef, records: &[ObjectRecord]) -> Result<Vec<Vec<Vec<u8>>>, String> {
        Ok(records
            .iter()
            .map(|r| r.attributes.get("c").and_then(|c| c.as_str()).map(|c| vec![c.as_bytes().to_vec()]).unwrap_or_default())
            .collect())
    }
}

fn put(key: &str, c: &str, n: u8) -> NewVersion {
    NewVersion {
        bucket: "default".into(),
        key: key.into(),
        digest: Digest([n; 32]),
        size: 1,
        stored_size: 1,
        content_type: "x".into(),
        attributes: serde_json::json!({ "c": c }).as_object().unwrap().clone(),
        condition: Default::default(),
        fresh_blob: true,
        inline: None,
        identity: None,
        request_id: None,
    }
}

#[tokio::test]
async fn candidates_sorted_by_key_come_from_terms_old_and_new() {
    let meta = MetaStore::open(MetaOptions { indexing: IndexingMode::Lazy, ..MetaOptions::in_memory() }).await.unwrap();
    meta.set_term_maker(Arc::new(ByC));
    let index = meta.create_index("default", "c", &["c".into()], "test").await.unwrap();
    let items = [put("m", "x", 1), put("b", "x", 2), put("z", "y", 3), put("a", "x", 4)];
    for r in meta.commit_puts(&items).await.unwrap() {
        r.unwrap();
    }
    meta.catch_up_indexes(100).await.unwrap();
    // Rows from before keys were kept: their keys are looked up.
    sqlx::query("UPDATE index_terms SET key = NULL WHERE version_id % 2 = 0").execute(&meta.write).await.unwrap();
    // "b" moves to another term: its old version's term stays until swept.
    for r in meta.commit_puts(&[put("b", "y", 5)]).await.unwrap() {
        r.unwrap();
    }
    meta.catch_up_indexes(100).await.unwrap();
    let index = meta.list_indexes().await.unwrap().into_iter().find(|i| i.id == index.id).unwrap();
    let x = Candidates::Index { index, groups: vec![vec![TermMatch::Exact(b"x".to_vec())]] };

    let keys = |found: super::CandidateKeys| found.keyed.into_iter().map(|(_, k)| k).collect::<Vec<_>>();
    assert_eq!(keys(meta.view().await.unwrap().candidate_keys(&x, None, false, 100, 100).await.unwrap()), ["a", "b", "m"]);
    assert_eq!(keys(meta.view().await.unwrap().candidate_keys(&x, None, true, 100, 100).await.unwrap()), ["m", "b", "a"]);
    assert_eq!(keys(meta.view().await.unwrap().candidate_keys(&x, Some(("a", None)), false, 100, 100).await.unwrap()), ["b", "m"]);
    assert_eq!(keys(meta.view().await.unwrap().candidate_keys(&x, Some(("m", None)), true, 100, 100).await.unwrap()), ["b", "a"]);
    // The first `take` in key order, of `count` (up to `max`) after the cursor.
    let first = meta.view().await.unwrap().candidate_keys(&x, None, false, 100, 2).await.unwrap();
    assert_eq!((first.count, keys(first.clone())), (3, vec!["a".to_string(), "b".to_string()]));
    assert_eq!(meta.view().await.unwrap().candidate_keys(&x, None, false, 2, 1).await.unwrap().count, 2, "counted up to max");
    // After one version of a key, its others still come (a chunk may end
    // between two versions of a key).
    let old_b = first.keyed[1].0;
    let rest = meta.view().await.unwrap().candidate_keys(&x, Some(("b", Some(old_b - 1))), false, 100, 100).await.unwrap();
    assert_eq!(keys(rest), ["b", "m"]);

    // The superseded version of "b" is not live: a page leaves it out.
    let ids: Vec<i64> =
        meta.view().await.unwrap().candidate_keys(&x, None, false, 100, 100).await.unwrap().keyed.into_iter().map(|(id, _)| id).collect();
    let live: Vec<String> = meta.view().await.unwrap().live_in_order("default", &ids).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(live, ["a", "m"]);
    // Nor a deleted key's.
    let _ = meta.delete("default", "m", None).await.unwrap();
    let live: Vec<String> = meta.view().await.unwrap().live_in_order("default", &ids).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(live, ["a"]);
}

/// Candidates and the objects read after them come from one snapshot: a
/// key overwritten between the two reads is still found (as it was).
#[tokio::test]
async fn a_view_keeps_a_key_overwritten_mid_search() {
    let dir = tempfile::tempdir().unwrap();
    let opts = MetaOptions { dir: Some(dir.path().to_path_buf()), indexing: IndexingMode::Eager, ..MetaOptions::in_memory() };
    let meta = MetaStore::open(opts).await.unwrap();
    meta.set_term_maker(Arc::new(ByC));
    meta.create_index("default", "c", &["c".into()], "test").await.unwrap();
    for r in meta.commit_puts(&[put("a", "x", 1), put("b", "x", 2)]).await.unwrap() {
        r.unwrap();
    }
    let index = meta.list_indexes().await.unwrap().pop().unwrap();
    let x = Candidates::Index { index, groups: vec![vec![TermMatch::Exact(b"x".to_vec())]] };
    let mut view = meta.view().await.unwrap();
    let ids: Vec<i64> = view.candidate_keys(&x, None, false, 100, 100).await.unwrap().keyed.into_iter().map(|(id, _)| id).collect();
    // Another client overwrites "a" with the same term.
    for r in meta.commit_puts(&[put("a", "x", 3)]).await.unwrap() {
        r.unwrap();
    }
    let live: Vec<String> = view.live_in_order("default", &ids).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(live, ["a", "b"]);
    drop(view);
    // A new view sees the overwrite.
    let mut view = meta.view().await.unwrap();
    let ids: Vec<i64> = view.candidate_keys(&x, None, false, 100, 100).await.unwrap().keyed.into_iter().map(|(id, _)| id).collect();
    let live = view.live_in_order("default", &ids).await.unwrap();
    assert_eq!(live.iter().map(|r| (r.key.as_str(), r.digest.unwrap().0[0])).collect::<Vec<_>>(), [("a", 3), ("b", 2)]);
}

/// One term per word of the `c` attribute.
struct Words;

impl TermMaker for Words {
    fn terms(&self, _: &IndexDef, records: &[ObjectRecord]) -> Result<Vec<Vec<Vec<u8>>>, String> {
        Ok(records.iter().map(|r| r.attributes["c"].as_str().unwrap().split(' ').map(|w| w.as_bytes().to_vec()).collect()).collect())
    }
}

/// A group of several words (a full-text match) gives exactly the versions
/// holding all of them: the candidate count is the intersection's size.
#[tokio::test]
async fn a_group_of_words_gives_the_versions_holding_all_of_them() {
    let meta = MetaStore::open(MetaOptions { indexing: IndexingMode::Lazy, ..MetaOptions::in_memory() }).await.unwrap();
    meta.set_term_maker(Arc::new(Words));
    meta.create_index("default", "c", &["c".into()], "test").await.unwrap();
    let items = [put("k0", "a b c", 1), put("k1", "a b", 2), put("k2", "b c", 3), put("k3", "c a", 4), put("k4", "a", 5)];
    for r in meta.commit_puts(&items).await.unwrap() {
        r.unwrap();
    }
    meta.catch_up_indexes(100).await.unwrap();
    let index = meta.list_indexes().await.unwrap().pop().unwrap();
    let words = |ws: &[&str]| Candidates::Index {
        index: index.clone(),
        groups: vec![ws.iter().map(|w| TermMatch::Exact(w.as_bytes().to_vec())).collect()],
    };
    for (ws, want) in [
        (&["a", "b"][..], &["k0", "k1"][..]),
        (&["b", "a"], &["k0", "k1"]),
        (&["a", "b", "c"], &["k0"]),
        (&["c", "a"], &["k0", "k3"]),
        (&["a", "zz"], &[]),
    ] {
        let found = meta.view().await.unwrap().candidate_keys(&words(ws), None, false, 100, 100).await.unwrap();
        let keys: Vec<String> = found.keyed.into_iter().map(|(_, k)| k).collect();
        assert_eq!((found.count as usize, keys), (want.len(), want.iter().map(|k| k.to_string()).collect()), "{ws:?}");
        let ids = meta.view().await.unwrap().candidate_ids(&words(ws), 100).await.unwrap();
        assert_eq!(ids.count as usize, want.len(), "{ws:?}");
    }
}

/// Every connection, reads and writes, plans without looking at bound
/// values, so a page's `LIMIT ?` does not make SQLite prepare its
/// statement again.
#[tokio::test]
async fn every_connection_has_stable_plans() {
    async fn stable(pool: &sqlx::SqlitePool) -> bool {
        use libsqlite3_sys::{SQLITE_DBCONFIG_ENABLE_QPSG, sqlite3_db_config};
        let mut conn = pool.acquire().await.unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        let mut on: std::ffi::c_int = -1;
        // SAFETY: an open connection; -1 asks for the setting, written to `on`.
        let rc = unsafe { sqlite3_db_config(handle.as_raw_handle().as_ptr(), SQLITE_DBCONFIG_ENABLE_QPSG, -1, &mut on as *mut _) };
        rc == 0 && on == 1
    }
    let dir = tempfile::tempdir().unwrap();
    let file = MetaStore::open(MetaOptions { dir: Some(dir.path().to_path_buf()), ..MetaOptions::in_memory() }).await.unwrap();
    let memory = MetaStore::open(MetaOptions::in_memory()).await.unwrap();
    assert!(stable(&file.write).await && stable(&file.read).await && stable(&memory.write).await);
}

/// Fails for batches of more than `max` objects (as a plugin past its
/// deadline does on many large ones), and always for `c` = "bad".
struct Picky {
    max: usize,
}

impl TermMaker for Picky {
    fn terms(&self, index: &IndexDef, records: &[ObjectRecord]) -> Result<Vec<Vec<Vec<u8>>>, String> {
        if records.len() > self.max {
            return Err(format!("{} objects ran past the deadline", records.len()));
        }
        if records.iter().any(|r| r.attributes["c"] == "bad") {
            return Err("bad object".into());
        }
        ByC.terms(index, records)
    }
}

/// A batch the plugin cannot finish is split until it passes: the backfill
/// ends instead of failing at the same place for ever. One object that
/// fails alone keeps the index behind, with the reason.
#[tokio::test]
async fn a_backfill_that_fails_in_big_batches_goes_on_in_smaller_ones() {
    let meta = MetaStore::open(MetaOptions { indexing: IndexingMode::Lazy, ..MetaOptions::in_memory() }).await.unwrap();
    meta.set_term_maker(Arc::new(Picky { max: 5 }));
    let items: Vec<NewVersion> = (0..40).map(|i| put(&format!("k{i:02}"), "x", i as u8)).collect();
    for r in meta.commit_puts(&items).await.unwrap() {
        r.unwrap();
    }
    meta.create_index("default", "c", &["c".into()], "test").await.unwrap();
    meta.catch_up_indexes(64).await.unwrap();
    let ix = meta.list_indexes().await.unwrap().pop().unwrap();
    assert!(ix.ready && ix.error.is_none() && ix.lag(meta.head().await.unwrap()) == 0, "{ix:?}");

    for r in meta.commit_puts(&[put("a", "x", 50), put("b", "bad", 51), put("c", "x", 52)]).await.unwrap() {
        r.unwrap();
    }
    meta.catch_up_indexes(64).await.unwrap();
    meta.catch_up_indexes(64).await.unwrap();
    let ix = meta.list_indexes().await.unwrap().pop().unwrap();
    assert_eq!(ix.error.as_deref(), Some("bad object"));
    assert_eq!(ix.lag(meta.head().await.unwrap()), 2, "stopped at the bad object: {ix:?}");
}
