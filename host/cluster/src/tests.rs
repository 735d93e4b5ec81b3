//! openraft's storage conformance suite on the SQLite log store and state
//! machine.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;

use super::log_store::{LogStore, open};
use super::state::StateMachine;
use super::types::TypeConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, Arc<StateMachine>, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Arc<StateMachine>), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let pool = open(Some(&dir.path().join("raft.db"))).await.map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let sm = StateMachine::open(pool.clone()).await.map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        Ok((dir, LogStore::new(pool), sm))
    }
}

#[test]
fn the_sqlite_store_passes_openraft_conformance() {
    TypeConfig::run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}

mod three_nodes {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::async_runtime::WatchReceiver;

    use crate::network::Raft;
    use crate::node::Cluster;
    use crate::state::StateMachine;
    use crate::types::{Cmd, NodeMeta};
    use strata_config::ClusterConfig;

    struct Node {
        raft: Raft,
        sm: Arc<StateMachine>,
        server: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn start(id: u64, listener: tokio::net::TcpListener, secret: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), secret).unwrap();
        let config = ClusterConfig {
            node_id: Some(id),
            secret_file: Some(dir.path().join("secret")),
            heartbeat_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let addr = listener.local_addr().unwrap().to_string();
        let c = Cluster::open(&config, dir.path(), addr, 0, Box::new(|| (0, 0)), None).await.unwrap();
        let svc = c.service();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Node { raft: c.raft.clone(), sm: c.state.clone(), server, _dir: dir }
    }

    async fn leader(nodes: &[&Node]) -> u64 {
        for _ in 0..100 {
            let m = nodes[0].raft.metrics().borrow_watched().clone();
            if let Some(l) = m.current_leader
                && nodes.iter().any(|n| n.raft.metrics().borrow_watched().clone().id == l)
            {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader");
    }

    /// Writes through whichever node leads, retrying while leadership
    /// moves (elections churn on a loaded machine); returns the leader.
    async fn bump_on_leader(nodes: &[&Node]) -> u64 {
        for _ in 0..50 {
            let id = leader(nodes).await;
            let n = nodes.iter().find(|n| n.raft.metrics().borrow_watched().clone().id == id).unwrap();
            if n.raft.client_write(Cmd::BumpEpoch).await.is_ok() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no write went through");
    }

    async fn epoch_everywhere(nodes: &[&Node], want: u64) {
        for _ in 0..100 {
            let mut all = true;
            for n in nodes {
                all &= n.sm.state().await.epoch == want;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("epoch {want} never reached every node");
    }

    const SECRET: &str = "a shared secret of some length";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_with_the_wrong_secret_cannot_take_part() {
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=2u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            members.insert(id, NodeMeta { addr: l.local_addr().unwrap().to_string(), ..Default::default() });
            listeners.push(l);
        }
        let mut it = listeners.into_iter();
        let a = start(1, it.next().unwrap(), SECRET).await;
        let b = start(2, it.next().unwrap(), "another secret, not shared").await;
        a.raft.initialize(members).await.unwrap();
        // Two voters, one unreachable for want of the secret: no quorum, no leader.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for n in [&a, &b] {
            assert_eq!(n.raft.metrics().borrow_watched().clone().current_leader, None);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_elect_replicate_and_survive_the_leader() {
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=3u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            members.insert(id, NodeMeta { addr: l.local_addr().unwrap().to_string(), ..Default::default() });
            listeners.push(l);
        }
        let mut nodes = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            nodes.push(start(i as u64 + 1, l, SECRET).await);
        }
        nodes[0].raft.initialize(members).await.unwrap();
        let all: Vec<&Node> = nodes.iter().collect();
        let first = bump_on_leader(&all).await;
        let at = |id: u64| &nodes[id as usize - 1];
        epoch_everywhere(&all, 1).await;

        // The leader goes away: the other two elect one of themselves and go on.
        at(first).server.abort();
        at(first).raft.shutdown().await.unwrap();
        let rest: Vec<&Node> = nodes.iter().filter(|n| n.raft.metrics().borrow_watched().clone().id != first).collect();
        let second = bump_on_leader(&rest).await;
        assert_ne!(second, first);
        epoch_everywhere(&rest, 2).await;
    }
}
