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

    // A key whose only copy is on the dead node is out of reach, not gone.
    let seen: BTreeSet<&String> = got.iter().map(|(k, _)| k).collect();
    let lost = live.keys().find(|k| !seen.contains(k)).unwrap();
    let mut c = net.nodes[0].client().await;
    let err = get(&mut c, pb::GetRequest { bucket: "thin".into(), key: lost.clone(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&format!("node {dead}")), "{err:?}");

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

/// A whole search for `size_class = 3` by size descending, in pages of
/// `page`, each page asked of the next node.
async fn searched(net: &Net, nodes: &[usize], bucket: &str, page: u32) -> Vec<String> {
    let filter = pb::Filter {
        kind: Some(pb::filter::Kind::Condition(pb::Condition {
            field: "size_class".into(),
            op: "eq".into(),
            values: vec![pb::Value { kind: Some(pb::value::Kind::Number(3.0)) }],
        })),
    };
    let (mut got, mut cursor, mut turn) = (Vec::new(), String::new(), 0);
    loop {
        let mut c = net.nodes[nodes[turn % nodes.len()]].client().await;
        turn += 1;
        let req = pb::SearchRequest {
            bucket: bucket.into(),
            filter: Some(filter.clone()),
            sort: "size".into(),
            descending: true,
            limit: page,
            cursor,
            no_index: false,
        };
        let r = c.search(req).await.unwrap().into_inner();
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        assert!(r.objects.len() <= page as usize);
        got.extend(r.objects.into_iter().map(|o| o.key));
        cursor = r.next_cursor;
        if cursor.is_empty() {
            return got;
        }
    }
}

/// The index's copies as `index ls` on node `i` shows them: (node, state).
fn copies(net: &Net, i: usize) -> Vec<(String, String)> {
    let out = ok(net.nodes[i].cli(&["index", "ls", "--json", "-b", "wide"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().iter().map(|c| (c["node"].as_str().unwrap().to_string(), c["state"].as_str().unwrap().to_string())).collect()
}

async fn all_ready(net: &Net, i: usize, n: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let c = copies(net, i);
        if c.len() == n && c.iter().all(|(_, s)| s == "ready") {
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "node {i} never saw {n} ready copies: {c:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_merge_across_nodes_and_an_index_reaches_every_node_and_a_later_one() {
    let mut net = Net::start(3, FAST);
    net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "wide", "--replicas", "2"]));
    let live = fill(&net, "wide", 1000).await;
    // Overwrite some matches with a non-matching version through another
    // node: the old version still matches wherever it lingers.
    let mut c = net.nodes[1].client().await;
    let moved: Vec<String> = live.keys().filter(|k| k[2..].parse::<usize>().unwrap() % 97 == 3).take(5).cloned().collect();
    let items = moved.iter().map(|k| item("wide", k, b"changed", 4)).collect();
    assert!(put_many(&mut c, items).await.iter().all(|r| r.error.is_empty()));
    let mut want: Vec<(u64, String)> = live
        .keys()
        .filter(|k| !moved.contains(k))
        .filter_map(|k| {
            let i: usize = k[2..].parse().unwrap();
            ((i % 97) % 10 == 3).then(|| ((1 + i % 97) as u64, k.clone()))
        })
        .collect();
    want.sort();
    want.reverse();
    let want: Vec<String> = want.into_iter().map(|(_, k)| k).collect();
    assert!(want.len() > 50);

    assert_eq!(searched(&net, &[0, 1, 2], "wide", 7).await, want, "a scan on every node, merged");

    ok(net.nodes[0].cli(&["index", "create", "by-class", "--field", "size_class", "--type", "btree", "-b", "wide", "--wait"]));
    for i in 0..3 {
        let c = all_ready(&net, i, 3).await;
        assert!(c.iter().all(|(n, _)| n.starts_with("node ")), "{c:?}");
        let out = ok(net.nodes[i].cli(&["search", "size_class = 3", "-b", "wide", "--sort", "-size", "--limit", "1000", "--explain"]));
        assert_eq!(out.matches("index by-class (btree) serves").count(), 3, "each node's plan uses its copy: {out}");
        assert!(out.contains(&format!("{} found", want.len())), "{out}");
    }
    assert_eq!(searched(&net, &[2, 0, 1], "wide", 7).await, want, "indexed searches, merged");

    // A node that joins afterwards builds the index too, and serves with it.
    let d = net.add_like_the_rest(FAST);
    ok(net.nodes[d].cli(&["cluster", "join", &net.peer(0)]));
    net.agree(&[0, 1, 2, 3], 4).await;
    all_ready(&net, d, 4).await;
    let out = ok(net.nodes[d].cli(&["search", "size_class = 3", "-b", "wide", "--sort", "-size", "--limit", "1000", "--explain"]));
    assert_eq!(out.matches("index by-class (btree) serves").count(), 4, "{out}");
    assert_eq!(searched(&net, &[3, 1], "wide", 7).await, want);

    ok(net.nodes[3].cli(&["index", "rm", "by-class", "-b", "wide"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !copies(&net, 1).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the index stays: {:?}", copies(&net, 1));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_from_the_majority_and_an_eventual_bucket_say_what_they_may_lack() {
    let net = Net::start(3, FAST);
    net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "strong2", "--replicas", "2"]));
    ok(net.nodes[0].cli(&["bucket", "create", "loose", "--replicas", "2", "--consistency", "eventual"]));
    fill(&net, "strong2", 40).await;
    fill(&net, "loose", 40).await;
    net.partition(&[2]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // The lone node: what the majority writes meanwhile never reaches
        // it, so even a 2-replica bucket's answer is partial there.
        let (_, lone) = paged(&net, &[2], "strong2", 100).await;
        let (_, majority) = paged(&net, &[0], "strong2", 100).await;
        let (_, loose) = paged(&net, &[0], "loose", 100).await;
        if lone.len() == 2 && majority.is_empty() && loose.len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lone {lone:?}, majority {majority:?}, eventual bucket {loose:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    net.heal();
}
