//! Conditional writes and restores on a cluster: decided against the key's
//! newest version across the cluster, linearizable per key, refused on a
//! minority side.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use strata::api::pb;
use strata::api::pb::strata_client::StrataClient;
use tonic::Code;

use crate::cluster::{Net, ok, status};
use crate::common::*;

const FAST: &str = "\n[replication]\nretry_delay = \"200ms\"\nretry_attempts = 3\nsync_timeout = \"2s\"\n";

async fn connect(url: &str) -> Option<Client> {
    let ep = tonic::transport::Endpoint::from_shared(url.to_string()).ok()?.connect_timeout(Duration::from_millis(500));
    let ch = tokio::time::timeout(Duration::from_secs(2), ep.connect()).await.ok()?.ok()?;
    Some(StrataClient::new(ch))
}

fn conditional(key: &str, if_absent: bool, if_version: &str, request_id: &str) -> pb::PutHeader {
    pb::PutHeader { if_absent, if_version: if_version.into(), request_id: request_id.into(), ..header(key) }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_concurrent_if_absent_puts_from_every_node_have_one_winner() {
    let net = Net::start(3, FAST);
    net.form().await;
    let urls: Vec<String> = net.nodes.iter().map(|n| format!("http://{}", n.addr())).collect();
    let tries = (0..30).map(|i| {
        let url = urls[i % 3].clone();
        tokio::spawn(async move {
            let mut c = connect(&url).await.expect("connect");
            put(&mut c, conditional("claim", true, "", ""), format!("writer {i}").as_bytes()).await
        })
    });
    let results: Vec<_> = futures::future::join_all(tries).await.into_iter().map(|r| r.unwrap()).collect();
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "exactly one if_absent put wins: {results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::FailedPrecondition, "the others are told it exists: {r:?}");
    }
    for n in &net.nodes {
        let v = versions(&mut n.client().await, "claim").await;
        assert_eq!(v.len(), 1, "one version on every node: {v:?}");
        assert_eq!(v[0].version, won[0].version);
    }
}

/// What an acknowledged increment read and wrote.
#[derive(Debug)]
struct Increment {
    read: String,
    value: u64,
}

/// `rounds` compare-and-set increments of "counter" through nodes picked
/// in turn. A put whose outcome is unknown (its node died, no quorum) is
/// sent again as it was, with the same request id, through another node:
/// if the first landed, the retry answers it; a failed condition reads
/// again.
async fn incrementer(urls: Arc<Vec<String>>, id: usize, rounds: usize) -> Vec<Increment> {
    let mut done = Vec::new();
    let mut turn = id;
    for n in 0..rounds {
        let rid = format!("client-{id}-increment-{n}");
        let mut pending: Option<(String, u64)> = None;
        loop {
            turn += 1;
            let Some(mut c) = connect(&urls[turn % urls.len()]).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (read, value) = match pending.clone() {
                Some(p) => p,
                None => match get(&mut c, pb::GetRequest { key: "counter".into(), ..Default::default() }).await {
                    Ok((info, data)) => (info.version, String::from_utf8(data).unwrap().parse::<u64>().unwrap()),
                    Err(_) => continue,
                },
            };
            match put(&mut c, conditional("counter", false, &read, &rid), (value + 1).to_string().as_bytes()).await {
                Ok(_) => {
                    done.push(Increment { read, value: value + 1 });
                    break;
                }
                Err(e) if e.code() == Code::FailedPrecondition => pending = None,
                Err(_) => {
                    pending = Some((read, value));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compare_and_set_counter_through_every_node_survives_kills_of_the_raft_leader() {
    let mut net = Net::start(3, FAST);
    let views = net.form().await;
    put(&mut net.nodes[0].client().await, conditional("counter", true, "", ""), b"0").await.unwrap();
    let urls = Arc::new(net.nodes.iter().map(|n| format!("http://{}", n.addr())).collect::<Vec<_>>());
    let clients: Vec<_> = (0..9).map(|id| tokio::spawn(incrementer(urls.clone(), id, 20))).collect();
    let mut kills = 0;
    // Kill the leader (whose Raft log grants the keys' locks) and bring it
    // back, twice, while the clients run.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = status(&mut net.nodes[0].client().await).await.leader;
        let Some(i) = views.iter().position(|v| v.node_id == leader) else { continue };
        net.nodes[i].kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        net.nodes[i].boot();
    }
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(tokio::time::timeout(Duration::from_secs(240), c).await.expect("clients finish").unwrap());
    }
    assert!(kills > 0);
    assert_eq!(acked.len(), 180);
    let (_, data) = get(&mut net.nodes[1].client().await, pb::GetRequest { key: "counter".into(), ..Default::default() }).await.unwrap();
    let last: u64 = String::from_utf8(data).unwrap().parse().unwrap();
    assert_eq!(last, acked.len() as u64, "the final value is the number of acknowledged increments");
    let reads: BTreeSet<&String> = acked.iter().map(|i| &i.read).collect();
    assert_eq!(reads.len(), acked.len(), "no two acknowledged increments read the same version");
    let values: BTreeSet<u64> = acked.iter().map(|i| i.value).collect();
    assert_eq!(values, (1..=180).collect(), "each value was written by exactly one acknowledged increment");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_minority_refuses_conditional_writes_and_restore_works() {
    let net = Net::start(3, FAST);
    net.form().await;
    let mut a = net.nodes[0].client().await;
    let first = put(&mut a, header("doc"), b"first").await.unwrap();
    let second = put(&mut a, conditional("doc", false, &first.version, ""), b"second").await.unwrap();
    let stale = put(&mut a, conditional("doc", false, &first.version, ""), b"third").await.unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert!(stale.message().contains(&second.version), "{stale:?}");

    net.partition(&[2]);
    let mut lone = net.nodes[2].client().await;
    let refused = put(&mut lone, conditional("doc", false, &second.version, ""), b"minority").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let refused = put(&mut lone, conditional("fresh", true, "", ""), b"minority").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // The majority goes on.
    let third = put(&mut a, conditional("doc", false, &second.version, ""), b"majority").await.unwrap();
    net.heal();
    net.agree(&[0, 1, 2], 3).await;

    // Restore through another node: a new version with the first's bytes.
    let out = ok(net.nodes[1].cli(&["restore", "doc", &first.version]));
    assert!(out.contains("doc"), "{out}");
    for n in &net.nodes {
        let mut c = n.client().await;
        assert_eq!(get_key(&mut c, "doc").await.unwrap(), b"first");
    }
    let v = versions(&mut net.nodes[2].client().await, "doc").await;
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v[1].version == third.version && v[0].version > third.version);
    // A conditional put against the version before the restore now fails.
    let late = put(&mut a, conditional("doc", false, &third.version, ""), b"late").await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
}
