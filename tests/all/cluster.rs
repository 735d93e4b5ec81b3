//! The cluster control plane through real `strata serve` processes.

use std::time::{Duration, Instant};

use strata::api::pb;
use tonic::Code;

use crate::common::*;

/// A `[cluster]` section with a secret file in `dir`.
fn cluster_toml(dir: &std::path::Path) -> String {
    let secret = dir.join("cluster.secret");
    std::fs::write(&secret, "a shared secret of some length\n").unwrap();
    format!("[cluster]\nsecret_file = {secret:?}\nregion = \"eu\"\nzone = \"a\"\nheartbeat_interval = \"100ms\"\nsuspect_after = \"500ms\"\ndown_after = \"1s\"\n")
}

async fn status_until(c: &mut Client, what: &str, ok: impl Fn(&pb::ClusterView) -> bool) -> pb::ClusterView {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_node_inits_leads_and_keeps_its_id_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(&cluster_toml(dir.path()));
    let mut c = s.client().await;
    let before = c.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    assert!(before.nodes.is_empty() && before.leader == 0, "{before:?}");

    let out = s.cli(&["cluster", "init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = status_until(&mut c, "a leader", |v| v.leader != 0).await;
    assert_eq!(v.leader, v.node_id);
    assert_eq!(v.nodes.len(), 1);
    assert_eq!((v.nodes[0].region.as_str(), v.nodes[0].zone.as_str(), v.nodes[0].role.as_str()), ("eu", "a", "voter"));

    let err = c.cluster_init(pb::ClusterInitRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    s.kill9();
    s.boot();
    let mut c = s.client().await;
    let after = status_until(&mut c, "leader again after restart", |v| v.leader != 0).await;
    assert_eq!(after.node_id, v.node_id, "the node id is kept");
    assert_eq!(after.nodes.len(), 1);
}

#[tokio::test]
async fn a_server_without_cluster_config_says_so() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let err = c.cluster_status(pb::ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("[cluster]"), "{}", err.message());
}
