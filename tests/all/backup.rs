//! Backups: incremental by digest, restored into an empty node with every
//! key, version and attribute, verified, pruned; on a directory and on a
//! real S3-compatible server.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common::*;
use crate::moto::Moto;
use strata::api::pb;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `strata backup ARGS -c CONFIG` (the offline commands).
fn backup(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    cli("http://127.0.0.1:1", &all, None)
}

/// `strata backup create` on `s` (to its [backup.target]).
fn create(s: &TestServer) -> Value {
    serde_json::from_str(&ok(s.cli(&["backup", "create", "--json"]))).expect("json")
}

fn target(url: &str) -> String {
    format!("[backup.target]\nurl = {url:?}\n")
}

/// Everything a client can see of a node: buckets, listings, every
/// version with its attributes, every object's bytes.
async fn everything(s: &TestServer) -> Vec<String> {
    let mut c = s.client().await;
    let mut out = Vec::new();
    let buckets = c.list_buckets(pb::ListBucketsRequest {}).await.unwrap().into_inner().buckets;
    for b in buckets {
        out.push(format!("bucket {} created {} objects {}", b.name, b.created_ms, b.object_count));
        let list = c.list(pb::ListRequest { bucket: b.name.clone(), limit: 10_000, ..Default::default() }).await.unwrap().into_inner();
        for o in list.objects {
            let vs = c
                .list_versions(pb::ListVersionsRequest { bucket: b.name.clone(), key: o.key.clone() })
                .await
                .unwrap()
                .into_inner()
                .versions;
            for v in vs {
                let mut attrs: Vec<_> = v.attributes.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                attrs.sort();
                out.push(format!("{}/{} {} {} {} {} {:?}", b.name, v.key, v.version, v.digest, v.size, v.delete_marker, attrs));
                if !v.delete_marker {
                    let (_, data) = get(
                        &mut c,
                        pb::GetRequest { bucket: b.name.clone(), key: v.key.clone(), version: v.version.clone(), ..Default::default() },
                    )
                    .await
                    .expect("every version reads back");
                    out.push(format!("  content {}", sha256_hex(&data)));
                }
            }
        }
    }
    out
}

async fn load(c: &mut Client, tag: &str, n: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for i in 0..n {
        let body = random_bytes(40 << 10 | i);
        let mut h = header(&format!("{tag}/big-{i}"));
        h.attributes.insert("tag".into(), strata::api::validate::from_json(&serde_json::json!(tag)));
        h.attributes.insert("n".into(), strata::api::validate::from_json(&serde_json::json!(i)));
        put(c, h, &body).await.unwrap();
        bodies.push(body);
    }
    bodies
}

