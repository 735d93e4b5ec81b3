//! A flipped byte is caught on read, reported by the CLI and by scrub.

use std::time::Duration;

use crate::common::*;
use strata::api::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_blob_is_never_served() {
    // The blob cache would serve a copy verified before the damage; turn it off.
    let s = TestServer::start("[storage]\nmax_cache_size = 0");
    let mut c = s.client().await;
    let data = random_bytes(2 << 20);
    put_key(&mut c, "victim", &data).await;
    let files = blob_files(&s.data());
    assert_eq!(files.len(), 1);
    flip_a_byte(&files[0], 1000);

    let err = get_key(&mut c, "victim").await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");

    let out = s.cli(&["get", "victim", "-o", s.dir.path().join("out").to_str().unwrap()]);
    assert!(!out.status.success(), "the CLI fails on a corrupt object");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DataLoss"), "{out:?}");
    assert!(!s.dir.path().join("out").exists(), "a failed get leaves no output file");

    let mut st = stats(&mut c).await;
    for _ in 0..50 {
        if st.corrupt_blobs > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = stats(&mut c).await;
    }
    assert_eq!(st.corrupt_blobs, 1, "the blob is reported");
    assert!(s.data().join("quarantine").read_dir().unwrap().count() >= 1, "and quarantined");

    // Putting the same content again heals it.
    put_key(&mut c, "healer", &data).await;
    assert_eq!(get_key(&mut c, "victim").await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ranged_read_of_a_corrupt_frame_fails() {
    let s = TestServer::start("[storage]\nmax_cache_size = 0");
    let mut c = s.client().await;
    let data = random_bytes(3 << 20);
    put_key(&mut c, "v", &data).await;
    let f = &blob_files(&s.data())[0];
    flip_a_byte(f, 64 + 8 + (1 << 20) + 8 + 100); // inside the second frame
    let first = pb::GetRequest { key: "v".into(), offset: 0, length: 1000, ..Default::default() };
    assert_eq!(get(&mut c, first).await.unwrap().1, &data[..1000], "an intact frame still reads");
    let second = pb::GetRequest { key: "v".into(), offset: (1 << 20) + 50, length: 100, ..Default::default() };
    assert_eq!(get(&mut c, second).await.unwrap_err().code(), Code::DataLoss);
}

#[tokio::test(flavor = "multi_thread")]
async fn scrub_finds_corruption_nobody_read() {
    let s = TestServer::start("[storage]\nscrub_interval = \"1s\"\nmax_cache_size = 0");
    let mut c = s.client().await;
    put_key(&mut c, "quiet", &random_bytes(100_000)).await;
    put_key(&mut c, "fine", &random_bytes(100_000)).await;
    let info = c.stat(pb::StatRequest { key: "quiet".into(), ..Default::default() }).await.unwrap().into_inner();
    let victim = blob_files(&s.data()).into_iter().find(|p| p.ends_with(&info.digest)).unwrap();
    flip_a_byte(&victim, 200);
    let mut corrupt = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        corrupt = stats(&mut c).await.corrupt_blobs;
        if corrupt > 0 {
            break;
        }
    }
    assert_eq!(corrupt, 1, "scrub reported exactly the damaged blob");
    assert_eq!(get_key(&mut c, "quiet").await.unwrap_err().code(), Code::DataLoss);
    assert!(get_key(&mut c, "fine").await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_blob_cache_never_keeps_a_failed_read() {
    // Default config: the small-blob cache is on.
    let s = TestServer::start("");
    let mut c = s.client().await;
    let data = random_bytes(100_000);
    put_key(&mut c, "cached", &data).await;
    flip_a_byte(&blob_files(&s.data())[0], 500);
    for attempt in 0..3 {
        let err = get_key(&mut c, "cached").await.unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "attempt {attempt}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_put_does_not_stop_a_later_one_from_healing() {
    let s = TestServer::start("[storage]\nmax_cache_size = 0");
    let mut c = s.client().await;
    let data = random_bytes(100_000);
    put_key(&mut c, "a", &data).await;
    flip_a_byte(&blob_files(&s.data())[0], 500);
    assert_eq!(get_key(&mut c, "a").await.unwrap_err().code(), Code::DataLoss);
    for _ in 0..50 {
        if stats(&mut c).await.corrupt_blobs > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first item carrying the content is refused; the second must heal the blob.
    let mut refused = pb::PutManyItem { header: Some(header("a")), data: data.clone().into() };
    refused.header.as_mut().unwrap().if_absent = true;
    let ok = pb::PutManyItem { header: Some(header("b")), data: data.clone().into() };
    let res = put_many(&mut c, vec![refused, ok]).await;
    assert_eq!(res[0].code, Code::FailedPrecondition as i32);
    assert!(res[1].error.is_empty(), "{:?}", res[1]);
    assert_eq!(get_key(&mut c, "b").await.unwrap(), data);
    assert_eq!(get_key(&mut c, "a").await.unwrap(), data, "same content, healed for every key");
}

/// A small blob lives inline in SQLite; damage there is caught like damage
/// in a file, and a put of the same bytes heals it (the commit batch, not a
/// check before it, decides that the row is replaced).
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_inline_blob_is_caught_and_healed() {
    let s = TestServer::start("[storage]\nmax_cache_size = 0");
    let mut c = s.client().await;
    let data = random_bytes(4096);
    put_key(&mut c, "small", &data).await;
    assert!(blob_files(&s.data()).is_empty(), "a 4 KiB blob is inline");
    let db = s.data().join("meta/strata.db");
    let flip = "import sqlite3,sys\n\
        c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA busy_timeout=10000')\n\
        (d,b)=c.execute('SELECT digest, data FROM blob_data').fetchone(); b=bytearray(b); b[len(b)//2]^=1\n\
        c.execute('UPDATE blob_data SET data=? WHERE digest=?',(bytes(b),d)); c.commit()";
    let out = std::process::Command::new("python3").args(["-c", flip, db.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(get_key(&mut c, "small").await.unwrap_err().code(), Code::DataLoss);
    for _ in 0..50 {
        if stats(&mut c).await.corrupt_blobs > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats(&mut c).await.corrupt_blobs, 1, "the damaged row is reported");
    put_key(&mut c, "again", &data).await;
    assert_eq!(get_key(&mut c, "small").await.unwrap(), data, "healed by the second put");
    assert_eq!(stats(&mut c).await.corrupt_blobs, 0);
}
