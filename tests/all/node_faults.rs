//! A randomized fault test for one node: for a minute, clients put,
//! PutMany, delete, remove versions and read, while write-path failpoints
//! fire at random, the disk fills and frees, and the server is killed
//! (`kill -9`) and restarted. The history checker then asks: was any
//! acknowledged write lost, did any read return bytes never written, and
//! is anything live that was never acknowledged, unless its answer said it
//! might have been stored (a broken connection)? STRATA_FAULT_SEED replays
//! a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::api::pb;
use tonic::Code;

use crate::common::*;

const KEYS: usize = 10;

/// What the answer to a write says about it.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Acked(String),
    /// The server answered with an error: nothing was stored.
    Refused(Code),
    /// The connection broke (the server was killed): it may be stored.
    Unknown,
}

fn outcome_of(r: Result<String, tonic::Status>) -> Outcome {
    match r {
        Ok(v) => Outcome::Acked(v),
        // Codes a client library makes up when the connection breaks.
        Err(e) if matches!(e.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded) => Outcome::Unknown,
        Err(e) => Outcome::Refused(e.code()),
    }
}

#[derive(Default)]
struct History {
    /// Puts: id -> (key, length, outcome).
    puts: BTreeMap<u64, (String, usize, Outcome)>,
    /// Deletes: (key, outcome); an acked one names its marker.
    deletes: Vec<(String, Outcome)>,
    /// Versions removed for good: (key, version, outcome).
    removals: Vec<(String, String, Outcome)>,
    refusals: BTreeMap<String, u64>,
    events: Vec<String>,
}

/// Write `id`'s bytes: the id, then a fill byte tied to it.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut v = vec![(id % 251) as u8; len.max(8)];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v
}

fn is_payload(got: &[u8], id: u64, len: usize) -> bool {
    got.len() == len.max(8) && got[..8] == id.to_le_bytes() && got[8..].iter().all(|b| *b == (id % 251) as u8)
}

fn id_of(got: &[u8]) -> u64 {
    u64::from_le_bytes(got.get(..8).unwrap_or(&[0; 8]).try_into().unwrap())
}

async fn client(addr: std::net::SocketAddr) -> Option<Client> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.timeout(Duration::from_secs(10));
    Some(pb::strata_client::StrataClient::new(ep.connect().await.ok()?))
}

fn size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0..=5 => rng.random_range(8..3000),
        6..=8 => rng.random_range(40_000..200_000),
        _ => rng.random_range(500_000..1_500_000),
    }
}

const POINTS: &[&str] = &[
    "store.write=30%return(enospc)",
    "store.write=30%return",
    "store.sync=30%return",
    "store.publish=30%return",
    "store.dirsync=30%return",
    "meta.commit=30%return(full)",
    "meta.commit=30%return",
    "meta.commit=return(full)",
];