#[tokio::test]
async fn backups_are_incremental_and_restore_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = TestServer::start(&target(&url));
    let mut c = s.client().await;
    let first = load(&mut c, "one", 6).await;
    for i in 0..20 {
        put_key(&mut c, &format!("small/{i}"), format!("small {i}").as_bytes()).await;
    }
    put_key(&mut c, "one/big-0", &random_bytes(70 << 10)).await; // a second version
    put_key(&mut c, "copy", &first[1]).await; // a shared blob
    c.delete(pb::DeleteRequest { key: "small/3".into(), ..Default::default() }).await.unwrap();
    c.create_bucket(pb::CreateBucketRequest { name: "other".into(), ..Default::default() }).await.unwrap();
    put(&mut c, pb::PutHeader { bucket: "other".into(), key: "x".into(), ..Default::default() }, &random_bytes(50 << 10)).await.unwrap();

    let b1 = create(&s);
    // 6 + 1 + 1 file-backed blobs (the copy shares one) and the snapshot.
    assert_eq!(b1["blobs"], 8, "{b1}");
    assert_eq!(b1["uploaded_blobs"], 9, "{b1}");

    // A second backup sends only the three new blobs and a new snapshot.
    load(&mut c, "two", 3).await;
    let b2 = create(&s);
    assert_eq!(b2["blobs"], 11, "{b2}");
    assert_eq!(b2["uploaded_blobs"], 4, "only the new blobs go up: {b2}");
    let listed: Value = serde_json::from_str(&ok(backup(&s.config, &["ls", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // Restore into an empty node: everything identical.
    let want = everything(&s).await;
    let mut r = TestServer::prepare("127.0.0.1", "", Vec::new());
    let out = ok(backup(&r.config, &["restore", &url]));
    assert!(out.contains(b2["id"].as_str().unwrap()), "the newest backup by default: {out}");
    r.boot();
    assert_eq!(everything(&r).await, want);
    let mut rc = r.client().await;
    let st = stats(&mut rc).await;
    assert_eq!(st.corrupt_blobs, 0);

    // The restored node is a whole node: it takes writes and passes fsck.
    put_key(&mut rc, "after", b"restore").await;
    drop(rc);
    r.stop();
    let fsck = cli("http://127.0.0.1:1", &["fsck", "--config", r.config.to_str().unwrap()], None);
    assert!(fsck.status.success(), "{}", text(&fsck));

    // Restoring over data is refused, naming what to do.
    let o = backup(&r.config, &["restore", &url]);
    assert!(!o.status.success() && text(&o).contains("not empty"), "{}", text(&o));

    // An older backup restores as it was.
    let r1 = TestServer::prepare("127.0.0.1", "", Vec::new());
    ok(backup(&r1.config, &["restore", &url, "--id", b1["id"].as_str().unwrap()]));
    let bad = backup(&r1.config, &["restore", &url, "--id", "no-such-backup"]);
    assert!(!bad.status.success() && text(&bad).contains("no backup"), "{}", text(&bad));
}

#[tokio::test]
async fn verify_finds_a_removed_and_a_corrupted_blob() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = TestServer::start(&target(&url));
    let mut c = s.client().await;
    let bodies = load(&mut c, "v", 4).await;
    create(&s);
    let clean = backup(&s.config, &["verify", &url]);
    assert!(clean.status.success(), "{}", text(&clean));

    let blob = |data: &[u8]| {
        let hex = sha256_hex(data);
        dir.path().join("blobs").join(&hex[..2]).join(&hex)
    };
    std::fs::remove_file(blob(&bodies[0])).unwrap();
    let damaged = blob(&bodies[1]);
    let len = std::fs::metadata(&damaged).unwrap().len();
    flip_a_byte(&damaged, len / 2);

    let o = backup(&s.config, &["verify", &url]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("missing  {}", sha256_hex(&bodies[0]))), "{out}");
    assert!(out.contains(&format!("damaged  {}", sha256_hex(&bodies[1]))), "{out}");
    // --quick sees the missing one, not the flipped byte...
    let q = backup(&s.config, &["verify", &url, "--quick"]);
    let qt = text(&q);
    assert_eq!(q.status.code(), Some(1), "{qt}");
    assert!(qt.contains("1 missing, 0 damaged"), "{qt}");
    // ... and a torn copy by its size.
    let torn = blob(&bodies[2]);
    std::fs::OpenOptions::new().write(true).open(&torn).unwrap().set_len(1000).unwrap();
    let q = backup(&s.config, &["verify", &url, "--quick"]);
    assert!(text(&q).contains("1 missing, 1 damaged"), "{}", text(&q));

    // A restore from the damaged backup fails and leaves nothing behind.
    let r = TestServer::prepare("127.0.0.1", "", Vec::new());
    let o = backup(&r.config, &["restore", &url]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!r.data().join("meta").join("strata.db").exists());
    assert!(blob_files(&r.data()).is_empty(), "a failed restore removes what it placed");

    // The next backup sends the removed blob again (the damaged one, same
    // size, is for verify to find).
    let again = create(&s);
    assert_eq!(again["uploaded_blobs"], 3, "the removed blob, the torn one and a snapshot: {again}");
    let o = backup(&s.config, &["verify", &url, "--all"]);
    assert!(text(&o).contains("0 missing, 1 damaged"), "{}", text(&o));
    // --repair removes it, so the next backup sends it again: all sound.
    let o = backup(&s.config, &["verify", &url, "--all", "--repair"]);
    assert!(text(&o).contains("removed 1 damaged blob"), "{}", text(&o));
    let again = create(&s);
    assert_eq!(again["uploaded_blobs"], 2, "the damaged blob and a snapshot: {again}");
    let o = backup(&s.config, &["verify", &url, "--all"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test]
async fn an_encrypted_node_backs_up_sealed_and_restores_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key");
    std::fs::write(&key_file, hex::encode([7u8; 32])).unwrap();
    let enc = format!("[storage.encryption]\nkey_file = {key_file:?}\n");
    let s = TestServer::start(&format!("{enc}{}", target(&url)));
    let mut c = s.client().await;
    let marker = b"PLAINTEXT-MARKER-".repeat(4 << 10);
    put_key(&mut c, "secret-key-name", &marker).await;
    put_key(&mut c, "small", b"PLAINTEXT-MARKER- inline").await;
    create(&s);
    for f in blob_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!found(b"PLAINTEXT-MARKER-") && !found(b"secret-key-name"), "plaintext in {}", f.display());
    }
    let plain = TestServer::prepare("127.0.0.1", "", Vec::new());
    let o = backup(&plain.config, &["restore", &url]);
    assert!(!o.status.success() && text(&o).contains("encrypted"), "{}", text(&o));
    // A node with another key (here none) cannot share the target: its
    // blobs would pass for the sealed ones.
    let other = TestServer::start(&target(&url));
    let mut oc = other.client().await;
    put_key(&mut oc, "secret-key-name", &marker).await;
    let o = other.cli(&["backup", "create"]);
    assert!(!o.status.success() && text(&o).contains("another prefix"), "{}", text(&o));
    let mut r = TestServer::prepare("127.0.0.1", &enc, Vec::new());
    ok(backup(&r.config, &["restore", &url]));
    r.boot();
    let mut rc = r.client().await;
    assert_eq!(get_key(&mut rc, "secret-key-name").await.unwrap(), marker);
    assert_eq!(get_key(&mut rc, "small").await.unwrap(), b"PLAINTEXT-MARKER- inline");
}

