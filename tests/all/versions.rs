//! Versions at scale: restoring an old version, retention by age, and the
//! metadata cache under concurrent writers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strata::api::pb;
use tonic::Code;

use crate::common::*;

fn with_attr(key: &str, name: &str, value: &str) -> pb::PutHeader {
    let mut h = header(key);
    h.attributes = HashMap::from([(name.to_string(), pb::Value { kind: Some(pb::value::Kind::String(value.into())) })]);
    h
}

#[tokio::test]
async fn restore_makes_an_old_version_live_again() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let v1 = put(&mut c, with_attr("model.bin", "stage", "v1"), b"first weights").await.unwrap();
    put(&mut c, with_attr("model.bin", "stage", "v2"), b"second weights").await.unwrap();
    let restored = c
        .restore(pb::RestoreRequest { key: "model.bin".into(), version: v1.version.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(restored.version, v1.version, "a new version");
    assert_eq!(restored.digest, v1.digest);
    assert_eq!(get_key(&mut c, "model.bin").await.unwrap(), b"first weights");
    let (info, _) = get(&mut c, pb::GetRequest { key: "model.bin".into(), ..Default::default() }).await.unwrap();
    assert_eq!(info.attributes["stage"].kind, Some(pb::value::Kind::String("v1".into())));
    assert_eq!(versions(&mut c, "model.bin").await.len(), 3);
    // Shared, not copied: still two blobs for three versions.
    assert_eq!(stats(&mut c).await.blobs, 2);

    // A delete marker has nothing to restore; unknown versions and keys are not found.
    let marker = c.delete(pb::DeleteRequest { key: "model.bin".into(), ..Default::default() }).await.unwrap().into_inner();
    let err = c
        .restore(pb::RestoreRequest { key: "model.bin".into(), version: marker.marker_version.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("delete marker"), "{}", err.message());
    let err = c.restore(pb::RestoreRequest { key: "model.bin".into(), version: "nope".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c.restore(pb::RestoreRequest { key: "model.bin".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // From the CLI, after the delete: the object comes back.
    let out = s.cli(&["restore", "model.bin", &v1.version, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get_key(&mut c, "model.bin").await.unwrap(), b"first weights");
}

#[tokio::test]
async fn versions_past_max_version_age_are_removed() {
    let s = TestServer::start("[metadata]\nmax_version_age = \"1s\"\ncompact_interval = \"500ms\"\n");
    let mut c = s.client().await;
    for body in [&b"one"[..], b"two", b"three"] {
        put_key(&mut c, "kept", body).await;
    }
    put_key(&mut c, "gone", b"soon deleted").await;
    c.delete(pb::DeleteRequest { key: "gone".into(), ..Default::default() }).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kept = versions(&mut c, "kept").await;
        let gone = c.list_versions(pb::ListVersionsRequest { key: "gone".into(), ..Default::default() }).await;
        if kept.len() == 1 && gone.as_ref().is_err_and(|e| e.code() == Code::NotFound) {
            break;
        }
        assert!(Instant::now() < deadline, "old versions never expired: {} of kept left", kept.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The live version stays however old it is.
    assert_eq!(get_key(&mut c, "kept").await.unwrap(), b"three");
    let st = stats(&mut c).await;
    assert_eq!((st.objects, st.versions), (1, 1));
}

#[tokio::test]
async fn the_cache_stays_correct_under_concurrent_writers() {
    let s = TestServer::start("[metadata]\ncache_size = 64\n");
    let keys = ["a", "b", "c", "d"];
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            for n in 0..40u32 {
                let key = keys[((t + n) % 4) as usize];
                let body = format!("{t}-{n}");
                let acked = put_key(&mut c, key, body.as_bytes()).await;
                // Read-your-write through the cache: this version or a later one.
                let (info, data) = get(&mut c, pb::GetRequest { key: key.into(), ..Default::default() }).await.unwrap();
                assert!(info.version >= acked.version, "{key}: read {} after writing {}", info.version, acked.version);
                if info.version == acked.version {
                    assert_eq!(data, body.as_bytes());
                }
                let stat = c.stat(pb::StatRequest { key: key.into(), ..Default::default() }).await.unwrap().into_inner();
                assert!(stat.version >= acked.version);
            }
        }));
    }
    // Readers hammer the same keys meanwhile.
    for _ in 0..2 {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            for n in 0..200usize {
                let _ = c.stat(pb::StatRequest { key: keys[n % 4].into(), ..Default::default() }).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = s.client().await;
    for key in keys {
        let newest = versions(&mut c, key).await.remove(0);
        let stat = c.stat(pb::StatRequest { key: key.into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(stat.version, newest.version, "{key}: the cache serves the newest version");
    }
    let st = stats(&mut c).await;
    assert!(st.cache_hits > 0 && st.cache_hit_ratio > 0.0, "{st:?}");
}
