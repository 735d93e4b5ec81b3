//! A randomized fault test: clients write and read while nodes are killed,
//! restarted and cut off, for a minute. A history checker then asks: was
//! any acknowledged write lost, did any read return bytes never written,
//! and do all replicas agree? Set STRATA_FAULT_SEED to replay a run; the
//! seed and the history are printed on failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::api::pb;

use crate::cluster::Net;
use crate::common::*;

const KEYS: usize = 12;

/// What the clients did.
#[derive(Default)]
struct History {
    /// Every write attempted: id -> (key, bytes).
    attempted: BTreeMap<u64, (String, Vec<u8>)>,
    /// Acknowledged writes: id -> version.
    acked: BTreeMap<u64, String>,
    /// Reads: (key, write id the bytes carried, version served).
    reads: Vec<(String, u64, String)>,
    events: Vec<String>,
}

/// Bytes of write `id` to `key`: the id first, then filler tied to it.
fn payload(id: u64, rng: &mut StdRng) -> Vec<u8> {
    let len = 16 + rng.random_range(0..60_000);
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&id.to_le_bytes());
    let fill = (id % 251) as u8;
    v[8..].iter_mut().for_each(|b| *b = fill);
    v
}

async fn client(addr: std::net::SocketAddr) -> Option<Client> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.timeout(Duration::from_secs(10));
    Some(pb::strata_client::StrataClient::new(ep.connect().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_restarts_and_partitions_lose_no_acknowledged_write() {
    let seed: u64 = std::env::var("STRATA_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("fault test seed {seed}");
    let mut net = Net::start(
        3,
        "\n[replication]\nretry_delay = \"200ms\"\nretry_attempts = 3\nrepair_delay = \"1h\"\nanti_entropy_interval = \"1s\"\n",
    );
    net.form().await;
    let addrs: Vec<std::net::SocketAddr> = net.nodes.iter().map(|n| n.addr()).collect();
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1));

    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let (history, stop, next_id, addrs) = (history.clone(), stop.clone(), next_id.clone(), addrs.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (w + 1));
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key-{}", rng.random_range(0..KEYS));
                let Some(mut c) = client(addrs[rng.random_range(0..addrs.len())]).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if w < 4 {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let data = payload(id, &mut rng);
                    history.lock().unwrap().attempted.insert(id, (key.clone(), data.clone()));
                    if let Ok(info) = put(&mut c, header(&key), &data).await {
                        history.lock().unwrap().acked.insert(id, info.version);
                    }
                } else if let Ok((info, got)) = get(&mut c, pb::GetRequest { key: key.clone(), ..Default::default() }).await {
                    let id = u64::from_le_bytes(got.get(..8).unwrap_or(&[0; 8]).try_into().unwrap());
                    let h = &mut history.lock().unwrap();
                    let ok = h.attempted.get(&id).is_some_and(|(k, d)| *k == key && *d == got);
                    if !ok {
                        h.events.push(format!("BAD READ of {key}: {} bytes, claims write {id}, version {}", got.len(), info.version));
                    }
                    h.reads.push((key, id, info.version));
                }
            }
        }));
    }

    // Faults: one node at a time is killed or cut off, then brought back.
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..4000))).await;
        let victim = rng.random_range(0..3);
        let outage = Duration::from_millis(rng.random_range(500..5000));
        if rng.random_bool(0.5) {
            history.lock().unwrap().events.push(format!("{:?}: kill -9 node {victim} for {outage:?}", started.elapsed()));
            net.nodes[victim].kill9();
            tokio::time::sleep(outage).await;
            net.nodes[victim].boot();
        } else {
            history.lock().unwrap().events.push(format!("{:?}: cut off node {victim} for {outage:?}", started.elapsed()));
            net.partition(&[victim]);
            tokio::time::sleep(outage).await;
            net.heal();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    net.agree(&[0, 1, 2], 3).await;

    let h = std::mem::take(&mut *history.lock().unwrap());
    let dump = || {
        let path = std::env::temp_dir().join(format!("strata-fault-history-{seed}.txt"));
        let mut text = format!("seed {seed}\n");
        h.events.iter().for_each(|e| text.push_str(&format!("{e}\n")));
        for (id, (key, _)) in &h.attempted {
            text.push_str(&format!("write {id} {key} acked={:?}\n", h.acked.get(id)));
        }
        for (key, id, v) in &h.reads {
            text.push_str(&format!("read {key} -> write {id} version {v}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        format!("seed {seed}; history in {}; events: {:?}", path.display(), h.events)
    };
    let bad: Vec<&String> = h.events.iter().filter(|e| e.starts_with("BAD")).collect();
    assert!(bad.is_empty(), "reads returned bytes never written: {bad:?}; {}", dump());
    assert!(h.acked.len() > 50, "too few writes were acknowledged ({}); {}", h.acked.len(), dump());

    // Every acknowledged write reads back, by its version, through every node.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..3 {
        let mut c = net.nodes[i].client().await;
        for (id, version) in &h.acked {
            let (key, data) = &h.attempted[id];
            let req = pb::GetRequest { key: key.clone(), version: version.clone(), ..Default::default() };
            match get(&mut c, req).await {
                Ok((_, got)) => assert!(&got == data, "write {id} ({key} {version}) reads back different bytes; {}", dump()),
                Err(e) => panic!("acknowledged write {id} ({key} {version}) is lost via node {i}: {e:?}; {}", dump()),
            }
        }
    }
    // All replicas converge: each node holds the same history of each key.
    for k in 0..KEYS {
        let key = format!("key-{k}");
        loop {
            let mut seen = Vec::new();
            for n in &net.nodes {
                seen.push(versions(&mut n.client().await, &key).await.into_iter().map(|v| v.version).collect::<Vec<_>>());
            }
            if seen.iter().all(|s| *s == seen[0]) {
                break;
            }
            assert!(Instant::now() < deadline, "{key}: replicas never converged: {seen:?}; {}", dump());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
