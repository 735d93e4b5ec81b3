//! The anti-entropy digests the triggers keep equal a fold over the version
//! rows after every kind of write, and after older rows are filled in.

use std::collections::BTreeMap;

use super::entropy::{PartDigest, mark, partition};
use super::{Identity, MetaOptions, MetaStore, NewVersion};
use strata_store::Digest;

async fn store() -> std::sync::Arc<MetaStore> {
    MetaStore::open(MetaOptions::in_memory()).await.unwrap()
}

fn copy(key: &str, stamp: u64, replicas: Vec<u64>) -> NewVersion {
    NewVersion {
        bucket: "default".into(),
        key: key.into(),
        digest: Digest([stamp as u8; 32]),
        size: stamp,
        stored_size: 1,
        content_type: "x".into(),
        attributes: Default::default(),
        condition: Default::default(),
        fresh_blob: true,
        inline: None,
        identity: Some(Identity {
            version: format!("{stamp:016x}-a"),
            stamp,
            node: "a".into(),
            created_ms: 1,
            modified_ms: 2,
            replicas,
            parents: None,
        }),
        request_id: None,
    }
}

/// The digests as the version rows say they should be, per peer.
async fn fold(meta: &MetaStore) -> BTreeMap<u64, Vec<PartDigest>> {
    let mut all: BTreeMap<(u64, u16), (i64, i64)> = BTreeMap::new();
    for p in meta.placed_after(0, 1_000_000, true).await.unwrap() {
        for peer in p.replicas {
            let e = all.entry((peer, partition(&p.bucket, &p.key))).or_default();
            e.0 ^= mark(&p.bucket, &p.key, &p.version);
            e.1 += 1;
        }
    }
    let mut out: BTreeMap<u64, Vec<PartDigest>> = (1..=3).map(|p| (p, Vec::new())).collect();
    for ((peer, part), (digest, n)) in all {
        out.entry(peer).or_default().push(PartDigest { part, digest, n });
    }
    out
}

async fn check(meta: &MetaStore, step: &str) {
    let want = fold(meta).await;
    for (peer, want) in want {
        let got = meta.entropy_digests(peer).await.unwrap().expect("ready");
        assert_eq!(got, want, "peer {peer} after {step}");
    }
}

#[tokio::test]
async fn digests_follow_every_write_and_the_backfill() {
    let meta = store().await;
    let mut batch = Vec::new();
    for i in 0..40u64 {
        let replicas = if i % 2 == 0 { vec![1, 2] } else { vec![2, 3] };
        batch.push(copy(&format!("k{i}"), 100 + i, replicas));
    }
    meta.commit_puts(&batch).await.unwrap();
    check(&meta, "a batch").await;
    assert!(meta.entropy_digests(1).await.unwrap().unwrap().iter().map(|d| d.n).sum::<i64>() == 20);

    // Newer versions of k0: retention (2 kept) drops the oldest.
    for stamp in [300, 301] {
        meta.commit_puts(&[copy("k0", stamp, vec![1, 2])]).await.unwrap();
    }
    assert_eq!(meta.list_versions("default", "k0").await.unwrap().len(), 2);
    check(&meta, "retention").await;

    meta.set_replicas("default", "k1", &format!("{:016x}-a", 101), &[1, 3]).await.unwrap();
    check(&meta, "a placement change").await;
    let rows = vec![("default".to_string(), "k3".to_string(), format!("{:016x}-a", 103), vec![3])];
    meta.set_replicas_many(&rows).await.unwrap();
    check(&meta, "placement changes in a batch").await;

    meta.delete("default", "k4", None).await.unwrap();
    check(&meta, "a delete marker").await;
    meta.delete("default", "k6", Some(&format!("{:016x}-a", 106))).await.unwrap();
    check(&meta, "a version deleted").await;

    // Rows from before the digests were kept: the digests empty out, and
    // the backfill brings them back.
    sqlx::query("UPDATE versions SET part = NULL, mark = NULL").execute(&meta.write).await.unwrap();
    assert_eq!(meta.entropy_digests(1).await.unwrap(), None, "not ready while rows lack their mark");
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM entropy_digests WHERE n != 0 OR digest != 0").fetch_one(&meta.write).await.unwrap();
    assert_eq!(n, 0, "unmarking every row takes every row out");
    let marked = meta.backfill_entropy(7).await.unwrap();
    assert!(marked >= 40, "{marked}");
    check(&meta, "the backfill").await;
}

#[tokio::test]
async fn damaged_digests_and_marks_are_put_right() {
    let meta = store().await;
    let batch: Vec<NewVersion> = (0..30u64).map(|i| copy(&format!("k{i}"), 100 + i, vec![1, 2])).collect();
    meta.commit_puts(&batch).await.unwrap();
    check(&meta, "a batch").await;
    let part = partition("default", "k5") as i64;

    // A digest no longer matching its rows.
    sqlx::query("UPDATE entropy_digests SET digest = digest + 1 WHERE part = ? AND peer = 1")
        .bind(part)
        .execute(&meta.write)
        .await
        .unwrap();
    let r = meta.rebuild_entropy_partition(part as u16).await.unwrap();
    assert_eq!(r, super::entropy::Rebuilt { versions: 0, digests: true });
    check(&meta, "a damaged digest rebuilt").await;
    assert_eq!(meta.rebuild_entropy_partition(part as u16).await.unwrap(), Default::default(), "nothing left to fix");

    // A version's mark that does not match its name (the trigger folds
    // the wrong mark into the digests).
    sqlx::query("UPDATE versions SET mark = mark + 1 WHERE key = 'k5'").execute(&meta.write).await.unwrap();
    let r = meta.rebuild_entropy_partition(part as u16).await.unwrap();
    assert_eq!(r.versions, 1);
    check(&meta, "a damaged mark recomputed").await;

    // Partitions that cannot be: text, and out of range. Digests skip them
    // (instead of failing to decode), and the heal moves the rows back.
    sqlx::query("UPDATE versions SET part = 'abc' WHERE key = 'k7'").execute(&meta.write).await.unwrap();
    sqlx::query("UPDATE versions SET part = 99999 WHERE key = 'k8'").execute(&meta.write).await.unwrap();
    let got = meta.entropy_digests(1).await.unwrap().expect("ready");
    assert!(got.iter().all(|d| d.part < super::entropy::PARTITIONS));
    assert_eq!(got.iter().map(|d| d.n).sum::<i64>(), 28, "the two rows are out of the valid partitions");
    assert_eq!(meta.heal_entropy().await.unwrap(), 2);
    check(&meta, "impossible partitions healed").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entropy_digests WHERE typeof(part) != 'integer' OR part >= 4096")
        .fetch_one(&meta.write)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(meta.heal_entropy().await.unwrap(), 0);
}
