//! Tiers: cold blobs moved to an object store by policy and read back
//! without the client noticing; on a directory, in memory and on a real
//! S3-compatible server; crashes during a move; GC; a tier that is down.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::Code;

use crate::common::*;
use crate::moto::Moto;
use strata::api::pb;

fn status(s: &TestServer) -> Value {
    let o = s.cli(&["tier", "status", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn on_tier(s: &TestServer, tier: &str) -> u64 {
    status(s)["tiers"].as_array().unwrap().iter().find(|t| t["name"] == tier).map_or(0, |t| t["blobs"].as_u64().unwrap())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn range(c: &mut Client, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, tonic::Status> {
    get(c, pb::GetRequest { key: key.into(), offset, length, ..Default::default() }).await.map(|r| r.1)
}

/// Full and ranged reads of `body` under `key` return the right bytes.
async fn reads_back(c: &mut Client, key: &str, body: &[u8]) {
    assert_eq!(get_key(c, key).await.unwrap(), body, "{key}: full read");
    let n = body.len() as u64;
    for (off, len) in [(0, 100), (n / 3, n / 3), (n - 10, 10), ((1 << 20) - 5, 20)] {
        if off + len <= n {
            assert_eq!(range(c, key, off, len).await.unwrap(), &body[off as usize..(off + len) as usize], "{key}: {off}+{len}");
        }
    }
}

fn local_blob(data: &Path, body: &[u8]) -> bool {
    let hex = sha256_hex(body);
    data.join("blobs").join(&hex[..2]).join(&hex[2..4]).join(&hex).exists()
}

fn tier_config(url: &str, extra_target: &str, policy: &str, tiering: &str) -> String {
    format!("[tiering]\ninterval = \"1s\"\n{tiering}\n[[tiers]]\nname = \"cold\"\ntarget = {{ url = {url:?} {extra_target} }}\n{policy}")
}

#[tokio::test]
async fn old_versions_move_to_a_directory_tier_and_read_back_the_same() {
    let tier = tempfile::tempdir().unwrap();
    let url = format!("file://{}", tier.path().display());
    let policy = "[[tier_policies]]\nbucket = \"default\"\ntier = \"cold\"\nafter = \"2s\"\n";
    let s = TestServer::start(&tier_config(&url, "", policy, ""));
    let mut c = s.client().await;
    let bodies: Vec<Vec<u8>> = [3 << 20, 100 << 10, (1 << 20) + 7].iter().map(|n| random_bytes(*n)).collect();
    for (i, b) in bodies.iter().enumerate() {
        put_key(&mut c, &format!("old/{i}"), b).await;
    }
    put_key(&mut c, "small", b"small blobs live in the database").await;
    wait_for("three blobs on the tier", || on_tier(&s, "cold") == 3);
    for b in &bodies {
        assert!(!local_blob(&s.data(), b), "the local file goes once the tier holds the blob");
    }
    assert_eq!(blob_files(tier.path()).len(), 3);
    // A new version is hot until it is old enough.
    let fresh = random_bytes(200 << 10);
    put_key(&mut c, "new", &fresh).await;
    assert!(local_blob(&s.data(), &fresh));
    // Ranged reads first (they fetch ranges, fill nothing), then full reads.
    for (i, b) in bodies.iter().enumerate() {
        reads_back(&mut c, &format!("old/{i}"), b).await;
    }
    assert_eq!(get_key(&mut c, "small").await.unwrap(), b"small blobs live in the database");
    // A whole read left a verified local copy, counted as the cache.
    assert!(local_blob(&s.data(), &bodies[0]));
    assert!(status(&s)["cached_bytes"].as_u64().unwrap() > 3 << 20);
    // Dedup: the same bytes under a new key share the cold blob.
    put_key(&mut c, "again", &bodies[1]).await;
    assert_eq!(get_key(&mut c, "again").await.unwrap(), bodies[1]);
}

#[tokio::test]
async fn a_memory_tier_takes_moves_and_recalls() {
    let s = TestServer::start(&tier_config("memory://", "", "", "cache_size = 0"));
    let mut c = s.client().await;
    let body = random_bytes(2 << 20);
    put_key(&mut c, "m", &body).await;
    let o = s.cli(&["tier", "move", "m", "--tier", "cold"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!local_blob(&s.data(), &body));
    reads_back(&mut c, "m", &body).await;
    assert!(!local_blob(&s.data(), &body), "no cache: nothing kept");
    let o = s.cli(&["tier", "recall", "m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(local_blob(&s.data(), &body));
    assert_eq!(on_tier(&s, "cold"), 0);
    reads_back(&mut c, "m", &body).await;
    // Bad requests say what to fix.
    let o = s.cli(&["tier", "move", "m", "--tier", "nope"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no tier \"nope\""));
    put_key(&mut c, "tiny", b"tiny").await;
    let o = s.cli(&["tier", "move", "tiny", "--tier", "cold"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("stay local"));
}

#[tokio::test]
async fn an_s3_tier_serves_cold_reads_and_its_outage_is_unavailable() {
    let mut moto = Moto::start();
    moto.create_bucket("cold");
    let opts = format!(", {}", moto.options_toml());
    let policy = "[[tier_policies]]\nbucket = \"default\"\ntier = \"cold\"\nmin_size = \"1MiB\"\n";
    let s = TestServer::start(&tier_config("s3://cold/tier", &opts, policy, "cache_size = 0"));
    let mut c = s.client().await;
    let big = random_bytes(12 << 20); // more than one part
    let hot = random_bytes(500 << 10); // under min_size: stays
    put_key(&mut c, "big", &big).await;
    put_key(&mut c, "hot", &hot).await;
    wait_for("the big blob on the tier", || on_tier(&s, "cold") == 1);
    assert!(!local_blob(&s.data(), &big) && local_blob(&s.data(), &hot));
    reads_back(&mut c, "big", &big).await;

    moto.stop();
    let e = get_key(&mut c, "big").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("tier \"cold\""), "{}", e.message());
    let e = range(&mut c, "big", 5 << 20, 10).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    // Hot reads and writes carry on, and nothing was marked corrupt.
    assert_eq!(get_key(&mut c, "hot").await.unwrap(), hot);
    put_key(&mut c, "during", b"the outage").await;
    assert_eq!(stats(&mut c).await.corrupt_blobs, 0);
}

#[tokio::test]
async fn gc_removes_the_tier_copy_of_the_last_reference() {
    let tier = tempfile::tempdir().unwrap();
    let url = format!("file://{}", tier.path().display());
    let gc = "[storage]\ngc_interval = \"1s\"\ncleanup_age = \"0s\"\n";
    let s = TestServer::start(&format!("{gc}{}", tier_config(&url, "", "", "")));
    let mut c = s.client().await;
    let body = random_bytes(1 << 20);
    put_key(&mut c, "a", &body).await;
    put_key(&mut c, "b", &body).await;
    assert!(s.cli(&["tier", "move", "a", "--tier", "cold"]).status.success());
    let copies = || blob_files(tier.path()).len();
    assert_eq!(copies(), 1);
    let drop_all = |key: &'static str| {
        let s = &s;
        async move {
            let mut c = s.client().await;
            for v in versions(&mut c, key).await {
                c.delete(pb::DeleteRequest { key: key.into(), version: v.version, ..Default::default() }).await.unwrap();
            }
        }
    };
    drop_all("a").await;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(copies(), 1, "b still refers to the blob");
    assert_eq!(get_key(&mut c, "b").await.unwrap(), body);
    drop_all("b").await;
    wait_for("GC to remove the tier copy", || copies() == 0);
    assert_eq!(on_tier(&s, "cold"), 0);
}

#[tokio::test]
async fn a_crash_at_any_step_of_a_move_loses_nothing() {
    let points = tempfile::NamedTempFile::new().unwrap();
    let gc = "[storage]\ngc_interval = \"1s\"\ncleanup_age = \"0s\"\n";
    for (step, body_len) in [("tier.copied", 2 << 20), ("tier.recorded", 3 << 20)] {
        // Each run is a new node: a tier of its own.
        let tier = tempfile::tempdir().unwrap();
        let url = format!("file://{}", tier.path().display());
        let mut s = TestServer::prepare("127.0.0.1", &format!("{gc}{}", tier_config(&url, "", "", "")), Vec::new());
        s.env.push(("STRATA_FAILPOINTS_FILE".into(), points.path().display().to_string()));
        s.boot();
        let mut c = s.client().await;
        let body = random_bytes(body_len);
        put_key(&mut c, "k", &body).await;
        std::fs::write(points.path(), format!("{step}=sleep(60000)\n")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let url = s.url.clone();
        let mover = std::thread::spawn(move || cli(&url, &["tier", "move", "k", "--tier", "cold"], None));
        // The copy is made (and verified) before either point.
        wait_for("the copy on the tier", || !blob_files(tier.path()).is_empty());
        std::thread::sleep(Duration::from_millis(500));
        s.kill9();
        let _ = mover.join();
        std::fs::write(points.path(), "").unwrap();
        s.boot();
        let mut c = s.client().await;
        reads_back(&mut c, "k", &body).await;
        drop(c);
        s.stop();
        let fsck = cli("http://127.0.0.1:1", &["fsck", "--config", s.config.to_str().unwrap()], None);
        assert!(fsck.status.success(), "{step}: {}{}", String::from_utf8_lossy(&fsck.stdout), String::from_utf8_lossy(&fsck.stderr));
        s.boot();
        if step == "tier.copied" {
            // The copy nothing recorded is swept by GC.
            wait_for("the unrecorded copy to be swept", || blob_files(tier.path()).is_empty());
            assert!(local_blob(&s.data(), &body));
        } else {
            // Recorded: the tier holds it and the left-over local file is a cached copy.
            assert_eq!(on_tier(&s, "cold"), 1);
            let mut c = s.client().await;
            for v in versions(&mut c, "k").await {
                c.delete(pb::DeleteRequest { key: "k".into(), version: v.version, ..Default::default() }).await.unwrap();
            }
            wait_for("GC to clear the tier", || blob_files(tier.path()).is_empty());
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

#[tokio::test]
async fn gc_never_sweeps_a_copy_a_move_is_about_to_record() {
    // Copies left on the tier (as by a crashed move) are orphans to GC and
    // dedup hits to the mover, both at once on start: the move must not
    // record a copy the sweep removed.
    let tier = tempfile::tempdir().unwrap();
    let url = format!("file://{}", tier.path().display());
    let gc = "[storage]\ngc_interval = \"1s\"\ncleanup_age = \"0s\"\n";
    let mut s = TestServer::start(&format!("{gc}{}", tier_config(&url, "", "", "")));
    let mut c = s.client().await;
    let bodies: Vec<Vec<u8>> = (0..30).map(|i| random_bytes((40 << 10) + i * 9000)).collect();
    for (i, b) in bodies.iter().enumerate() {
        put_key(&mut c, &format!("k{i}"), b).await;
        assert!(s.cli(&["tier", "move", &format!("k{i}"), "--tier", "cold"]).status.success());
    }
    let saved = tempfile::tempdir().unwrap();
    copy_tree(&tier.path().join("blobs"), saved.path());
    for i in 0..bodies.len() {
        assert!(s.cli(&["tier", "recall", &format!("k{i}")]).status.success());
    }
    drop(c);
    s.stop();
    let _ = std::fs::remove_dir_all(tier.path().join("blobs")); // emptied dirs go with their last file
    copy_tree(&saved.path().join("blobs"), tier.path());
    let policy = "[[tier_policies]]\nbucket = \"default\"\ntier = \"cold\"\nafter = \"1s\"\n";
    std::fs::write(&s.config, format!("{}\n{policy}", std::fs::read_to_string(&s.config).unwrap())).unwrap();
    s.boot();
    wait_for("every blob on the tier", || on_tier(&s, "cold") == bodies.len() as u64);
    std::thread::sleep(Duration::from_secs(3)); // more GC passes
    let mut c = s.client().await;
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(get_key(&mut c, &format!("k{i}")).await.unwrap(), *b, "k{i}");
    }
    assert_eq!(stats(&mut c).await.corrupt_blobs, 0);
}

#[tokio::test]
async fn a_tier_store_that_is_gone_is_unavailable_and_a_bad_cache_copy_is_not_damage() {
    let tier = tempfile::tempdir().unwrap();
    let store = tier.path().join("store");
    let url = format!("file://{}", store.display());
    let s = TestServer::start(&tier_config(&url, "", "", "cache_size = \"64MiB\""));
    let mut c = s.client().await;
    let body = random_bytes(3 << 20);
    put_key(&mut c, "k", &body).await;
    assert!(s.cli(&["tier", "move", "k", "--tier", "cold"]).status.success());
    // The directory moved away: the tier is down, the blob is not lost.
    let away = tier.path().join("away");
    std::fs::rename(&store, &away).unwrap();
    let e = get_key(&mut c, "k").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    std::fs::rename(&away, &store).unwrap();
    assert_eq!(stats(&mut c).await.corrupt_blobs, 0);
    reads_back(&mut c, "k", &body).await;
    // The whole read left a cached copy; damage to it is not damage to the blob.
    let hex = sha256_hex(&body);
    let cached = s.data().join("blobs").join(&hex[..2]).join(&hex[2..4]).join(&hex);
    assert!(cached.exists());
    flip_a_byte(&cached, 2 << 20);
    let _ = get_key(&mut c, "k").await; // may fail once: the damage is found mid-read
    assert_eq!(stats(&mut c).await.corrupt_blobs, 0);
    assert_eq!(get_key(&mut c, "k").await.unwrap(), body);
}

#[test]
fn overlapping_targets_and_tier_policies_in_a_cluster_node_config_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let config = dir.path().join("bad.toml");
    for (extra, want) in [
        (
            format!("[[tiers]]\nname = \"a\"\ntarget = {{ url = {url:?} }}\n[[tiers]]\nname = \"b\"\ntarget = {{ url = \"{url}/sub\" }}\n"),
            "overlap",
        ),
        (format!("[[tiers]]\nname = \"a\"\ntarget = {{ url = {url:?} }}\n[backup.target]\nurl = {url:?}\n"), "overlap"),
        // A cluster's policies are the cluster state's, the same on every node.
        (
            format!(
                "[cluster]\nsecret_env = \"STRATA_TEST_SECRET\"\n[[tiers]]\nname = \"a\"\ntarget = {{ url = {url:?} }}\n[[tier_policies]]\nbucket = \"b\"\ntier = \"a\"\nmin_size = \"1MiB\"\n"
            ),
            "strata tier policy",
        ),
    ] {
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbase_path = {:?}\n{extra}", dir.path().join("data")),
        )
        .unwrap();
        let o = std::process::Command::new(strata_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("STRATA_TEST_SECRET", "a shared secret of some length")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn on_a_cluster_each_node_moves_its_own_copies_to_its_own_tier() {
    use crate::cluster::{Net, policy_for};
    let tiers = tempfile::tempdir().unwrap();
    let mut net = Net::prepare(3, "");
    for i in 0..3 {
        let url = format!("file://{}/node{i}", tiers.path().display());
        let toml = std::fs::read_to_string(&net.nodes[i].config).unwrap();
        std::fs::write(&net.nodes[i].config, format!("{toml}\n{}", tier_config(&url, "", "", ""))).unwrap();
        net.boot(i);
    }
    net.form().await;
    let mut c0 = net.nodes[0].client().await;
    c0.create_bucket(pb::CreateBucketRequest { name: "photos".into(), ..Default::default() }).await.unwrap();
    c0.set_replication(policy_for("photos", 2)).await.unwrap();
    let mut bodies = Vec::new();
    for k in 0..5 {
        let body = random_bytes((64 << 10) + k);
        put(&mut c0, pb::PutHeader { bucket: "photos".into(), key: format!("k{k}"), ..Default::default() }, &body).await.unwrap();
        bodies.push(body);
    }

    // The policy lives in the cluster state; it must name a tier the node has.
    let o = net.nodes[1].cli(&["tier", "policy", "photos", "--tier", "nope", "--min-size", "1"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no tier \"nope\""), "{o:?}");
    let o = net.nodes[1].cli(&["tier", "policy", "photos", "--tier", "cold", "--min-size", "33KiB"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: Value = serde_json::from_slice(&net.nodes[2].cli(&["tier", "policy", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["bucket"], "photos", "{listed}");
    assert_eq!(listed[0]["min_size"], 33 << 10, "{listed}");

    // Every node moves its own copies: 5 versions, 2 replicas each, and no
    // local file left on any node.
    wait_for("every replica on its node's tier", || net.nodes.iter().map(|n| on_tier(n, "cold")).sum::<u64>() == 10);
    for n in &net.nodes {
        assert!(bodies.iter().all(|b| !local_blob(&n.data(), b)), "a local copy is left");
    }
    for (i, dir) in (0..3).map(|i| (i, tiers.path().join(format!("node{i}")))) {
        let held = blob_files(&dir).len() as u64;
        assert_eq!(held, on_tier(&net.nodes[i], "cold"), "node {i}'s tier holds its copies and nothing else");
    }
    // A cold copy is still a replica: the versions each node holds are unchanged.
    let mut versions = 0;
    for n in &net.nodes {
        versions += stats(&mut n.client().await).await.versions;
    }
    assert_eq!(versions, 10, "each version still has its two replicas");

    // Any node reads every key; with a node down the others serve from their tiers.
    let urls: Vec<String> = net.nodes.iter().map(|n| n.url.clone()).collect();
    let read_all = |i: usize| {
        let url = urls[i].clone();
        let bodies = bodies.clone();
        async move {
            let ch = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
            let mut c = strata::api::pb::strata_client::StrataClient::new(ch);
            for (k, body) in bodies.iter().enumerate() {
                let req = pb::GetRequest { bucket: "photos".into(), key: format!("k{k}"), ..Default::default() };
                assert_eq!(&get(&mut c, req).await.unwrap().1, body, "node {i} reads k{k}");
                let req =
                    pb::GetRequest { bucket: "photos".into(), key: format!("k{k}"), offset: 1000, length: 5000, ..Default::default() };
                assert_eq!(&get(&mut c, req).await.unwrap().1[..], &body[1000..6000], "node {i} reads a range of k{k}");
            }
        }
    };
    for i in 0..3 {
        read_all(i).await;
    }
    net.nodes[0].kill9();
    read_all(1).await;
    read_all(2).await;

    let o = net.nodes[2].cli(&["tier", "policy", "photos", "--remove"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("no tier policies"), "{o:?}");
}
