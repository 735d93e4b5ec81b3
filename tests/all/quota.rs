//! `storage.max_size`: a write that would pass it is refused and leaves nothing.

use crate::common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn writes_past_the_quota_are_refused_cleanly() {
    let s = TestServer::start("[storage]\nmax_size = \"3MiB\"");
    let mut c = s.client().await;
    put_key(&mut c, "fits", &random_bytes(2 << 20)).await;
    let err = put(&mut c, header("too-big"), &random_bytes(2 << 20)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("quota"), "{}", err.message());
    assert_eq!(get_key(&mut c, "too-big").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(blob_files(&s.data()).len(), 1, "nothing left behind");
    assert_eq!(temp_files(&s.data()), 0);
    // Small writes still fit, and the quota survives a restart.
    put_key(&mut c, "small", &random_bytes(1000)).await;
    let st = stats(&mut c).await;
    assert_eq!(st.max_size, 3 << 20);
    assert!(st.physical_bytes <= 3 << 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quota_counts_existing_data_after_restart() {
    let mut s = TestServer::start("[storage]\nmax_size = \"3MiB\"");
    let mut c = s.client().await;
    put_key(&mut c, "a", &random_bytes(2 << 20)).await;
    drop(c);
    s.kill9();
    s.boot();
    let mut c = s.client().await;
    let err = put(&mut c, header("b"), &random_bytes(2 << 20)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
}
