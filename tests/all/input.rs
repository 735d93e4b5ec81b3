//! Bad input gets the right status and a message that says what to fix.

use crate::common::*;
use strata::api::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_names_are_refused() {
    let s = TestServer::start("[server]\nmax_key_length = 100");
    let mut c = s.client().await;
    for (key, hint) in [("", "empty"), (&"k".repeat(101) as &str, "limit is 100"), ("a/../b", ".."), ("a\0b", "control character")] {
        let err = put(&mut c, header(key), b"x").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key:?}");
        assert!(err.message().contains(hint), "{key:?}: {}", err.message());
        let err = get_key(&mut c, key).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "get {key:?}");
    }
    // Content types are echoed in every listing: short, printable.
    for (ct, hint) in [(&"t".repeat(257) as &str, "limit is 256"), ("text/plain\r\nX-Evil: 1", "printable ASCII")] {
        let h = pb::PutHeader { content_type: ct.into(), ..header("k") };
        let err = put(&mut c, h, b"x").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{ct:?}");
        assert!(err.message().contains(hint), "{ct:?}: {}", err.message());
    }
    let fine = pb::PutHeader { content_type: "text/plain; charset=utf-8".into(), ..header("typed") };
    put(&mut c, fine, b"x").await.expect("a content type with a parameter");
    let bad_bucket = pb::PutHeader { bucket: "Not_A_Bucket".into(), key: "k".into(), ..Default::default() };
    assert_eq!(put(&mut c, bad_bucket, b"x").await.unwrap_err().code(), Code::InvalidArgument);
    let no_bucket = pb::PutHeader { bucket: "nowhere".into(), key: "k".into(), ..Default::default() };
    let err = put(&mut c, no_bucket, b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("nowhere"));
    assert!(blob_files(&s.data()).is_empty(), "refused puts leave no blob");
    let err = c.list(pb::ListRequest { bucket: "nowhere".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c.list(pb::ListRequest { page_token: "zz".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_put_protocol_is_refused() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    // Chunk before header.
    let msgs = vec![pb::PutRequest { part: Some(pb::put_request::Part::Chunk(vec![1u8].into())) }];
    let err = c.put(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("header"));
    // Two headers.
    let msgs = vec![
        pb::PutRequest { part: Some(pb::put_request::Part::Header(header("k"))) },
        pb::PutRequest { part: Some(pb::put_request::Part::Header(header("k"))) },
    ];
    assert_eq!(c.put(futures::stream::iter(msgs)).await.unwrap_err().code(), Code::InvalidArgument);
    // A promised size that is not kept.
    let h = pb::PutHeader { key: "k".into(), size: Some(10), ..Default::default() };
    let err = put(&mut c, h, b"12345").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("size"), "{}", err.message());
    // A digest that does not match.
    let h = pb::PutHeader { key: "k".into(), expected_digest: sha256_hex(b"other"), ..Default::default() };
    assert_eq!(put(&mut c, h, b"12345").await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(get_key(&mut c, "k").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(temp_files(&s.data()), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_are_refused_and_the_server_lives_on() {
    let s = TestServer::start("[server]\nmax_message_size = \"256KiB\"");
    let mut c = s.client().await;
    let msgs = vec![
        pb::PutRequest { part: Some(pb::put_request::Part::Header(header("big"))) },
        pb::PutRequest { part: Some(pb::put_request::Part::Chunk(random_bytes(1 << 20).into())) },
    ];
    let err = c.put(futures::stream::iter(msgs)).await.unwrap_err();
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted | Code::Aborted), "{err:?}");
    // Large objects still go through in small chunks, and come back split to fit.
    let data = random_bytes(1 << 20);
    let h = header("ok");
    let mut msgs = vec![pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) }];
    for part in data.chunks(100 << 10) {
        msgs.push(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(part.to_vec().into())) });
    }
    c.put(futures::stream::iter(msgs)).await.unwrap();
    assert_eq!(get_key(&mut c, "ok").await.unwrap(), data);
}

/// A Stat request whose key field carries raw bytes: what a client in a
/// language without UTF-8 checks could send.
#[derive(Clone, PartialEq, prost::Message)]
struct RawStat {
    #[prost(bytes = "vec", tag = "2")]
    key: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_is_not_utf8_is_invalid_argument() {
    let s = TestServer::start("");
    let ch = tonic::transport::Endpoint::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/strata.v1.Strata/Stat");
    let codec = tonic_prost::ProstCodec::<RawStat, pb::ObjectInfo>::default();
    let err = grpc.unary(tonic::Request::new(RawStat { key: vec![b'a', 0xff, 0xfe] }), path, codec).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("UTF-8"), "{}", err.message());
    // And the server carries on.
    let mut c = s.client().await;
    put_key(&mut c, "after", b"fine").await;
}
