//! PutMany and DeleteMany: one call, a result per item.

use crate::common::*;
use strata::api::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn many_puts_and_deletes_in_one_call() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let mut items = Vec::new();
    for i in 0..200 {
        items.push(pb::PutManyItem { header: Some(header(&format!("b/{i}"))), data: format!("item {i}").into_bytes().into() });
    }
    items.push(pb::PutManyItem { header: Some(header("bad/../key")), data: vec![].into() });
    let res = put_many(&mut c, items).await;
    assert_eq!(res.len(), 201);
    assert!(res[..200].iter().all(|r| r.error.is_empty() && r.object.is_some()));
    assert_eq!(res[200].code, Code::InvalidArgument as i32);
    assert_eq!(get_key(&mut c, "b/42").await.unwrap(), b"item 42");

    let mut keys: Vec<String> = (0..100).map(|i| format!("b/{i}")).collect();
    keys.push("b/missing".into());
    let res = c.delete_many(pb::DeleteManyRequest { keys, ..Default::default() }).await.unwrap().into_inner().results;
    assert_eq!(res.len(), 101);
    assert!(res[..100].iter().all(|r| r.error.is_empty()));
    assert_eq!(res[100].code, Code::NotFound as i32);
    let st = stats(&mut c).await;
    assert_eq!(st.objects, 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_above_the_limit_are_refused() {
    let s = TestServer::start("[server]\nmax_batch_items = 10");
    let mut c = s.client().await;
    let keys: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
    let err = c.delete_many(pb::DeleteManyRequest { keys, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("limit is 10"));
}

fn item(key: &str, data: &[u8]) -> pb::PutManyItem {
    pb::PutManyItem { header: Some(header(key)), data: data.to_vec().into() }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_key_written_twice_in_a_batch_keeps_the_order() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let mut absent = item("k", b"never");
    absent.header.as_mut().unwrap().if_absent = true;
    let items = vec![item("k", b"first"), item("k", b"second"), absent, item("k", b"third")];
    let res = put_many(&mut c, items).await;
    assert_eq!(res[2].code, Code::FailedPrecondition as i32, "if_absent sees the batch's own writes");
    assert_eq!(get_key(&mut c, "k").await.unwrap(), b"third");
    let vs = versions(&mut c, "k").await;
    let sizes: Vec<u64> = vs.iter().map(|v| v.size).collect();
    assert_eq!(sizes, vec![5, 6, 5], "newest first: third, second, first");
    assert!(vs[0].latest && !vs[1].latest);
}

#[tokio::test(flavor = "multi_thread")]
async fn unversioned_batches_keep_only_the_last_write() {
    let s = TestServer::start("[metadata]\nenable_versioning = false\n[storage]\ncleanup_age = \"0s\"\ngc_interval = \"1s\"");
    let mut c = s.client().await;
    put_key(&mut c, "k", b"before").await;
    let items = vec![item("k", b"first"), item("k", b"second"), item("other", b"x")];
    put_many(&mut c, items).await;
    assert_eq!(get_key(&mut c, "k").await.unwrap(), b"second");
    let vs = versions(&mut c, "k").await;
    assert_eq!(vs.len(), 1);
    let mut st = stats(&mut c).await;
    for _ in 0..50 {
        if st.blobs == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        st = stats(&mut c).await;
    }
    assert_eq!((st.objects, st.versions, st.blobs), (2, 2, 2), "superseded blobs are collected: {st:?}");
    assert_eq!(st.logical_bytes, 7);
}
