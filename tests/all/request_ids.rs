//! Request ids make retried puts safe: a put whose id the bucket has on
//! record stores nothing and answers with the first put's version, on one
//! node (checked in the version's transaction) and on a cluster (asked of
//! the nodes the key maps to), across restarts.

use std::time::Duration;

use bytes::Bytes;
use strata::api::pb;
use tonic::Code;

use crate::cluster::{Net, ok};
use crate::common::*;

fn with_id(key: &str, id: &str) -> pb::PutHeader {
    pb::PutHeader { request_id: id.into(), ..header(key) }
}

#[tokio::test]
async fn a_retried_put_returns_the_first_version() {
    let mut s = TestServer::start("");
    let mut c = s.client().await;
    let first = put(&mut c, with_id("k", "req-1"), b"first").await.unwrap();
    // The retry carries other bytes (a client that re-read a changed file):
    // still the first outcome, nothing stored.
    let again = put(&mut c, with_id("k", "req-1"), b"second attempt").await.unwrap();
    assert_eq!(again.version, first.version);
    assert_eq!(again.digest, first.digest);
    assert_eq!(versions(&mut c, "k").await.len(), 1, "a retry stored a second version");
    assert_eq!(get_key(&mut c, "k").await.unwrap(), b"first");
    // A new id is a new put.
    let other = put(&mut c, with_id("k", "req-2"), b"second").await.unwrap();
    assert_ne!(other.version, first.version);
    // The same id for another key is a client bug.
    let err = put(&mut c, with_id("elsewhere", "req-1"), b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("give each put its own id"), "{}", err.message());
    // Ids are checked.
    for bad in ["has space", &"x".repeat(129), "tab\t"] {
        let err = put(&mut c, with_id("k", bad), b"x").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    // Concurrent attempts of one request: one version.
    let puts = (0..8).map(|i| {
        let mut c = c.clone();
        async move { put(&mut c, with_id("race", "req-race"), format!("attempt {i}").as_bytes()).await.unwrap() }
    });
    let answers = futures::future::join_all(puts).await;
    assert!(answers.iter().all(|a| a.version == answers[0].version), "concurrent attempts got different versions");
    assert_eq!(versions(&mut c, "race").await.len(), 1);
    // A PutMany item is a put too, also within one batch.
    let item = |id: &str, data: &'static [u8]| pb::PutManyItem { header: Some(with_id("many", id)), data: Bytes::from_static(data) };
    let msgs = vec![pb::PutManyRequest { items: vec![item("req-m", b"a"), item("req-m", b"b"), item("req-1", b"c")] }];
    let r = c.put_many(futures::stream::iter(msgs)).await.unwrap().into_inner().results;
    assert!(r[0].error.is_empty() && r[1].error.is_empty(), "{r:?}");
    assert_eq!(r[0].object.as_ref().unwrap().version, r[1].object.as_ref().unwrap().version);
    assert_eq!(r[2].code, Code::InvalidArgument as i32, "req-1 belongs to key k: {r:?}");
    assert_eq!(versions(&mut c, "many").await.len(), 1);
    // The record survives a crash.
    s.kill9();
    s.boot();
    let mut c = s.client().await;
    let after = put(&mut c, with_id("k", "req-1"), b"third attempt").await.unwrap();
    assert_eq!(after.version, first.version);
    // The CLI passes it.
    let out = ok(s.cli(&["put", "cli", "-", "--request-id", "cli-1"]));
    let out2 = ok(s.cli(&["put", "cli", "-", "--request-id", "cli-1"]));
    assert_eq!(out, out2, "the CLI's retry printed another version");
}

/// A retry is answered before any byte is staged: it succeeds when the
/// quota has no room left for its bytes.
#[tokio::test]
async fn a_retry_is_answered_on_a_full_quota() {
    let s = TestServer::start("[storage]\nmax_size = \"1MiB\"\ncompression = \"none\"");
    let mut c = s.client().await;
    let data = random_bytes(600_000);
    let first = put(&mut c, with_id("big", "full-1"), &data).await.unwrap();
    put(&mut c, header("filler"), &random_bytes(400_000)).await.unwrap();
    let err = put(&mut c, header("more"), &random_bytes(600_000)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "the quota is full: {err:?}");
    let again = put(&mut c, with_id("big", "full-1"), &data).await.expect("the retry on a full quota");
    assert_eq!(again.version, first.version);
}

/// On a cluster a retry through another coordinator finds the first
/// attempt's version on the nodes the key maps to.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_through_another_node_returns_the_first_version() {
    let net = Net::start(3, "");
    net.form().await;
    ok(net.nodes[0].cli(&["bucket", "create", "rep3", "--strategy", "eager", "--replicas", "3"]));
    let h = |id: &str| pb::PutHeader { bucket: "rep3".into(), request_id: id.into(), ..header("k") };
    let mut c0 = net.nodes[0].client().await;
    let first = put(&mut c0, h("cluster-1"), b"first").await.unwrap();
    for n in &net.nodes {
        let mut c = n.client().await;
        let again = put(&mut c, h("cluster-1"), b"retry").await.unwrap();
        assert_eq!(again.version, first.version, "a retry through {} stored a new version", n.addr());
    }
    let other = pb::PutHeader { key: "other".into(), ..h("cluster-1") };
    let err = put(&mut c0, other, b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in &net.nodes {
        let mut c = n.client().await;
        let listed =
            c.list_versions(pb::ListVersionsRequest { bucket: "rep3".into(), key: "k".into() }).await.unwrap().into_inner().versions;
        assert_eq!(listed.len(), 1, "{} holds {} versions", n.addr(), listed.len());
    }
}