#[tokio::test]
async fn prune_keeps_what_it_is_told_and_the_blobs_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = TestServer::start(&target(&url));
    let mut c = s.client().await;
    let mut ids = Vec::new();
    for round in 0..3 {
        // Each round removes the last one's objects for good.
        if round > 0 {
            for i in 0..3 {
                let key = format!("r{}/big-{i}", round - 1);
                for v in versions(&mut c, &key).await {
                    c.delete(pb::DeleteRequest { key: key.clone(), version: v.version, ..Default::default() }).await.unwrap();
                }
            }
        }
        load(&mut c, &format!("r{round}"), 3).await;
        ids.push(create(&s)["id"].as_str().unwrap().to_string());
    }
    let dry = ok(backup(&s.config, &["prune", &url, "--keep-last", "1", "--dry-run"]));
    assert!(dry.contains("would remove 2 backups"), "{dry}");
    assert_eq!(serde_json::from_str::<Value>(&ok(backup(&s.config, &["ls", &url, "--json"]))).unwrap().as_array().unwrap().len(), 3);
    let out = ok(backup(&s.config, &["prune", &url, "--keep-last", "1"]));
    assert!(out.contains("removed 2 backups"), "{out}");
    let left: Value = serde_json::from_str(&ok(backup(&s.config, &["ls", &url, "--json"]))).unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], ids[2]);
    // The newest backup needs its three blobs and its snapshot; the rest
    // (six blobs removed for good since, two old snapshots) went.
    ok(backup(&s.config, &["verify", &url]));
    assert!(out.contains("and 8 blobs"), "{out}");
    let blobs = blob_files(dir.path()).len();
    assert_eq!(blobs, 3 + 1);
    let none = backup(&s.config, &["prune", &url]);
    assert!(!none.status.success() && text(&none).contains("say what to keep"), "{}", text(&none));
}

#[tokio::test]
async fn scheduled_backups_keep_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = TestServer::start(&format!("[backup]\nevery = \"1s\"\nkeep_last = 2\n{}", target(&url)));
    let mut c = s.client().await;
    load(&mut c, "s", 2).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = 0;
    while std::time::Instant::now() < deadline {
        let ls: Value = serde_json::from_str(&ok(backup(&s.config, &["ls", "--json"]))).unwrap();
        let n = ls.as_array().unwrap().len();
        assert!(n <= 3, "retention keeps 2 (a third may be between its write and its prune): {ls}");
        seen = seen.max(n);
        if n == 2 && seen >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(seen >= 2, "the schedule made backups");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let ls: Value = serde_json::from_str(&ok(backup(&s.config, &["ls", "--json"]))).unwrap();
    assert!(ls.as_array().unwrap().len() <= 3, "{ls}");
}

