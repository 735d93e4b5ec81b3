//! What an acknowledgement means: failures on the write path fail the
//! write and clear without a restart, cancelled streams store nothing,
//! batches past a limit are refused before anything is stored, and the
//! database is checked at start.

use std::time::Duration;

use bytes::Bytes;
use strata::api::pb;
use tonic::Code;

use crate::common::*;

fn chunk(data: &[u8]) -> pb::PutRequest {
    pb::PutRequest { part: Some(pb::put_request::Part::Chunk(Bytes::copy_from_slice(data))) }
}

fn head(h: pb::PutHeader) -> pb::PutRequest {
    pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) }
}

/// A put stream that sends `header` and `data` in pieces, then never ends.
fn stalled_put(h: pb::PutHeader, data: Vec<u8>) -> impl futures::Stream<Item = pb::PutRequest> + Send + 'static {
    let mut msgs = vec![head(h)];
    msgs.extend(data.chunks(64 << 10).map(chunk));
    futures::StreamExt::chain(futures::stream::iter(msgs), futures::stream::pending())
}

/// Puts cut off at random offsets (before the first chunk, mid-stream,
/// after the last), by a dropped call or by the deadline the server
/// enforces, never become or replace an object; nor does a PutMany.
#[tokio::test]
async fn cancelled_streams_store_nothing() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let good = random_bytes(4 << 20);
    put_key(&mut c, "k", &good).await;
    for i in 0..24u32 {
        let len = match i % 4 {
            0 => 0,
            1 => 1000,
            2 => good.len(),
            _ => (rand::random::<u32>() as usize) % good.len(),
        };
        let stream = stalled_put(header("k"), random_bytes(len));
        let how = if i % 2 == 0 {
            Cut::Drop(Duration::from_millis(50 + (i as u64 * 7) % 200))
        } else {
            Cut::Deadline(Duration::from_millis(300))
        };
        cut_put(&c, stream, how).await;
    }
    // A PutMany whose stream breaks after its first message.
    let items = (0..10).map(|i| pb::PutManyItem { header: Some(header(&format!("many/{i}"))), data: Bytes::from_static(b"x") });
    let msgs =
        futures::StreamExt::chain(futures::stream::iter(vec![pb::PutManyRequest { items: items.collect() }]), futures::stream::pending());
    let mut req = tonic::Request::new(msgs);
    req.set_timeout(Duration::from_millis(300));
    assert!(c.put_many(req).await.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(versions(&mut c, "k").await.len(), 1, "a cancelled put became a version");
    assert_eq!(get_key(&mut c, "k").await.unwrap(), good);
    let listed = c.list(pb::ListRequest { prefix: "many/".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(listed.objects.is_empty(), "a cancelled PutMany stored {:?}", listed.objects.len());
    assert_eq!(temp_files(&s.data()), 0, "cancelled puts left temp files");
}

/// A raw HTTP/2 client that resets its Put stream (NO_ERROR, which hyper
/// reports to the server as a clean end of the body; CANCEL) or drops its
/// connection, at several offsets, stores nothing.
#[tokio::test]
async fn raw_resets_and_dropped_connections_store_nothing() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let good = random_bytes(1 << 20);
    put_key(&mut c, "k", &good).await;
    for len in [0usize, 1000, 300_000] {
        for end in [RawEnd::Reset(h2::Reason::NO_ERROR), RawEnd::Reset(h2::Reason::CANCEL), RawEnd::Drop] {
            raw_put_cut(s.addr(), header("k"), &random_bytes(len), end).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(versions(&mut c, "k").await.len(), 1, "a reset put became a version");
    assert_eq!(get_key(&mut c, "k").await.unwrap(), good);
    assert_eq!(temp_files(&s.data()), 0, "reset puts left temp files");
    // The control: the same raw client, ending cleanly, stores.
    raw_put_cut(s.addr(), header("k"), b"clean", RawEnd::Clean).await;
    assert_eq!(get_key(&mut c, "k").await.unwrap(), b"clean");
}

/// A put declared with a size that its stream does not reach is refused,
/// even when the stream itself ends cleanly.
#[tokio::test]
async fn a_short_stream_with_a_declared_size_is_refused() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let h = pb::PutHeader { size: Some(4000), ..header("short") };
    let err = put(&mut c, h, &[7u8; 1000]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let h = pb::PutHeader { size: Some(1), ..header("long") };
    let err = put(&mut c, h, b"abc").await.unwrap_err();
    assert!(err.message().contains("expected 1, got at least 3 bytes"), "{}", err.message());
    assert_eq!(get_key(&mut c, "short").await.unwrap_err().code(), Code::NotFound);
}

/// Each step of the write path failing (data, fsync, rename, directory
/// sync, the metadata commit) fails the put with a clear code, leaves
/// nothing visible, and the next put after the fault clears succeeds on the
/// same running server.
#[tokio::test]
async fn write_path_failures_fail_the_write_and_clear_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let points = dir.path().join("failpoints");
    std::fs::write(&points, "").unwrap();
    let s = TestServer::start_with_env("127.0.0.1", "", vec![("STRATA_FAILPOINTS_FILE".into(), points.display().to_string())]);
    let mut c = s.client().await;
    let mut stored = Vec::new();
    let cases = [
        ("store.write=return(enospc)", Code::ResourceExhausted),
        ("store.write=return", Code::Internal),
        ("store.sync=return(enospc)", Code::ResourceExhausted),
        ("store.publish=return", Code::Internal),
        ("store.dirsync=return", Code::Internal),
        ("meta.commit=return(full)", Code::ResourceExhausted),
        ("meta.commit=return", Code::Internal),
    ];
    for (n, (point, code)) in cases.iter().enumerate() {
        std::fs::write(&points, point).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let key = format!("case{n}");
        // New bytes each time (a known blob is not published again), and
        // file-backed: past the inline limit.
        let big = random_bytes(300 << 10);
        let err = put(&mut c, header(&key), &big).await.expect_err(point);
        assert_eq!(err.code(), *code, "{point}: {err:?}");
        if *code == Code::ResourceExhausted {
            assert!(err.message().contains("no space left"), "{point}: {}", err.message());
        }
        // A PutMany fails every item, and stores none.
        if point.starts_with("meta") {
            let items =
                (0..5).map(|i| pb::PutManyItem { header: Some(header(&format!("{key}/m{i}"))), data: Bytes::from_static(b"y") }).collect();
            let results = put_many(&mut c, items).await;
            assert!(results.iter().all(|r| r.code == *code as i32), "{point}: {results:?}");
        }
        assert_eq!(get_key(&mut c, &key).await.unwrap_err().code(), Code::NotFound, "{point}: half-visible");
        std::fs::write(&points, "").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        put_key(&mut c, &key, &big).await;
        assert_eq!(get_key(&mut c, &key).await.unwrap(), big, "{point}: the next put after the fault");
        put_key(&mut c, &format!("{key}/small"), b"small").await;
        assert_eq!(get_key(&mut c, &format!("{key}/small")).await.unwrap(), b"small");
        stored.push(big);
    }
    // Nothing lost across a restart either.
    let mut s = s;
    s.kill9();
    s.boot();
    let mut c = s.client().await;
    for (n, big) in stored.iter().enumerate() {
        assert_eq!(&get_key(&mut c, &format!("case{n}")).await.unwrap(), big);
    }
}

/// Attributes past the cap are refused; a PutMany past its item limit is
/// refused before anything is stored.
#[tokio::test]
async fn limits_are_refused_before_anything_is_stored() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let mut h = header("fat");
    h.attributes.insert("blob".into(), pb::Value { kind: Some(pb::value::Kind::String("x".repeat(10 << 20))) });
    let err = put(&mut c, h, b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("server.max_attribute_bytes"), "{}", err.message());

    let item = |i: usize| pb::PutManyItem { header: Some(header(&format!("b/{i}"))), data: Bytes::from_static(b"z") };
    let msgs =
        vec![pb::PutManyRequest { items: (0..6000).map(item).collect() }, pb::PutManyRequest { items: (6000..12000).map(item).collect() }];
    let err = c.put_many(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("nothing was stored"), "{}", err.message());
    let listed = c.list(pb::ListRequest { prefix: "b/".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(listed.objects.is_empty());
    // At the limit, every item is stored and the reply fits.
    let msgs =
        vec![pb::PutManyRequest { items: (0..5000).map(item).collect() }, pb::PutManyRequest { items: (5000..10000).map(item).collect() }];
    let results = c.put_many(futures::stream::iter(msgs)).await.unwrap().into_inner().results;
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(|r| r.code == 0 && r.object.is_some()));
}

/// List pages end before they would pass the message limit, with a cursor.
#[tokio::test]
async fn pages_are_bounded_by_bytes() {
    let s = TestServer::start("[server]\nmax_message_size = \"256KiB\"\nmax_attribute_bytes = \"8KiB\"");
    let mut c = s.client().await;
    for i in 0..100 {
        let mut h = header(&format!("p/{i:03}"));
        h.attributes.insert("pad".into(), pb::Value { kind: Some(pb::value::Kind::String("p".repeat(7000))) });
        put(&mut c, h, b"d").await.unwrap();
    }
    let mut token = String::new();
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let r = c
            .list(pb::ListRequest { prefix: "p/".into(), page_token: token.clone(), ..Default::default() })
            .await
            .expect("a page within the limit")
            .into_inner();
        seen += r.objects.len();
        pages += 1;
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, 100);
    assert!(pages > 1, "one page of 100 × 7 KB would pass 256 KiB");
    let r = c.search(pb::SearchRequest { limit: 1000, ..Default::default() }).await.expect("search page").into_inner();
    assert!(!r.objects.is_empty() && !r.next_cursor.is_empty());
}

/// A clean shutdown leaves no WAL behind, and a damaged database is
/// refused at start with a message that says what to do.
#[tokio::test]
async fn clean_shutdown_checkpoints_and_damage_is_refused_at_start() {
    let mut s = TestServer::start("");
    let mut c = s.client().await;
    for i in 0..200 {
        put_key(&mut c, &format!("d/{i}"), &random_bytes(100)).await;
    }
    s.stop();
    let db = s.data().join("meta/strata.db");
    let wal = s.data().join("meta/strata.db-wal");
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "the WAL outlived a clean shutdown");
    // Damage a b-tree page past the header.
    let len = std::fs::metadata(&db).unwrap().len();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.write_all(&[0xA5; 4096]).unwrap();
        f.sync_all().unwrap();
    }
    let out = std::process::Command::new(strata_bin()).args(["serve", "--config"]).arg(&s.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged database was served");
    assert!(err.contains("damaged") && err.contains("strata.db"), "{err}");
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// 300 uploads that each send 1 MiB and then stall hold no more memory
/// than the upload budget plus what HTTP/2 lets each connection have in
/// flight; the idle timeout ends them, none is stored, and a healthy put
/// made meanwhile waits for the budget and succeeds.
#[tokio::test]
async fn stalled_uploads_stay_within_the_budget() {
    const BUDGET: u64 = 64 << 20;
    const CONNECTIONS: u64 = 4;
    const STALLS: usize = 300;
    let s = TestServer::start("[server]\nupload_buffer = \"64MiB\"\nstream_idle_timeout = \"1s\"");
    let pid = s.child.as_ref().unwrap().id();
    let mut c = s.client().await;
    put_key(&mut c, "warm", &random_bytes(2 << 20)).await;
    let before = rss_kib(pid, "VmRSS:");
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(s.client().await);
    }
    let mut calls = Vec::new();
    for i in 0..STALLS {
        let mut c = clients[i % CONNECTIONS as usize].clone();
        let stream = stalled_put(header(&format!("stall/{i}")), random_bytes(1 << 20));
        calls.push(tokio::spawn(async move { c.put(stream).await }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A healthy client, meanwhile: it waits for the budget, it is not failed.
    let healthy = {
        let mut c = s.client().await;
        tokio::spawn(async move { put(&mut c, header("healthy"), &random_bytes(3 << 20)).await })
    };
    let mut codes = std::collections::BTreeMap::new();
    for call in calls {
        let code = match call.await.unwrap() {
            Ok(_) => panic!("a stalled upload was stored"),
            Err(e) => e.code(),
        };
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    let peak = rss_kib(pid, "VmHWM:");
    healthy.await.unwrap().expect("a healthy put during the stalls");
    let grown = peak.saturating_sub(before) << 10;
    // What a connection may have in flight is its HTTP/2 window (8 MiB).
    let allowed = BUDGET + CONNECTIONS * (8 << 20) + (64 << 20);
    eprintln!(
        "RSS {} MiB before, peak {} MiB; grown {} MiB, allowed {} MiB; stalls ended with {codes:?}",
        before >> 10,
        peak >> 10,
        grown >> 20,
        allowed >> 20
    );
    assert!(grown <= allowed, "stalled uploads took {} MiB (allowed {} MiB)", grown >> 20, allowed >> 20);
    assert_eq!(codes.get("DeadlineExceeded").copied().unwrap_or(0), STALLS, "{codes:?}");
    let listed = c.list(pb::ListRequest { prefix: "stall/".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(listed.objects.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(temp_files(&s.data()), 0, "stalled uploads left temp files");
}

/// Past `server.max_connections` the server accepts no more connections
/// until one closes: a new client waits, it is not refused.
#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    let s = TestServer::start("[server]\nmax_connections = 2\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.expect("a connection under the cap");
        held.push((client, tokio::spawn(conn)));
    }
    let call = |url: String| async move {
        let ch = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await?;
        let mut c = strata::api::pb::strata_client::StrataClient::new(ch);
        c.stats(pb::StatsRequest {}).await.map(|_| ()).map_err(anyhow::Error::from)
    };
    let url = format!("http://{}", s.addr());
    let third = tokio::spawn(call(url.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!third.is_finished(), "a third connection was served past a cap of two");
    // One closes: the waiting client is served.
    let (client, conn) = held.pop().unwrap();
    drop(client);
    conn.abort();
    tokio::time::timeout(Duration::from_secs(10), third).await.expect("served once a connection closed").unwrap().unwrap();
}

/// Sockets that connect and never speak do not hold the connection cap:
/// the server closes them after `connections::FIRST_BYTES`, and a waiting
/// client is served.
#[tokio::test]
async fn silent_sockets_are_closed_and_free_the_cap() {
    use tokio::io::AsyncReadExt as _;
    let s = TestServer::start("[server]\nmax_connections = 2\n");
    let started = std::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(s.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = tokio::time::timeout(Duration::from_secs(30), s.client()).await.expect("served once the silent sockets were closed");
    c.stats(pb::StatsRequest {}).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= strata::connections::FIRST_BYTES - Duration::from_secs(1), "served after {waited:?}: the cap did not hold");
    // The server's own SETTINGS may come first; then the socket is closed.
    for mut sock in silent {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the server did not close a silent socket");
    }
}
