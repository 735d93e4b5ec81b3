//! Round trips, ranges, dedup, versions, conditional puts, concurrency.

use crate::common::*;
use strata::api::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn round_trips_of_every_size() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    for (key, size) in [("zero", 0usize), ("one", 1), ("mib-plus-one", (1 << 20) + 1), ("big", 256 << 20)] {
        let data = random_bytes(size);
        let info = put_key(&mut c, key, &data).await;
        assert_eq!(info.size, size as u64);
        assert_eq!(info.digest, sha256_hex(&data), "{key}: digest reported by put");
        let (got_info, got) = get(&mut c, pb::GetRequest { key: key.into(), ..Default::default() }).await.unwrap();
        assert_eq!(got_info.digest, info.digest);
        assert_eq!(got.len(), size, "{key}: size read back");
        assert_eq!(sha256_hex(&got), info.digest, "{key}: digest of what was read back");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_read_the_right_bytes() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let data = random_bytes(3 * (1 << 20) + 77);
    put_key(&mut c, "r", &data).await;
    for (off, len) in [(0u64, 10u64), (5, 0), ((1 << 20) - 3, 10), (2 << 20, 1 << 20), (data.len() as u64 - 1, 5)] {
        let req = pb::GetRequest { key: "r".into(), offset: off, length: len, ..Default::default() };
        let (_, got) = get(&mut c, req).await.unwrap();
        let end = if len == 0 { data.len() } else { (off + len).min(data.len() as u64) as usize };
        assert_eq!(got, &data[off as usize..end], "range {off}+{len}");
    }
    let past = pb::GetRequest { key: "r".into(), offset: data.len() as u64 + 1, ..Default::default() };
    assert_eq!(get(&mut c, past).await.unwrap_err().code(), Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_content_is_stored_once() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let data = random_bytes(100_000);
    let a = put_key(&mut c, "a", &data).await;
    let b = put_key(&mut c, "dir/b", &data).await;
    assert_eq!(a.digest, b.digest);
    assert_eq!(blob_files(&s.data()).len(), 1, "two keys, one blob file");
    let st = stats(&mut c).await;
    assert_eq!((st.objects, st.blobs), (2, 1));
    assert!((st.dedup_ratio - 2.0).abs() < 1e-9, "dedup ratio {}", st.dedup_ratio);
    assert_eq!(st.logical_bytes, 200_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_delete_markers() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let v1 = put_key(&mut c, "k", b"one").await;
    let v2 = put_key(&mut c, "k", b"two").await;
    assert_ne!(v1.version, v2.version);
    assert_eq!(get_key(&mut c, "k").await.unwrap(), b"two");
    let old = pb::GetRequest { key: "k".into(), version: v1.version.clone(), ..Default::default() };
    assert_eq!(get(&mut c, old.clone()).await.unwrap().1, b"one");

    let del = c.delete(pb::DeleteRequest { key: "k".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(!del.marker_version.is_empty(), "versioning leaves a delete marker");
    assert_eq!(get_key(&mut c, "k").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(get(&mut c, old).await.unwrap().1, b"one", "old versions survive a delete");
    let vs = versions(&mut c, "k").await;
    assert_eq!(vs.len(), 3);
    assert!(vs[0].delete_marker && vs[0].latest);
    assert_eq!(vs[2].version, v1.version);

    // Removing the marker for good brings the object back.
    c.delete(pb::DeleteRequest { key: "k".into(), version: del.marker_version, ..Default::default() }).await.unwrap();
    assert_eq!(get_key(&mut c, "k").await.unwrap(), b"two");
    let missing = pb::GetRequest { key: "k".into(), version: "nope".into(), ..Default::default() };
    assert_eq!(get(&mut c, missing).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_the_newest_versions() {
    let s = TestServer::start("[metadata]\nmax_versions = 2\n[storage]\ncleanup_age = \"0s\"\ngc_interval = \"1s\"");
    let mut c = s.client().await;
    for i in 0..5 {
        put_key(&mut c, "k", format!("v{i}").as_bytes()).await;
    }
    let vs = versions(&mut c, "k").await;
    assert_eq!(vs.len(), 2);
    // GC removes the blobs of the dropped versions.
    let mut blobs = 0;
    for _ in 0..50 {
        blobs = stats(&mut c).await.blobs;
        if blobs == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(blobs, 2, "blobs of removed versions are collected");
}

#[tokio::test(flavor = "multi_thread")]
async fn unversioned_overwrites_and_gc_frees_space() {
    let s = TestServer::start("[metadata]\nenable_versioning = false\n[storage]\ncleanup_age = \"0s\"\ngc_interval = \"1s\"");
    let mut c = s.client().await;
    // Large enough to live in files, so GC has files to remove.
    put_key(&mut c, "k", &random_bytes(100_000)).await;
    put_key(&mut c, "k", &random_bytes(100_000)).await;
    let vs = versions(&mut c, "k").await;
    assert_eq!(vs.len(), 1);
    let del = c.delete(pb::DeleteRequest { key: "k".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(del.marker_version.is_empty());
    for _ in 0..50 {
        if blob_files(&s.data()).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(blob_files(&s.data()).is_empty(), "gc removed unreferenced blobs");
    let st = stats(&mut c).await;
    assert_eq!((st.objects, st.blobs, st.physical_bytes), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_puts() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let absent = pb::PutHeader { key: "c".into(), if_absent: true, ..Default::default() };
    let v1 = put(&mut c, absent.clone(), b"1").await.unwrap();
    let err = put(&mut c, absent, b"2").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let on_v1 = pb::PutHeader { key: "c".into(), if_version: v1.version.clone(), ..Default::default() };
    let v2 = put(&mut c, on_v1.clone(), b"2").await.unwrap();
    let stale = put(&mut c, on_v1, b"3").await.unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(stale.message().contains(&v2.version), "says which version is current: {}", stale.message());
    assert_eq!(get_key(&mut c, "c").await.unwrap(), b"2");
    let bogus = pb::PutHeader { key: "c".into(), if_version: "bogus".into(), ..Default::default() };
    let err = put(&mut c, bogus, b"4").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a malformed version is the client's mistake: {err:?}");
    assert!(err.message().contains("if_version"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_through_prefixes() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    for i in 0..25 {
        put_key(&mut c, &format!("p/{i:02}"), &[i as u8]).await;
    }
    put_key(&mut c, "q/other", b"x").await;
    let mut token = String::new();
    let mut keys = Vec::new();
    loop {
        let page =
            c.list(pb::ListRequest { prefix: "p/".into(), page_token: token, limit: 10, ..Default::default() }).await.unwrap().into_inner();
        assert!(page.objects.len() <= 10);
        keys.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    assert_eq!(keys, want);
}

/// A page larger than the server reads at once (1,000 records) is read in
/// chunks: nothing lost or repeated where they meet.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_thousands_is_whole() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let items: Vec<pb::PutManyItem> =
        (0..2500).map(|i| pb::PutManyItem { header: Some(header(&format!("k/{i:04}"))), data: vec![1].into() }).collect();
    assert!(put_many(&mut c, items).await.iter().all(|r| r.error.is_empty()));
    let page = c.list(pb::ListRequest { limit: 2100, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(page.objects.len(), 2100);
    let rest = c.list(pb::ListRequest { limit: 2100, page_token: page.next_page_token, ..Default::default() }).await.unwrap().into_inner();
    assert!(rest.next_page_token.is_empty());
    let keys: Vec<String> = page.objects.into_iter().chain(rest.objects).map(|o| o.key).collect();
    assert_eq!(keys, (0..2500).map(|i| format!("k/{i:04}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_separate_keys() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    c.create_bucket(pb::CreateBucketRequest { name: "models".into(), policy: None }).await.unwrap();
    let dup = c.create_bucket(pb::CreateBucketRequest { name: "models".into(), policy: None }).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let h = pb::PutHeader { bucket: "models".into(), key: "k".into(), ..Default::default() };
    put(&mut c, h, b"in models").await.unwrap();
    put_key(&mut c, "k", b"in default").await;
    let req = pb::GetRequest { bucket: "models".into(), key: "k".into(), ..Default::default() };
    assert_eq!(get(&mut c, req).await.unwrap().1, b"in models");
    let busy = c.delete_bucket(pb::DeleteBucketRequest { name: "models".into() }).await.unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    c.delete(pb::DeleteRequest { bucket: "models".into(), key: "k".into(), ..Default::default() }).await.unwrap();
    c.delete_bucket(pb::DeleteBucketRequest { name: "models".into() }).await.unwrap();
    let names: Vec<String> =
        c.list_buckets(pb::ListBucketsRequest {}).await.unwrap().into_inner().buckets.into_iter().map(|b| b.name).collect();
    assert_eq!(names, vec!["default".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_clients() {
    let s = TestServer::start("");
    let mut tasks = Vec::new();
    for w in 0..32 {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let data = random_bytes(1000 + w * 100 + i);
                let key = format!("w{w}/{i}");
                let info = put_key(&mut c, &key, &data).await;
                assert_eq!(info.digest, sha256_hex(&data));
                assert_eq!(get_key(&mut c, &key).await.unwrap(), data);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = s.client().await;
    let st = stats(&mut c).await;
    assert_eq!(st.objects, 320);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_cache_counts_hits() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    put_key(&mut c, "hot", b"x").await;
    for _ in 0..5 {
        c.stat(pb::StatRequest { key: "hot".into(), ..Default::default() }).await.unwrap();
    }
    let st = stats(&mut c).await;
    assert!(st.cache_hits >= 4, "{st:?}");
    assert!(st.cache_hit_ratio > 0.5);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer() {
    let s = TestServer::start("");
    let out = s.cli(&["health"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim().ends_with("READY"), "{text}");
    for check in ["space", "write", "plugins", "indexes"] {
        assert!(text.lines().any(|l| l.starts_with("ok") && l.contains(check)), "{check}: {text}");
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let ch = tonic::transport::Endpoint::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
    let mut rc = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut resp = rc.server_reflection_info(futures::stream::iter(vec![req])).await.unwrap().into_inner();
    let msg = resp.message().await.unwrap().expect("a reflection answer");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer: {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"strata.v1.Strata".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    // v1alpha too, for tools that speak only it (Python's grpcio-reflection).
    use tonic_reflection::pb::v1alpha as alpha;
    let ch = tonic::transport::Endpoint::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
    let mut rc = alpha::server_reflection_client::ServerReflectionClient::new(ch);
    let req = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut resp = rc.server_reflection_info(futures::stream::iter(vec![req])).await.expect("v1alpha reflection").into_inner();
    let msg = resp.message().await.unwrap().expect("a v1alpha reflection answer");
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected v1alpha reflection answer: {msg:?}");
    };
    assert!(list.service.iter().any(|s| s.name == "strata.v1.Strata"), "{:?}", list.service);
}

/// Logs written to a file or a pipe carry no ANSI colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, format!("[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbase_path = {:?}\n", dir.path().join("data"))).unwrap();
    let mut child = std::process::Command::new(strata_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("STRATA_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO"), "the server logged nothing: {log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_live_version_by_id_falls_back_to_the_previous_one() {
    for versioning in [true, false] {
        let s = TestServer::start(&format!("[metadata]\nenable_versioning = {versioning}"));
        let mut c = s.client().await;
        let v1 = put_key(&mut c, "k", b"one").await;
        let v2 = put_key(&mut c, "k", b"two").await;
        c.delete(pb::DeleteRequest { key: "k".into(), version: v2.version.clone(), ..Default::default() })
            .await
            .unwrap_or_else(|e| panic!("versioning={versioning}: {e:?}"));
        if versioning {
            assert_eq!(get_key(&mut c, "k").await.unwrap(), b"one");
            c.delete(pb::DeleteRequest { key: "k".into(), version: v1.version, ..Default::default() }).await.unwrap();
        }
        assert_eq!(get_key(&mut c, "k").await.unwrap_err().code(), Code::NotFound, "versioning={versioning}");
        let st = stats(&mut c).await;
        assert_eq!((st.objects, st.versions, st.logical_bytes), (0, 0, 0), "versioning={versioning}: {st:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_in_memory_metadata_backend_serves() {
    let s = TestServer::start("[metadata]\nbackend = \"memory\"");
    let mut c = s.client().await;
    let big = random_bytes(200_000);
    put_key(&mut c, "small", b"tiny").await;
    put_key(&mut c, "big", &big).await;
    assert_eq!(get_key(&mut c, "small").await.unwrap(), b"tiny");
    assert_eq!(get_key(&mut c, "big").await.unwrap(), big);
    assert_eq!(stats(&mut c).await.objects, 2);
    assert!(!s.data().join("meta").exists(), "no SQLite file with the memory backend");
}