#[tokio::test]
async fn backup_and_restore_through_a_real_s3_server() {
    let mut moto = Moto::start();
    moto.create_bucket("backups");
    let target = format!("[backup.target]\nurl = \"s3://backups/node-a\"\n{}\n", moto.options_toml());
    let s = TestServer::start(&target);
    let mut c = s.client().await;
    load(&mut c, "s3", 4).await;
    put_key(&mut c, "large", &random_bytes(20 << 20)).await; // goes up in parts
    let b1 = create(&s);
    assert_eq!(b1["uploaded_blobs"], 6, "{b1}");
    put_key(&mut c, "later", &random_bytes(64 << 10)).await;
    let b2 = create(&s);
    assert_eq!(b2["uploaded_blobs"], 2, "{b2}");
    ok(backup(&s.config, &["verify", "--all"]));
    // A client cannot point the server elsewhere.
    let mut c2 = s.client().await;
    let e = c2.backup_create(pb::BackupCreateRequest { url: "file:///tmp/elsewhere".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    let want = everything(&s).await;
    let mut r = TestServer::prepare("127.0.0.1", &target, Vec::new());
    ok(backup(&r.config, &["restore"]));
    r.boot();
    assert_eq!(everything(&r).await, want);

    // The object store going away is UNAVAILABLE, naming it.
    moto.stop();
    let o = s.cli(&["backup", "create"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Unavailable") && text(&o).contains("s3://backups/node-a"), "{}", text(&o));
    // and the server carries on.
    put_key(&mut c, "still", b"here").await;
}

/// What one cluster node holds itself, and what the cluster agrees on.
async fn node_view(s: &TestServer) -> Vec<String> {
    let mut c = s.client().await;
    let st = stats(&mut c).await;
    let mut out = vec![format!("objects {} versions {} blobs {} bytes {}", st.objects, st.versions, st.blobs, st.logical_bytes)];
    let p = c.get_replication(pb::GetReplicationRequest { bucket: "photos".into() }).await.unwrap().into_inner();
    out.push(format!("photos: {} {} {}", p.strategy, p.selector, p.replicas));
    let ix = c.list_indexes(pb::ListIndexesRequest::default()).await.unwrap().into_inner();
    out.push(format!("{:?}", ix.indexes.iter().map(|i| (&i.bucket, &i.name, &i.fields)).collect::<Vec<_>>()));
    out
}

#[tokio::test]
async fn a_three_node_cluster_backup_restores_into_three_empty_nodes() {
    use crate::cluster::{Net, policy_for};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let net = Net::start(3, &target(&url));
    let views = net.form().await;
    let ids: Vec<u64> = views.iter().map(|v| v.node_id).collect();
    let mut c0 = net.nodes[0].client().await;
    c0.create_bucket(pb::CreateBucketRequest { name: "photos".into(), ..Default::default() }).await.unwrap();
    c0.set_replication(policy_for("photos", 2)).await.unwrap();
    c0.create_index(pb::CreateIndexRequest {
        bucket: "photos".into(),
        name: "by_n".into(),
        fields: vec!["n".into()],
        r#type: "btree".into(),
    })
    .await
    .unwrap();
    // Writes through every node: large and small blobs, versions, a delete.
    for (i, node) in net.nodes.iter().enumerate() {
        let mut c = node.client().await;
        for k in 0..4 {
            let mut h = pb::PutHeader { bucket: "photos".into(), key: format!("n{i}/k{k}"), ..Default::default() };
            h.attributes.insert("n".into(), strata::api::validate::from_json(&serde_json::json!(i * 10 + k)));
            put(&mut c, h, &random_bytes(if k % 2 == 0 { 40 << 10 } else { 900 })).await.unwrap();
        }
        put(&mut c, pb::PutHeader { bucket: "photos".into(), key: format!("n{i}/k0"), ..Default::default() }, &random_bytes(60 << 10))
            .await
            .unwrap();
    }
    c0.delete(pb::DeleteRequest { bucket: "photos".into(), key: "n1/k1".into(), ..Default::default() }).await.unwrap();
    // Each node's answer (its buckets carry its own creation times).
    let (mut want, mut held) = (Vec::new(), Vec::new());
    for n in &net.nodes {
        want.push(everything(n).await);
        held.push(node_view(n).await);
    }

    // Through a node that need not lead: every member sends its part.
    let b = create(&net.nodes[1]);
    assert_eq!(b["nodes"], 3, "{b}");
    let listed: Value = serde_json::from_str(&ok(backup(&net.nodes[0].config, &["ls", "--json"]))).unwrap();
    let parts: Vec<u64> = listed[0]["nodes"].as_array().unwrap().iter().map(|n| n["cluster_node"].as_u64().unwrap()).collect();
    assert_eq!(parts.iter().copied().collect::<std::collections::BTreeSet<_>>(), ids.iter().copied().collect(), "{listed}");
    let v = backup(&net.nodes[0].config, &["verify"]);
    assert!(v.status.success(), "{}", text(&v));
    drop(c0);
    drop(net);

    // Three empty nodes elsewhere, each restored as one of the old nodes.
    let mut r = Net::prepare(3, &target(&url));
    let bad = backup(&r.nodes[0].config, &["restore"]);
    assert!(!bad.status.success() && text(&bad).contains("--node"), "a cluster backup names the nodes: {}", text(&bad));
    for (i, id) in ids.iter().enumerate() {
        let out = ok(backup(&r.nodes[i].config, &["restore", "--node", &id.to_string()]));
        assert!(out.contains("cluster init"), "{out}");
    }
    for i in 0..3 {
        r.boot(i);
    }
    // A mistake: init on two restored nodes. Both now carry the old cluster's
    // id, yet the second is refused when it joins, and nothing changes.
    ok(r.nodes[0].cli(&["cluster", "init"]));
    ok(r.nodes[1].cli(&["cluster", "init"]));
    let o = r.nodes[1].cli(&["cluster", "join", &r.peer(0)]);
    assert!(!o.status.success() && text(&o).contains("already has a cluster of its own"), "{}", text(&o));
    // The way out the message names: restore it again, then join.
    r.nodes[1].stop();
    std::fs::remove_dir_all(r.nodes[1].data()).unwrap();
    ok(backup(&r.nodes[1].config, &["restore", "--node", &ids[1].to_string()]));
    r.boot(1);
    for i in 1..3 {
        ok(r.nodes[i].cli(&["cluster", "join", &r.peer(0)]));
    }
    let views = r.agree(&[0, 1, 2], 3).await;
    let mut now: Vec<u64> = views[0].nodes.iter().map(|n| n.id).collect();
    now.sort();
    let mut was = ids.clone();
    was.sort();
    assert_eq!(now, was, "the restored nodes keep their ids");
    for (i, n) in r.nodes.iter().enumerate() {
        assert_eq!(node_view(n).await, held[i], "node {i} holds what it held");
        assert_eq!(everything(n).await, want[i], "node {i} answers for the whole cluster as before");
    }
    // A restored node cannot be restored over, and the cluster takes writes.
    r.nodes[2].stop();
    let again = backup(&r.nodes[2].config, &["restore", "--node", &ids[2].to_string()]);
    assert!(!again.status.success() && text(&again).contains("not empty"), "{}", text(&again));
    r.boot(2);
    let mut c = r.nodes[2].client().await;
    put(&mut c, pb::PutHeader { bucket: "photos".into(), key: "after".into(), ..Default::default() }, b"restored").await.unwrap();
}

#[tokio::test]
async fn a_cluster_backup_fails_whole_when_a_member_cannot_send_its_part() {
    use crate::cluster::Net;
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let mut net = Net::prepare(3, &target(&url));
    // Node 2 backs up elsewhere.
    let toml = std::fs::read_to_string(&net.nodes[2].config).unwrap();
    std::fs::write(&net.nodes[2].config, toml.replace(&url, &format!("file://{}", other.path().display()))).unwrap();
    for i in 0..3 {
        net.boot(i);
    }
    let views = net.form().await;
    let mut c = net.nodes[0].client().await;
    put_key(&mut c, "k", &random_bytes(50 << 10)).await;

    let o = net.nodes[0].cli(&["backup", "create"]);
    let why = text(&o);
    assert!(!o.status.success(), "{why}");
    assert!(why.contains(&format!("node {}", views[2].node_id)) && why.contains("same [backup.target]"), "{why}");
    // No manifest: a backup that lacks a node does not exist.
    let listed = ok(backup(&net.nodes[0].config, &["ls", "--json"]));
    assert_eq!(listed.trim(), "[]", "{listed}");

    // A member that is down: the backup fails, naming it, and can be retried.
    net.nodes[2].kill9();
    let o = net.nodes[0].cli(&["backup", "create"]);
    let why = text(&o);
    assert!(!o.status.success() && why.contains(&format!("node {}", views[2].node_id)), "{why}");
    let listed = ok(backup(&net.nodes[0].config, &["ls", "--json"]));
    assert_eq!(listed.trim(), "[]", "{listed}");
}
