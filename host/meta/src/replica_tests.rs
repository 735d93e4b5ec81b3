//! Versions recorded with an identity minted elsewhere (replication): the
//! newest by (stamp, node) is live whatever order copies arrive in, a
//! retry records nothing twice, retention and deletes rank by version, and
//! the running totals stay exact.

use super::{Identity, MetaOptions, MetaStore, NewVersion};
use strata_store::Digest;

async fn store(max_versions: u32) -> std::sync::Arc<MetaStore> {
    MetaStore::open(MetaOptions { max_versions, ..MetaOptions::in_memory() }).await.unwrap()
}

fn id(stamp: u64, node: &str) -> Identity {
    Identity {
        version: format!("{stamp:016x}-{node}"),
        stamp,
        node: node.into(),
        created_ms: 1,
        modified_ms: 2,
        replicas: vec![1, 2],
        parents: None,
    }
}

/// An identity whose writer saw `parents` as the key's newest.
fn child(stamp: u64, node: &str, parents: &[&Identity]) -> Identity {
    Identity { parents: Some(parents.iter().map(|p| p.version.clone()).collect()), ..id(stamp, node) }
}

async fn heads(meta: &MetaStore, key: &str) -> Vec<String> {
    meta.heads("default", key, 10).await.unwrap().into_iter().map(|h| h.record.version).collect()
}

fn copy(key: &str, byte: u8, identity: Identity) -> NewVersion {
    NewVersion {
        bucket: "default".into(),
        key: key.into(),
        digest: Digest([byte; 32]),
        size: 10 + byte as u64,
        stored_size: 1,
        content_type: "x".into(),
        attributes: Default::default(),
        condition: Default::default(),
        fresh_blob: true,
        inline: None,
        identity: Some(identity),
        request_id: None,
    }
}

async fn put(meta: &MetaStore, v: NewVersion) {
    meta.commit_puts(&[v]).await.unwrap().pop().unwrap().unwrap();
}

#[tokio::test]
async fn a_late_older_copy_goes_into_history_not_live() {
    let meta = store(0).await;
    put(&meta, copy("k", 2, id(200, "b"))).await;
    put(&meta, copy("k", 1, id(100, "a"))).await; // arrives second, written first
    let live = meta.get("default", "k", None).await.unwrap();
    assert_eq!(live.version, id(200, "b").version);
    let all: Vec<String> = meta.list_versions("default", "k").await.unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(all, vec![id(200, "b").version, id(100, "a").version], "newest first, by version");
    let s = meta.stats().await.unwrap();
    assert_eq!((s.objects, s.versions, s.live_bytes), (1, 2, 12));
    // The node's clock moved past both: its own next write orders last.
    assert!(meta.mint(vec![]).stamp > 200);
}

#[tokio::test]
async fn copies_in_one_batch_in_any_order_leave_the_newest_live() {
    let meta = store(0).await;
    let batch = [copy("k", 3, id(300, "a")), copy("k", 1, id(100, "a")), copy("k", 2, id(200, "a"))];
    for r in meta.commit_puts(&batch).await.unwrap() {
        r.unwrap();
    }
    assert_eq!(meta.get("default", "k", None).await.unwrap().version, id(300, "a").version);
    assert_eq!(meta.stats().await.unwrap().live_bytes, 13);
}

#[tokio::test]
async fn a_retried_copy_is_recorded_once() {
    let meta = store(0).await;
    let v = copy("k", 3, id(300, "a"));
    put(&meta, v.clone()).await;
    put(&meta, v.clone()).await;
    // And twice in one batch.
    for r in meta.commit_puts(&[v.clone(), v]).await.unwrap() {
        r.unwrap();
    }
    let s = meta.stats().await.unwrap();
    assert_eq!((s.objects, s.versions, s.blobs), (1, 1, 1));
}

#[tokio::test]
async fn retention_keeps_the_live_version_when_an_older_copy_arrives_late() {
    let meta = store(1).await;
    put(&meta, copy("k", 2, id(200, "b"))).await;
    put(&meta, copy("k", 1, id(100, "a"))).await;
    assert_eq!(meta.get("default", "k", None).await.unwrap().version, id(200, "b").version);
    assert_eq!(meta.stats().await.unwrap().versions, 1, "the late, older copy is the one retention drops");
}

#[tokio::test]
async fn a_replicated_marker_hides_only_older_versions() {
    let meta = store(0).await;
    put(&meta, copy("k", 1, id(100, "a"))).await;
    meta.record_marker("default", "k", &id(150, "c")).await.unwrap();
    assert!(meta.get("default", "k", None).await.is_err(), "the marker is newest: deleted");
    // A copy older than the marker stays hidden; a newer write is live.
    put(&meta, copy("k", 2, id(120, "b"))).await;
    assert!(meta.get("default", "k", None).await.is_err());
    put(&meta, copy("k", 3, id(180, "b"))).await;
    assert_eq!(meta.get("default", "k", None).await.unwrap().version, id(180, "b").version);
    // Recording the marker again changes nothing.
    meta.record_marker("default", "k", &id(150, "c")).await.unwrap();
    let s = meta.stats().await.unwrap();
    assert_eq!((s.objects, s.versions), (1, 4));
    // Removing the live version for good brings back the newest remaining
    // one by version, which is the marker: the key stays deleted.
    meta.delete("default", "k", Some(&id(180, "b").version)).await.unwrap();
    assert!(meta.get("default", "k", None).await.is_err());
}

#[tokio::test]
async fn versions_written_without_seeing_each_other_are_heads_until_one_names_them() {
    let meta = store(0).await;
    let base = child(100, "a", &[]);
    put(&meta, copy("k", 1, base.clone())).await;
    assert_eq!(heads(&meta, "k").await, vec![base.version.clone()]);
    // Two writes that both saw the base: siblings, newest first.
    let (x, y) = (child(200, "a", &[&base]), child(210, "b", &[&base]));
    put(&meta, copy("k", 2, x.clone())).await;
    put(&meta, copy("k", 3, y.clone())).await;
    assert_eq!(heads(&meta, "k").await, [y.version.clone(), x.version.clone()]);
    // A resolution names both; a marker that arrives before the version it
    // deletes leaves that version no head when it comes.
    let r = child(300, "a", &[&x, &y]);
    meta.record_marker("default", "k", &r).await.unwrap();
    assert_eq!(heads(&meta, "k").await, vec![r.version.clone()]);
    let late_parent = child(400, "c", &[&r]);
    let late_child = child(500, "c", &[&late_parent]);
    put(&meta, copy("k", 5, late_child.clone())).await;
    put(&meta, copy("k", 4, late_parent)).await;
    assert_eq!(heads(&meta, "k").await, vec![late_child.version.clone()]);
    // Settling drops the head flag; versions without parents are never heads.
    let z = child(600, "d", &[&r]);
    put(&meta, copy("k", 6, z.clone())).await;
    meta.settle_heads("default", "k", std::slice::from_ref(&late_child.version)).await.unwrap();
    assert_eq!(heads(&meta, "k").await, vec![z.version.clone()]);
    put(&meta, copy("plain", 7, id(700, "a"))).await;
    assert!(heads(&meta, "plain").await.is_empty());
    assert_eq!(meta.parents("default", "k", &z.version).await.unwrap(), Some(vec![r.version.clone()]));
}
