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
    let res = c
        .put_many(futures::stream::iter(vec![pb::PutManyRequest { items }]))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(res.len(), 201);
    assert!(res[..200].iter().all(|r| r.error.is_empty() && r.object.is_some()));
    assert_eq!(res[200].code, Code::InvalidArgument as i32);
    assert_eq!(get_key(&mut c, "b/42").await.unwrap(), b"item 42");

    let mut keys: Vec<String> = (0..100).map(|i| format!("b/{i}")).collect();
    keys.push("b/missing".into());
    let res = c
        .delete_many(pb::DeleteManyRequest { keys, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(res.len(), 101);
    assert!(res[..100].iter().all(|r| r.error.is_empty()));
    assert_eq!(res[100].code, Code::NotFound as i32);
    let st = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
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
