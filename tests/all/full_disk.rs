//! A real full disk: the store on a small tmpfs, filled by puts of 4 MB,
//! 100 KB and 2 KB with large attributes. Every acknowledged put reads
//! back, every refusal is RESOURCE_EXHAUSTED, deletes work on the full
//! disk, and puts are stored again once space is freed, without a restart.

use std::time::Duration;

use strata::api::pb;
use tonic::Code;

use crate::common::*;

const SIZES: [usize; 3] = [4_000_000, 100_000, 2_000];

fn padded(key: &str) -> pb::PutHeader {
    let mut h = header(key);
    h.attributes.insert("pad".into(), pb::Value { kind: Some(pb::value::Kind::String("a".repeat(6000))) });
    h
}

async fn delete(c: &mut Client, key: &str, version: &str) -> Result<(), tonic::Status> {
    c.delete(pb::DeleteRequest { key: key.into(), version: version.into(), ..Default::default() }).await.map(|_| ())
}

async fn space_health(s: &TestServer) -> i32 {
    let ch = tonic::transport::Endpoint::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    h.check(tonic_health::pb::HealthCheckRequest { service: "strata.space".into() }).await.unwrap().into_inner().status
}

/// Waits until the space watcher (every 2 s) reports `status`.
async fn wait_space_health(s: &TestServer, status: tonic_health::ServingStatus) {
    for _ in 0..50 {
        if space_health(s).await == status as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("strata.space health never became {status:?}");
}

#[tokio::test]
async fn a_full_disk_refuses_puts_keeps_every_acknowledged_one_and_recovers() {
    let mut s = TestServer::prepare(
        "127.0.0.1",
        "[storage]\nmin_free_space = \"4MiB\"\ngc_interval = \"1s\"\ncleanup_age = \"0s\"\nmax_cache_size = \"0\"",
        Vec::new(),
    );
    let Some(_tmpfs) = mount_tmpfs(&s.data(), "64m") else { return };
    s.boot();
    let mut c = s.client().await;
    wait_space_health(&s, tonic_health::ServingStatus::Serving).await;

    // Four writers fill the disk until every size is refused.
    let writers = (0..4).map(|w| {
        let mut c = c.clone();
        async move {
            let (mut acked, mut refused) = (Vec::new(), [0u32; 3]);
            let mut full_rounds = 0;
            for n in 0.. {
                let mut all_refused = true;
                for (i, size) in SIZES.iter().enumerate() {
                    let key = format!("w{w}/{n}/{size}");
                    let data = random_bytes(*size);
                    match put(&mut c, padded(&key), &data).await {
                        Ok(o) => {
                            all_refused = false;
                            acked.push((key, o.version, sha256_hex(&data)));
                        }
                        Err(e) => {
                            assert_eq!(e.code(), Code::ResourceExhausted, "a refusal on a full disk: {e:?}");
                            refused[i] += 1;
                        }
                    }
                }
                full_rounds = if all_refused { full_rounds + 1 } else { 0 };
                if full_rounds == 5 {
                    break;
                }
            }
            (acked, refused)
        }
    });
    let mut acked = Vec::new();
    let mut refused = [0u32; 3];
    for (a, r) in futures::future::join_all(writers).await {
        acked.extend(a);
        (0..3).for_each(|i| refused[i] += r[i]);
    }
    let by_size = |size: usize| acked.iter().filter(|(k, _, _)| k.ends_with(&format!("/{size}"))).count();
    eprintln!("acknowledged {} puts ({} of 4 MB), refused {refused:?}", acked.len(), by_size(SIZES[0]));
    assert!(by_size(SIZES[0]) > 0 && by_size(SIZES[2]) > 0, "the disk filled before anything was stored");
    assert!(refused.iter().all(|&n| n > 0), "every size was refused in the end: {refused:?}");
    let low = stats(&mut c).await;
    assert!(low.low_space && low.free_bytes < 8 << 20, "free {} not reported low", low.free_bytes);
    wait_space_health(&s, tonic_health::ServingStatus::NotServing).await;
    for (key, _, sha) in &acked {
        let got = get_key(&mut c, key).await.unwrap_or_else(|e| panic!("acknowledged {key} lost: {e:?}"));
        assert_eq!(&sha256_hex(&got), sha, "{key}");
    }

    // Deletes commit on the full disk: a marker, and versions removed for good.
    delete(&mut c, &acked.last().unwrap().0, "").await.expect("a delete on a full disk");
    let big: Vec<_> = acked.iter().filter(|(k, _, _)| k.ends_with(&format!("/{}", SIZES[0]))).cloned().collect();
    for (key, version, _) in &big {
        delete(&mut c, key, version).await.expect("removing a version on a full disk");
        assert_eq!(get_key(&mut c, key).await.unwrap_err().code(), Code::NotFound, "{key} still served");
    }
    // GC frees the bytes; puts are stored again without a restart.
    let data = random_bytes(SIZES[0]);
    let mut stored = None;
    for _ in 0..100 {
        match put(&mut c, padded("after/free"), &data).await {
            Ok(o) => {
                stored = Some(o);
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stored.is_some(), "puts still refused after 4 MB objects were removed and GC ran");
    assert_eq!(get_key(&mut c, "after/free").await.unwrap(), data);
    wait_space_health(&s, tonic_health::ServingStatus::Serving).await;

    // Past the reserve: a file eats every byte left, so SQLite itself
    // runs out. Refusals stay RESOURCE_EXHAUSTED, a delete that fails
    // leaves the object in place, and after the file goes all is well.
    let filler = s.data().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let mb = vec![7u8; 1 << 20];
        while f.write_all(&mb).is_ok() {}
        let small = vec![7u8; 4096];
        while f.write_all(&small).is_ok() {}
    }
    let err = put(&mut c, padded("past/reserve"), b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains(&s.data().display().to_string()) || err.message().contains("space"), "{}", err.message());
    let marked = acked.last().unwrap().0.clone(); // deleted above
    let small: Vec<_> = acked.iter().filter(|(k, _, _)| k.ends_with(&format!("/{}", SIZES[2])) && *k != marked).take(20).cloned().collect();
    let mut deleted = Vec::new();
    for (key, _, _) in &small {
        match delete(&mut c, key, "").await {
            Ok(()) => deleted.push(key.clone()),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "a delete on a disk with no byte left: {e:?}");
                get_key(&mut c, key).await.expect("a failed delete removed the object");
            }
        }
    }
    eprintln!("with no byte free: {} of {} deletes committed", deleted.len(), small.len());
    std::fs::remove_file(&filler).unwrap();
    for (key, _, _) in &small {
        if !deleted.contains(key) {
            delete(&mut c, key, "").await.expect("a delete after space came back");
        }
        assert_eq!(get_key(&mut c, key).await.unwrap_err().code(), Code::NotFound, "{key}: a delete did nothing");
    }
    for (i, size) in SIZES.iter().enumerate() {
        let data = random_bytes(*size);
        put(&mut c, padded(&format!("again/{i}")), &data).await.expect("a put after space came back");
        assert_eq!(get_key(&mut c, &format!("again/{i}")).await.unwrap(), data);
    }
    // Everything acknowledged and not deleted survives a restart too.
    s.stop();
    s.boot();
    let mut c = s.client().await;
    for (key, _, sha) in acked.iter().filter(|(k, _, _)| !k.ends_with(&format!("/{}", SIZES[0])) && !deleted.contains(k)) {
        if small.iter().any(|(k, _, _)| k == key) || key == &acked.last().unwrap().0 {
            continue;
        }
        let got = get_key(&mut c, key).await.unwrap_or_else(|e| panic!("acknowledged {key} lost after restart: {e:?}"));
        assert_eq!(&sha256_hex(&got), sha, "{key}");
    }
}
