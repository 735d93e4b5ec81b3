//! One namespace across a cluster: every node answers listings, versions,
//! bucket counts and searches for the whole cluster, and says when an
//! answer may be missing keys.

use std::collections::{BTreeMap, BTreeSet};

use strata::api::pb;

use crate::cluster::{Net, ok};
use crate::common::*;

const FAST: &str = "\n[replication]\nretry_delay = \"200ms\"\nretry_attempts = 3\n";

fn item(bucket: &str, key: &str, data: &[u8], size: u64) -> pb::PutManyItem {
    let mut h = header(key);
    h.bucket = bucket.into();
    h.attributes = [("size_class".to_string(), pb::Value { kind: Some(pb::value::Kind::Number((size % 10) as f64)) })].into();
    pb::PutManyItem { header: Some(h), data: data.to_vec().into() }
}

/// Puts `n` keys through node 0 (sizes vary so sorts by size mean
/// something) and deletes every 20th; answers the live keys with their
/// versions.
async fn fill(net: &Net, bucket: &str, n: usize) -> BTreeMap<String, String> {
    let mut c = net.nodes[0].client().await;
    let mut live = BTreeMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let items = chunk.iter().map(|i| item(bucket, &format!("k/{i:05}"), &vec![b'x'; 1 + i % 97], (i % 97) as u64)).collect();
        for r in put_many(&mut c, items).await {
            assert!(r.error.is_empty(), "{r:?}");
            live.insert(r.key.clone(), r.object.unwrap().version);
        }
    }
    for i in (0..n).step_by(20) {
        let key = format!("k/{i:05}");
        c.delete(pb::DeleteRequest { bucket: bucket.into(), key: key.clone(), version: String::new() }).await.unwrap();
        live.remove(&key);
    }
    live
}

/// A whole listing in pages of `page`, each page asked of the next node.
async fn paged(net: &Net, nodes: &[usize], bucket: &str, page: u32) -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut clients = Vec::new();
    for &i in nodes {
        clients.push(net.nodes[i].client().await);
    }
    let (mut got, mut missing, mut token, mut turn) = (Vec::new(), BTreeSet::new(), String::new(), 0);
    loop {
        let c = &mut clients[turn % nodes.len()];
        turn += 1;
        let r = c.list(pb::ListRequest { bucket: bucket.into(), prefix: String::new(), page_token: token, limit: page }).await.unwrap();
        let r = r.into_inner();
        assert!(r.objects.len() <= page as usize);
        got.extend(r.objects.into_iter().map(|o| (o.key, o.version)));
        missing.extend(r.missing);
        token = r.next_page_token;
        if token.is_empty() {
            return (got, missing);
        }
    }
}

fn ls_json(net: &Net, i: usize, bucket: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["ls", "--json", "-b", bucket];
    args.extend_from_slice(extra);
    net.nodes[i].cli(&args)
}

/// Paged listings (7 a page, each page through the next node), `ls
/// --json`, `bucket ls` and `versions` on each of `nodes` all equal `want`.
async fn same_everywhere(net: &Net, nodes: &[usize], want: &[(String, String)]) {
    let (got, missing) = paged(net, nodes, "wide", 7).await;
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(got.len(), want.len(), "paged listing through nodes {nodes:?}");
    assert!(got == want, "paged listing through nodes {nodes:?} differs from what was written");
    let mut shown = None;
    for &i in nodes {
        let out = ok(ls_json(net, i, "wide", &[]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let keys: Vec<String> = v.as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_string()).collect();
        assert_eq!(keys, want.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), "ls --json on node {i}");
        let buckets = ok(net.nodes[i].cli(&["bucket", "ls", "--json"]));
        let b: serde_json::Value = serde_json::from_str(&buckets).unwrap();
        let wide = b.as_array().unwrap().iter().find(|b| b["name"] == "wide").expect("bucket wide listed").clone();
        assert_eq!(wide["objects"].as_u64(), Some(950), "bucket ls on node {i}: {buckets}");
        let v = ok(net.nodes[i].cli(&["versions", "--json", "-b", "wide", "k/00020"]));
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        let v: Vec<(String, bool)> =
            v.as_array().unwrap().iter().map(|o| (o["version"].as_str().unwrap().into(), o["latest"] == true)).collect();
        match &shown {
            None => shown = Some(v),
            Some(s) => assert_eq!(s, &v, "versions on node {i}"),
        }
    }
    let v = shown.unwrap();
    assert_eq!(v.len(), 2, "the put and the marker: {v:?}");
    assert!(v[0].1 && !v[1].1, "the marker is the latest: {v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_lists_counts_and_versions_the_whole_cluster() {
    let mut net = Net::start(3, FAST);
    net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "wide", "--replicas", "2"]));
    let live = fill(&net, "wide", 1000).await;
    assert_eq!(live.len(), 950);
    let want: Vec<(String, String)> = live.clone().into_iter().collect();

    same_everywhere(&net, &[0, 1, 2], &want).await;
    // One node down with two replicas: every key still has a copy up, so
    // the answer is whole and says so.
    net.nodes[1].kill9();
    same_everywhere(&net, &[0, 2], &want).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_replica_a_dead_node_makes_the_answer_partial_and_named() {
    let mut net = Net::start(3, FAST);
    let views = net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "thin", "--replicas", "1"]));
    let live = fill(&net, "thin", 300).await;
    let (got, missing) = paged(&net, &[0, 1, 2], "thin", 50).await;
    assert!(missing.is_empty());
    assert_eq!(got.len(), live.len());

    net.nodes[2].kill9();
    let dead = views[2].node_id;
    let (got, missing) = paged(&net, &[0, 1], "thin", 50).await;
    assert!(got.len() < live.len(), "a third of the keys lived only on the dead node");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing.first().unwrap().starts_with(&format!("node {dead} (")), "{missing:?}");

    let out = ls_json(&net, 0, "thin", &[]);
    assert!(!out.status.success(), "a partial answer fails without --allow-partial");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partial answer") && err.contains(&format!("node {dead}")) && err.contains("--allow-partial"), "{err}");
    let out = ls_json(&net, 0, "thin", &["--allow-partial"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: partial answer"));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown.as_array().unwrap().len(), got.len());
    let out = net.nodes[1].cli(&["bucket", "ls"]);
    assert!(!out.status.success(), "bucket counts are partial too");
}
