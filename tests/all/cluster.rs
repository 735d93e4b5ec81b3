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

fn addr(s: &TestServer) -> String {
    s.url.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn three_nodes_form_agree_and_elect_a_new_leader_when_one_dies() {
    let dir = tempfile::tempdir().unwrap();
    let toml = cluster_toml(dir.path());
    let mut nodes: Vec<TestServer> = (0..3).map(|_| TestServer::start(&toml)).collect();
    let out = nodes[0].cli(&["cluster", "init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut a = nodes[0].client().await;
    status_until(&mut a, "first leader", |v| v.leader != 0).await;
    let first = addr(&nodes[0]);
    for n in &nodes[1..] {
        let out = n.cli(&["cluster", "join", &first]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Every node sees the same three voters and the same leader.
    let mut views = Vec::new();
    for n in &nodes {
        let mut c = n.client().await;
        views.push(status_until(&mut c, "three voters", |v| v.nodes.len() == 3 && v.nodes.iter().all(|n| n.role == "voter") && v.leader != 0).await);
    }
    assert!(views.iter().all(|v| v.leader == views[0].leader && v.nodes == views[0].nodes), "{views:?}");

    // kill -9 the leader: the others elect a new one.
    let leader = views[0].leader;
    let dead = views.iter().position(|v| v.node_id == leader).unwrap();
    nodes[dead].kill9();
    let started = Instant::now();
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let mut c = nodes[alive[0]].client().await;
    let v = status_until(&mut c, "a new leader", |v| v.leader != 0 && v.leader != leader).await;
    println!("new leader after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut c2 = nodes[alive[1]].client().await;
    status_until(&mut c2, "the same new leader", |w| w.leader == v.leader).await;

    // The killed node comes back and follows.
    nodes[dead].boot();
    let mut c3 = nodes[dead].client().await;
    status_until(&mut c3, "the old leader follows", |w| w.leader == v.leader).await;
}