#[tokio::test(flavor = "multi_thread")]
async fn random_write_path_faults_disk_fills_and_kills_lose_no_acknowledged_write() {
    let seed: u64 = std::env::var("STRATA_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("node fault test seed {seed}");
    let points = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(points.path(), "").unwrap();
    let mut s = TestServer::prepare(
        "127.0.0.1",
        "[storage]\nmin_free_space = \"4MiB\"\ngc_interval = \"1s\"\ncleanup_age = \"0s\"",
        vec![("STRATA_FAILPOINTS_FILE".into(), points.path().display().to_string())],
    );
    let tmpfs = mount_tmpfs(&s.data(), "160m");
    if tmpfs.is_none() {
        eprintln!("running without disk-full faults");
    }
    s.boot();
    s.pin_port();
    let addr = s.addr();
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));

    let mut tasks = Vec::new();
    for w in 0..5u64 {
        let (history, stop, next_id) = (history.clone(), stop.clone(), next_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (w + 1));
            while !stop.load(Ordering::Relaxed) {
                let Some(mut c) = client(addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let key = format!("key-{}", rng.random_range(0..KEYS));
                let op = if w == 4 { 9 } else { rng.random_range(0..9) };
                match op {
                    0..=4 => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let len = size(&mut rng);
                        // On record before it is sent: a reader may see it before its answer.
                        history.lock().unwrap().puts.insert(id, (key.clone(), len, Outcome::Unknown));
                        let r = put(&mut c, header(&key), &payload(id, len)).await;
                        let o = outcome_of(r.map(|i| i.version));
                        let h = &mut history.lock().unwrap();
                        if let Outcome::Refused(code) = &o {
                            *h.refusals.entry(format!("put {code:?}")).or_default() += 1;
                        }
                        h.puts.insert(id, (key, len, o));
                    }
                    5 => {
                        let n = rng.random_range(1..6);
                        let mut items = Vec::new();
                        let mut ids = Vec::new();
                        for _ in 0..n {
                            let id = next_id.fetch_add(1, Ordering::Relaxed);
                            let key = format!("key-{}", rng.random_range(0..KEYS));
                            let len = rng.random_range(8..3000);
                            items.push(pb::PutManyItem { header: Some(header(&key)), data: Bytes::from(payload(id, len)) });
                            ids.push((id, key, len));
                        }
                        for (id, key, len) in &ids {
                            history.lock().unwrap().puts.insert(*id, (key.clone(), *len, Outcome::Unknown));
                        }
                        let r = c.put_many(futures::stream::iter(vec![pb::PutManyRequest { items }])).await;
                        let h = &mut history.lock().unwrap();
                        match r {
                            Ok(resp) => {
                                for ((id, key, len), res) in ids.into_iter().zip(resp.into_inner().results) {
                                    let o = match res.object {
                                        Some(obj) if res.code == 0 => Outcome::Acked(obj.version),
                                        _ => Outcome::Refused(Code::from(res.code)),
                                    };
                                    h.puts.insert(id, (key, len, o));
                                }
                            }
                            Err(e) => {
                                let o = outcome_of(Err(e));
                                for (id, key, len) in ids {
                                    h.puts.insert(id, (key, len, o.clone()));
                                }
                            }
                        }
                    }
                    6 => {
                        let r = c.delete(pb::DeleteRequest { key: key.clone(), ..Default::default() }).await;
                        let o = outcome_of(r.map(|d| d.into_inner().marker_version));
                        history.lock().unwrap().deletes.push((key, o));
                    }
                    7 => {
                        // Remove an acknowledged version for good.
                        let version = {
                            let h = history.lock().unwrap();
                            let acked: Vec<&String> = h
                                .puts
                                .values()
                                .filter(|(k, _, _)| *k == key)
                                .filter_map(|(_, _, o)| if let Outcome::Acked(v) = o { Some(v) } else { None })
                                .collect();
                            (!acked.is_empty()).then(|| acked[rng.random_range(0..acked.len())].clone())
                        };
                        if let Some(version) = version {
                            let r = c.delete(pb::DeleteRequest { key: key.clone(), version: version.clone(), ..Default::default() }).await;
                            let o = outcome_of(r.map(|_| String::new()));
                            history.lock().unwrap().removals.push((key, version, o));
                        }
                    }
                    _ => {
                        // Reads: bytes served are always bytes some put wrote to that key.
                        if let Ok((info, got)) = get(&mut c, pb::GetRequest { key: key.clone(), ..Default::default() }).await {
                            let id = id_of(&got);
                            let h = &mut history.lock().unwrap();
                            let ok = h.puts.get(&id).is_some_and(|(k, len, _)| *k == key && is_payload(&got, id, *len));
                            if !ok {
                                h.events.push(format!(
                                    "BAD READ of {key}: {} bytes, claims write {id}, version {}",
                                    got.len(),
                                    info.version
                                ));
                            }
                        }
                    }
                }
            }
        }));
    }

    // Faults, one at a time.
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let filler = s.dir.path().join("data").join("filler");
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let hold = Duration::from_millis(rng.random_range(300..2500));
        let fault = rng.random_range(0..10);
        let t = started.elapsed();
        match fault {
            0..=5 => {
                let p = POINTS[rng.random_range(0..POINTS.len())];
                history.lock().unwrap().events.push(format!("{t:?}: failpoint {p} for {hold:?}"));
                std::fs::write(points.path(), p).unwrap();
                tokio::time::sleep(hold).await;
                std::fs::write(points.path(), "").unwrap();
            }
            6..=7 if tmpfs.is_some() => {
                // Fill the disk into the reserve, or to the last byte.
                let leave = if rng.random_bool(0.5) { 0 } else { rng.random_range(0..4u64 << 20) };
                history.lock().unwrap().events.push(format!("{t:?}: disk filled to {leave} bytes free for {hold:?}"));
                let f = filler.clone();
                let data = s.data();
                tokio::task::spawn_blocking(move || fill(&f, &data, leave)).await.unwrap();
                tokio::time::sleep(hold).await;
                let _ = std::fs::remove_file(&filler);
            }
            _ => {
                history.lock().unwrap().events.push(format!("{t:?}: kill -9, restart"));
                s.kill9();
                s.boot();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    std::fs::write(points.path(), "").unwrap();
    let _ = std::fs::remove_file(&filler);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The next write after the faults clear succeeds, without a restart. If
    // the workload's own versions filled the disk, the refusal is right:
    // remove the largest acknowledged versions and let GC run until it fits.
    let mut c = s.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match put(&mut c, header("after"), b"after the faults").await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                let victims: Vec<(String, String)> = {
                    let h = history.lock().unwrap();
                    let gone: BTreeSet<&String> = h.removals.iter().filter(|r| !matches!(r.2, Outcome::Refused(_))).map(|r| &r.1).collect();
                    let mut acked: Vec<(usize, String, String)> = h
                        .puts
                        .values()
                        .filter_map(|(k, len, o)| match o {
                            Outcome::Acked(v) if !gone.contains(v) => Some((*len, k.clone(), v.clone())),
                            _ => None,
                        })
                        .collect();
                    acked.sort();
                    acked.into_iter().rev().take(10).map(|(_, k, v)| (k, v)).collect()
                };
                for (key, version) in victims {
                    let r = c.delete(pb::DeleteRequest { key: key.clone(), version: version.clone(), ..Default::default() }).await;
                    let o = outcome_of(r.map(|_| String::new()));
                    history.lock().unwrap().removals.push((key, version, o));
                }
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            Err(e) => panic!("the first put after the faults: {e:?}"),
        }
    }
    assert_eq!(get_key(&mut c, "after").await.unwrap(), b"after the faults");

    let h = std::mem::take(&mut *history.lock().unwrap());
    let dump = || {
        let path = std::env::temp_dir().join(format!("strata-node-fault-history-{seed}.txt"));
        let mut text = format!("seed {seed}\n");
        h.events.iter().for_each(|e| text.push_str(&format!("{e}\n")));
        for (id, (key, len, o)) in &h.puts {
            text.push_str(&format!("put {id} {key} {len} bytes: {o:?}\n"));
        }
        for (key, o) in &h.deletes {
            text.push_str(&format!("delete {key}: {o:?}\n"));
        }
        for (key, v, o) in &h.removals {
            text.push_str(&format!("remove {key} {v}: {o:?}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        format!("seed {seed}; history in {}", path.display())
    };
    let acked = h.puts.values().filter(|p| matches!(p.2, Outcome::Acked(_))).count();
    eprintln!(
        "{} puts ({acked} acknowledged), {} deletes, {} removals; refusals {:?}; {} faults",
        h.puts.len(),
        h.deletes.len(),
        h.removals.len(),
        h.refusals,
        h.events.len()
    );
    let bad: Vec<&String> = h.events.iter().filter(|e| e.starts_with("BAD")).collect();
    assert!(bad.is_empty(), "reads returned bytes never written: {bad:?}; {}", dump());
    assert!(acked > 100, "too few puts were acknowledged ({acked}); {}", dump());

    // Every version on record is accounted for; every acknowledged one is there.
    let removed: BTreeSet<&String> = h.removals.iter().filter(|r| !matches!(r.2, Outcome::Refused(_))).map(|r| &r.1).collect();
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let listed = versions(&mut c, &key).await;
        let present: BTreeSet<&String> = listed.iter().map(|v| &v.version).collect();
        for (id, (pk, len, o)) in h.puts.iter().filter(|p| p.1.0 == key) {
            if let Outcome::Acked(v) = o {
                if removed.contains(v) {
                    continue;
                }
                assert!(present.contains(v), "acknowledged put {id} ({key} {v}) is lost; {}", dump());
                let req = pb::GetRequest { key: pk.clone(), version: v.clone(), ..Default::default() };
                let (_, got) = get(&mut c, req).await.unwrap_or_else(|e| panic!("acknowledged put {id} ({key} {v}): {e:?}; {}", dump()));
                assert!(is_payload(&got, *id, *len), "put {id} ({key} {v}) reads back other bytes; {}", dump());
            }
        }
        let mut markers = 0;
        for v in &listed {
            if v.delete_marker {
                markers += 1;
                continue;
            }
            let req = pb::GetRequest { key: key.clone(), version: v.version.clone(), ..Default::default() };
            let (_, got) =
                get(&mut c, req).await.unwrap_or_else(|e| panic!("{key} {} is listed but unreadable: {e:?}; {}", v.version, dump()));
            let id = id_of(&got);
            match h.puts.get(&id) {
                Some((pk, len, Outcome::Acked(av))) if *pk == key && *av == v.version && is_payload(&got, id, *len) => {}
                Some((pk, len, Outcome::Unknown)) if *pk == key && is_payload(&got, id, *len) => {}
                other => panic!("{key} {} holds write {id} whose answer was {other:?}; {}", v.version, dump()),
            }
        }
        let deletes = h.deletes.iter().filter(|d| d.0 == key);
        let possible = deletes.clone().filter(|d| !matches!(d.1, Outcome::Refused(_))).count();
        for (_, o) in deletes {
            if let Outcome::Acked(marker) = o
                && !marker.is_empty()
            {
                assert!(present.contains(marker), "{key}: the marker of an acknowledged delete ({marker}) is lost; {}", dump());
            }
        }
        assert!(markers <= possible, "{key}: {markers} markers but only {possible} deletes could have made them; {}", dump());
    }
    drop(h);
    s.kill9();
    drop(tmpfs);
}

/// Writes `path` until `leave` bytes are free on the disk of `dir`.
fn fill(path: &std::path::Path, dir: &std::path::Path, leave: u64) {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(path) else { return };
    let free = strata::store::local::free_space(dir).unwrap_or(0);
    let mut left = free.saturating_sub(leave);
    let block = vec![0x5au8; 1 << 20];
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        if f.write_all(&block[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
}
