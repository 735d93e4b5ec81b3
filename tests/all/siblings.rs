//! Concurrent versions of one key (siblings), resolved by the bucket's
//! replication-strategy plugin, through real processes.

use std::time::{Duration, Instant};

use strata::api::pb;

use crate::cluster::{Net, ok, status};
use crate::common::*;
use crate::replication::{FAST_RETRY, get_from, in_bucket, sees_down};

/// Waits until node `i` serves `want` as the key's live bytes; answers the
/// live version.
async fn serves(net: &Net, i: usize, bucket: &str, key: &str, want: &[u8]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = net.nodes[i].client().await;
    loop {
        let (info, data) = get_from(&mut c, bucket, key, "").await.expect("get");
        if data == want {
            return info.version;
        }
        assert!(Instant::now() < deadline, "node {i} still serves {} ({} bytes) for {key}", info.version, data.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until node `i` itself holds `n` versions (its own count, not the
/// cluster's merged history).
async fn holds_versions(net: &Net, i: usize, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = net.nodes[i].client().await;
    loop {
        let got = stats(&mut c).await.versions;
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "node {i} holds {got} versions, not {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resolve_decides_between_siblings_written_on_both_sides_of_a_partition() {
    let net = Net::start(3, FAST_RETRY);
    net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "sib", "--replicas", "3", "--strategy", "larger-wins", "--consistency", "eventual"]));
    let mut one = net.nodes[0].client().await;
    // A first version of each key on every node: both sides' writes
    // descend from it.
    for key in ["k", "k2"] {
        put(&mut one, in_bucket("sib", key), b"base").await.expect("base");
    }
    for i in 0..3 {
        holds_versions(&net, i, 2).await;
    }
    net.partition(&[2]);
    sees_down(&net, 2, 2).await;
    sees_down(&net, 0, 1).await;
    let mut three = net.nodes[2].client().await;

    // k: the minority writes the larger object first, the majority a smaller
    // one after; the last writer would be the small one, the strategy picks
    // the large.
    let big = random_bytes(200_000);
    let small = b"small, and newer".to_vec();
    let b = put(&mut three, in_bucket("sib", "k"), &big).await.expect("eventual: the minority side writes");
    let a = put(&mut one, in_bucket("sib", "k"), &small).await.expect("the majority side writes");
    assert!(a.version > b.version, "{} then {}", b.version, a.version);
    // k2: the newer is the larger, so the strategy agrees with the last
    // writer and no resolution is written.
    let b2 = put(&mut three, in_bucket("sib", "k2"), b"small first").await.unwrap();
    let big2 = random_bytes(100_000);
    let a2 = put(&mut one, in_bucket("sib", "k2"), &big2).await.unwrap();
    assert!(a2.version > b2.version);

    net.heal();
    net.agree(&[0, 1, 2], 3).await;
    let mut resolution = None;
    for i in 0..3 {
        let live = serves(&net, i, "sib", "k", &big).await;
        assert!(live > a.version, "node {i}: the winner is live as a resolution newer than both siblings, not as {live}");
        assert_eq!(resolution.get_or_insert(live.clone()), &live, "every node serves the same resolution");
        assert_eq!(serves(&net, i, "sib", "k2", &big2).await, a2.version, "node {i}: the newest sibling stays live");
        // Each node's own history: base, both siblings and the resolution
        // of k; base and both siblings of k2.
        holds_versions(&net, i, 4 + 3).await;
        let mut c = net.nodes[i].client().await;
        let (loser, data) = get_from(&mut c, "sib", "k", &a.version).await.expect("the losing sibling stays readable");
        assert_eq!((loser.version, data), (a.version.clone(), small.clone()));
        let history: Vec<String> = c
            .list_versions(pb::ListVersionsRequest { bucket: "sib".into(), key: "k".into() })
            .await
            .unwrap()
            .into_inner()
            .versions
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(history.len(), 4, "node {i}: {history:?}");
        assert!(history.contains(&a.version) && history.contains(&b.version), "node {i}: {history:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn siblings_that_no_one_node_is_sent_both_of_are_resolved_all_the_same() {
    let net = Net::start(3, FAST_RETRY);
    net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "sib2", "--replicas", "2", "--strategy", "larger-wins", "--consistency", "eventual"]));
    let mut ids = Vec::new();
    for n in &net.nodes {
        ids.push(status(&mut n.client().await).await.node_id);
    }
    // A key placed on the two nodes other than the lowest-id one, written
    // through the lowest-id node during a partition: its copies go to the
    // majority side, so the node that would resolve by its placement
    // alone never holds the other side's sibling.
    let lo = (0..3).min_by_key(|&i| ids[i]).unwrap();
    let mut through = net.nodes[lo].client().await;
    let mut away = None;
    for i in 0..40 {
        let key = format!("r{i}");
        put(&mut through, in_bucket("sib2", &key), b"base").await.unwrap();
        let info =
            through.stat(pb::StatRequest { bucket: "sib2".into(), key: key.clone(), version: String::new() }).await.unwrap().into_inner();
        if !info.replicas.iter().any(|r| r.node_id == ids[lo]) {
            away = Some(key);
            break;
        }
    }
    let away = away.expect("some key placed away from the lowest-id node");
    let cut = (0..3).filter(|&i| i != lo).max().unwrap();
    let other = 3 - lo - cut;
    net.partition(&[cut]);
    sees_down(&net, cut, 2).await;
    sees_down(&net, lo, 1).await;
    let big = random_bytes(50_000);
    put(&mut net.nodes[cut].client().await, in_bucket("sib2", &away), &big).await.unwrap();
    let small = put(&mut through, in_bucket("sib2", &away), b"small, through a node off the placement").await.unwrap();
    net.heal();
    net.agree(&[0, 1, 2], 3).await;
    for i in 0..3 {
        serves(&net, i, "sib2", &away, &big).await;
    }
    // A later write through any node supersedes what it saw: it stays live.
    let later = put(&mut net.nodes[other].client().await, in_bucket("sib2", &away), b"later").await.unwrap();
    assert!(later.version > small.version);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        assert_eq!(serves(&net, i, "sib2", &away, b"later").await, later.version, "node {i}");
    }
}
