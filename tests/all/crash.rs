//! `kill -9` during concurrent puts: every acknowledged put survives, and
//! nothing partial becomes visible.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use strata::api::pb;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_puts_survive_kill_9() {
    let mut s = TestServer::start("");
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = s.client().await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                // Mixed sizes: some single-frame, some several MiB.
                let size = if i % 5 == 0 { 3 << 20 } else { 1000 + i * 37 };
                let data = random_bytes(size);
                let key = format!("w{w}/{i}");
                match put(&mut c, header(&key), &data).await {
                    Ok(info) => {
                        assert_eq!(info.digest, sha256_hex(&data));
                        acked.lock().unwrap().insert(key, info.digest);
                    }
                    Err(_) => return, // the server died under us
                }
            }
        }));
    }
    // Let writes pile up, then pull the plug mid-stream.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if acked.lock().unwrap().len() >= 60 {
            break;
        }
    }
    s.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "too few puts before the crash to mean anything: {}", acked.len());

    s.boot();
    let mut c = s.client().await;
    for (key, digest) in &acked {
        let got = get_key(&mut c, key).await.unwrap_or_else(|e| panic!("acknowledged {key} lost: {e:?}"));
        assert_eq!(&sha256_hex(&got), digest, "{key} reads back intact");
    }
    // Whatever else is visible (a put committed just before the kill but not
    // yet acknowledged) must be whole too.
    let listed = c.list(pb::ListRequest { limit: 10_000, ..Default::default() }).await.unwrap().into_inner().objects;
    assert!(listed.len() >= acked.len());
    for o in listed {
        let got = get_key(&mut c, &o.key).await.expect("listed objects read back");
        assert_eq!(sha256_hex(&got), o.digest, "{} is whole", o.key);
        assert_eq!(got.len() as u64, o.size);
    }
    assert_eq!(temp_files(&s.data()), 0, "restart clears temp files");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_upload_leaves_nothing() {
    let s = TestServer::start("");
    let url = s.url.clone();
    // A separate process-like client: stream half an object, then drop the connection.
    let task = tokio::spawn(async move {
        let ch = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
        let mut c = pb::strata_client::StrataClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::PutRequest { part: Some(pb::put_request::Part::Header(header("half"))) }).await.unwrap();
        tx.send(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(random_bytes(1 << 20).into())) }).await.unwrap();
        let call = tokio::spawn(async move { c.put(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        call.abort(); // the connection goes away with the call
        std::mem::forget(tx);
    });
    task.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = s.client().await;
    assert_eq!(get_key(&mut c, "half").await.unwrap_err().code(), tonic::Code::NotFound);
    assert!(blob_files(&s.data()).is_empty(), "no blob from the broken upload");
    assert_eq!(temp_files(&s.data()), 0, "its temp file is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_then_restart_keeps_everything() {
    let mut s = TestServer::start("");
    let mut c = s.client().await;
    let data = random_bytes(5000);
    put_key(&mut c, "kept", &data).await;
    drop(c);
    s.stop();
    s.boot();
    let mut c = s.client().await;
    assert_eq!(get_key(&mut c, "kept").await.unwrap(), data);
}
