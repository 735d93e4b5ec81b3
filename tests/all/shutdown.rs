//! A graceful stop under load: 32 writers are putting when SIGTERM
//! arrives. The process exits within `shutdown_grace`; after a restart
//! every acknowledged write is there byte-exact, and any other key that is
//! there holds exactly what its writer sent (nothing half visible).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_keeps_every_acknowledged_write() {
    let mut s = TestServer::start("[server]\nshutdown_grace = \"3s\"\n");
    s.pin_port();
    let acked = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let tried = Arc::new(Mutex::new(std::collections::HashMap::<String, Vec<u8>>::new()));
    let mut writers = Vec::new();
    for w in 0..32 {
        let mut c = s.client().await;
        let (acked, tried) = (acked.clone(), tried.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("w{w}/k{i}");
                let data = random_bytes((64 << 10) + (i * 7919) % 4096);
                tried.lock().unwrap().insert(key.clone(), data.clone());
                match put(&mut c, header(&key), &data).await {
                    Ok(_) => acked.lock().unwrap().push((key, data)),
                    // The server went away: a clean status, then this writer stops.
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 32, "the writers were writing: {before}");
    let t = Instant::now();
    s.stop();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3) + Duration::from_secs(3), "exited within the grace (3 s) and the close: {took:?}");
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w).await.expect("writers end once the server is gone").unwrap();
    }

    s.boot();
    let mut c = s.client().await;
    let acked = acked.lock().unwrap().clone();
    for (key, data) in &acked {
        assert!(get_key(&mut c, key).await.ok().as_ref() == Some(data), "acknowledged {key} is there byte-exact");
    }
    // Whatever else is there is whole.
    let tried = tried.lock().unwrap().clone();
    let mut token = String::new();
    let mut seen = 0;
    loop {
        let page = c
            .list(strata::api::pb::ListRequest { page_token: token.clone(), limit: 1000, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        for o in &page.objects {
            seen += 1;
            let sent = tried.get(&o.key).unwrap_or_else(|| panic!("{} was never written", o.key));
            assert_eq!(o.size, sent.len() as u64, "{} is whole", o.key);
            let got = get_key(&mut c, &o.key).await.unwrap();
            assert!(got == *sent, "{} holds what its writer sent", o.key);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(seen >= acked.len(), "{seen} objects, {} acknowledged", acked.len());
}

/// Calls still running when the grace runs out are answered UNAVAILABLE,
/// not cut off: a put whose client sends slowly, and a download read slowly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_running_past_the_grace_are_answered_unavailable() {
    use strata::api::pb;
    let mut s = TestServer::start("[server]\nshutdown_grace = \"1s\"\n");
    let mut c = s.client().await;
    put_key(&mut c, "big", &random_bytes(32 << 20)).await;

    let mut uploader = s.client().await;
    let slow_put = tokio::spawn(async move {
        let parts = futures::stream::unfold(0u32, |i| async move {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let part = match i {
                0 => pb::put_request::Part::Header(header("slow")),
                200 => return None,
                _ => pb::put_request::Part::Chunk(bytes::Bytes::from(vec![7u8; 4096])),
            };
            Some((pb::PutRequest { part: Some(part) }, i + 1))
        });
        uploader.put(parts).await
    });
    let mut reader = s.client().await;
    let slow_get = tokio::spawn(async move {
        let mut stream = reader.get(pb::GetRequest { key: "big".into(), ..Default::default() }).await?.into_inner();
        loop {
            match stream.message().await? {
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                None => return Ok::<_, tonic::Status>(()),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let mut s = tokio::task::spawn_blocking(move || {
        s.stop();
        s
    })
    .await
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "exited within the grace and the close: {:?}", t.elapsed());
    for (what, r) in [("the slow put", slow_put.await.unwrap().map(drop)), ("the slow get", slow_get.await.unwrap())] {
        let e = r.expect_err(what);
        assert_eq!(e.code(), tonic::Code::Unavailable, "{what}: {e:?}");
        assert!(e.message().contains("shutting down"), "{what}: {}", e.message());
    }
    // Nothing of the cut put is visible after a restart.
    s.boot();
    let mut c = s.client().await;
    assert_eq!(get_key(&mut c, "slow").await.unwrap_err().code(), tonic::Code::NotFound);
    assert_eq!(get_key(&mut c, "big").await.unwrap().len(), 32 << 20);
}
