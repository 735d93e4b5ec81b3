//! Compression and encryption at rest.

use crate::common::*;
use strata::api::pb;
use tonic::Code;

const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

#[tokio::test(flavor = "multi_thread")]
async fn zstd_compresses_and_round_trips() {
    let s = TestServer::start("[storage]\ncompression = \"zstd\"");
    let mut c = s.client().await;
    let text: Vec<u8> = b"strata compresses repetitive text well. ".repeat(100_000);
    let info = put_key(&mut c, "text", &text).await;
    assert_eq!(info.digest, sha256_hex(&text), "the digest is of the plaintext");
    assert_eq!(get_key(&mut c, "text").await.unwrap(), text);
    let req = pb::GetRequest { key: "text".into(), offset: 2_000_000, length: 5000, ..Default::default() };
    assert_eq!(get(&mut c, req).await.unwrap().1, &text[2_000_000..2_005_000]);
    let st = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(st.physical_bytes * 10 < st.logical_bytes, "{st:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn encryption_round_trips_and_a_wrong_key_says_so() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key.hex");
    std::fs::write(&key_file, KEY_A).unwrap();
    let mut s = TestServer::start(&format!("[storage.encryption]\nkey_file = {key_file:?}\n"));

    let mut c = s.client().await;
    let data = random_bytes(3 << 20);
    let info = put_key(&mut c, "secret", &data).await;
    assert_eq!(info.digest, sha256_hex(&data));
    assert_eq!(get_key(&mut c, "secret").await.unwrap(), data);
    let req = pb::GetRequest { key: "secret".into(), offset: (1 << 20) - 10, length: 20, ..Default::default() };
    assert_eq!(get(&mut c, req).await.unwrap().1, &data[(1 << 20) - 10..(1 << 20) + 10]);
    // The plaintext is not on disk.
    let file = std::fs::read(&blob_files(&s.data())[0]).unwrap();
    assert!(!file.windows(64).any(|w| w == &data[1000..1064]), "blob file holds ciphertext");

    drop(c);
    s.kill9();
    std::fs::write(&key_file, KEY_B).unwrap();
    s.boot();
    let mut c = s.client().await;
    let err = get_key(&mut c, "secret").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("encrypted with key"), "{}", err.message());
}
