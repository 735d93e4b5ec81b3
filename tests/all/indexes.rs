//! Search indexes through the real server: each built-in index type gives
//! the answers a scan gives, backfill and drop from the CLI, lazy mode's
//! exact answers while it lags, indexes surviving a crash, and bad requests.

use std::time::{Duration, Instant};

use serde_json::json;
use strata::api::pb;
use tonic::Code;

use crate::common::*;
use crate::search::{cond, docs, fixture, put_with};

fn all(filters: Vec<pb::Filter>) -> pb::Filter {
    pb::Filter { kind: Some(pb::filter::Kind::All(pb::FilterList { filters })) }
}

fn any(filters: Vec<pb::Filter>) -> pb::Filter {
    pb::Filter { kind: Some(pb::filter::Kind::Any(pb::FilterList { filters })) }
}

async fn create(c: &mut Client, name: &str, fields: &[&str], kind: &str) -> Result<pb::IndexInfo, tonic::Status> {
    let req = pb::CreateIndexRequest {
        name: name.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        r#type: kind.into(),
        ..Default::default()
    };
    c.create_index(req).await.map(|r| r.into_inner())
}

async fn indexes(c: &mut Client) -> Vec<pb::IndexInfo> {
    c.list_indexes(pb::ListIndexesRequest::default()).await.unwrap().into_inner().indexes
}

/// Waits until every index is ready and caught up.
async fn settled(c: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = indexes(c).await;
        if list.iter().all(|i| i.state == "ready" && i.lag == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "indexes never settled: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The keys found with indexes and by scan, with whether an index served.
async fn both(c: &mut Client, filter: &pb::Filter, sort: &str, descending: bool) -> (Vec<String>, Vec<String>, pb::SearchResponse) {
    let req = |no_index| pb::SearchRequest {
        filter: Some(filter.clone()),
        sort: sort.into(),
        descending,
        limit: 1000,
        no_index,
        ..Default::default()
    };
    let ix = c.search(req(false)).await.unwrap().into_inner();
    let scan = c.search(req(true)).await.unwrap().into_inner();
    assert!(!scan.indexed);
    let keys = |r: &pb::SearchResponse| r.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
    (keys(&ix), keys(&scan), ix)
}

#[tokio::test]
async fn every_index_type_answers_as_a_scan_does() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    // Made before the data: eager mode indexes each write as it commits.
    for (name, fields, kind) in [
        ("cat", &["category"][..], "btree"),
        ("size", &["size"][..], "btree"),
        ("key", &["key"][..], "btree"),
        ("score", &["score"][..], "hash"),
        ("title", &["title"][..], "fulltext"),
        ("tags", &["tags"][..], "tags"),
        ("family_draft", &["model.family", "draft"][..], "btree"),
    ] {
        let info = create(&mut c, name, fields, kind).await.unwrap();
        assert_eq!(info.state, "ready", "an index over nothing is ready at once");
    }
    fixture(&mut c).await;
    let every = 0..30usize;
    let cases: Vec<(pb::Filter, Vec<String>, &str)> = vec![
        (cond("category", "eq", &[json!("ops")]), docs(every.clone().filter(|i| i % 3 == 1)), "cat"),
        (cond("category", "ne", &[json!("ops")]), docs(every.clone().filter(|i| i % 3 != 1)), "cat"),
        (cond("category", "in", &[json!("ops"), json!("legal")]), docs(every.clone().filter(|i| i % 3 != 0)), "cat"),
        (cond("category", "prefix", &[json!("res")]), docs(every.clone().filter(|i| i % 3 == 0)), "cat"),
        (cond("size", "gt", &[json!(2500)]), docs(26..30), "size"),
        (cond("size", "gte", &[json!(2500)]), docs(25..30), "size"),
        (cond("size", "lt", &[json!(300)]), docs(0..3), "size"),
        (cond("size", "lte", &[json!(300)]), docs(0..4), "size"),
        (cond("key", "prefix", &[json!("docs/2")]), docs(20..30), "key"),
        (cond("score", "eq", &[json!(1.5)]), docs(every.clone().filter(|i| i % 7 == 3)), "score"),
        (cond("score", "in", &[json!(0.0), json!(3.0)]), docs(every.clone().filter(|i| i % 7 == 0 || i % 7 == 6)), "score"),
        (cond("tags", "contains", &[json!("gpu")]), docs(every.clone().filter(|i| i % 4 == 0)), "tags"),
        (cond("title", "match", &[json!("gpu FLEET")]), docs(every.clone().filter(|i| i % 3 == 1)), "title"),
        (cond("model.family", "eq", &[json!("llama")]), docs(every.clone().filter(|i| i % 2 == 0)), "family_draft"),
        (
            all(vec![
                cond("category", "eq", &[json!("research")]),
                any(vec![cond("size", "lt", &[json!(700)]), cond("score", "eq", &[json!(0.0)])]),
            ]),
            docs([0, 3, 6, 21]),
            "cat",
        ),
        (
            any(vec![cond("tags", "contains", &[json!("team-1")]), cond("title", "match", &[json!("contract")])]),
            docs(every.clone().filter(|i| (i % 4 == 0 && i % 3 == 1) || i % 3 == 2)),
            "tags",
        ),
    ];
    for (filter, want, index) in cases {
        for (sort, descending) in [("key", false), ("size", true), ("score", false)] {
            let (ix, scan, r) = both(&mut c, &filter, sort, descending).await;
            assert_eq!(ix, scan, "{filter:?} by {sort}");
            assert!(r.indexed, "{index} should serve {filter:?}: {}", r.plan);
            assert!(r.plan.contains(&format!("index {index} ")), "{}", r.plan);
            if sort == "key" && !descending {
                assert_eq!(ix, want, "{filter:?}");
            }
        }
    }
    // A condition no index serves is scanned, with the same answers.
    let (ix, scan, r) = both(&mut c, &cond("content_type", "prefix", &[json!("application/")]), "key", false).await;
    assert_eq!(ix, scan);
    assert!(!r.indexed && r.plan.contains("no ready index serves"), "{}", r.plan);

    // Overwrites and deletes: stale terms never show.
    put_with(&mut c, "docs/01", 5, json!({"category": "research"})).await;
    c.delete(pb::DeleteRequest { key: "docs/04".into(), ..Default::default() }).await.unwrap();
    let (ix, scan, r) = both(&mut c, &cond("category", "eq", &[json!("ops")]), "key", false).await;
    assert!(r.indexed);
    assert_eq!(ix, scan);
    assert_eq!(ix, docs([7, 10, 13, 16, 19, 22, 25, 28]));
    assert!(both(&mut c, &cond("category", "eq", &[json!("research")]), "key", false).await.0.contains(&"docs/01".to_string()));
}

#[tokio::test]
async fn the_cli_backfills_explains_and_drops() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    fixture(&mut c).await;
    let out = s.cli(&["index", "create", "by-cat", "--field", "category", "--type", "btree", "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("by-cat") && text.contains("ready"), "{text}");

    let out = s.cli(&["index", "ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "by-cat");
    assert_eq!(v[0]["state"], "ready");
    assert_eq!(v[0]["progress"], 1.0);
    assert_eq!(v[0]["fields"], json!(["category"]));
    let out = s.cli(&["index", "ls", "-b", "nosuchbucket"]);
    assert!(!out.status.success(), "the indexes of a bucket that does not exist: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchbucket"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = s.cli(&["search", r#"category = "legal""#, "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plan: index by-cat (btree) serves category eq \"legal\""), "{text}");
    assert!(text.contains("10 found"), "{text}");

    // More values than one SQLite compound query takes: the search scans.
    let many: Vec<String> = std::iter::once("\"legal\"".to_string()).chain((0..600).map(|i| format!("\"c{i}\""))).collect();
    let out = s.cli(&["search", &format!("category in ({})", many.join(", ")), "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("scanning instead") && text.contains("10 found"), "{text}");

    let out = s.cli(&["index", "rm", "by-cat"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.cli(&["search", r#"category = "legal""#, "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plan: scan"), "{text}");
    assert!(text.contains("10 found"), "{text}");
    assert!(indexes(&mut c).await.is_empty());

    let out = s.cli(&["index", "rm", "by-cat"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no index named \"by-cat\""));
    let out = s.cli(&["index", "create", "x", "--field", "title", "--type", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no index-type plugin \"nope\"") && err.contains("btree"), "{err}");
}

#[tokio::test]
async fn lazy_indexes_answer_exactly_while_behind_and_catch_up() {
    let s = TestServer::start("[metadata]\nindexing_mode = \"lazy\"\nsync_interval = \"500ms\"\n");
    let mut c = s.client().await;
    create(&mut c, "cat", &["category"], "btree").await.unwrap();
    settled(&mut c).await;
    fixture(&mut c).await;
    // Straight after the writes the worker has likely not run: the tail is
    // scanned, and the answer is whole either way.
    let (ix, scan, r) = both(&mut c, &cond("category", "eq", &[json!("legal")]), "key", false).await;
    assert_eq!(ix, scan);
    assert_eq!(ix.len(), 10);
    assert!(r.indexed, "{}", r.plan);
    settled(&mut c).await;
    let (ix, _, r) = both(&mut c, &cond("category", "eq", &[json!("legal")]), "key", false).await;
    assert_eq!(ix.len(), 10);
    assert!(!r.plan.contains("not indexed yet"), "caught up: {}", r.plan);
    assert_eq!(r.scanned, 10, "only the index's hits are read: {}", r.plan);
}

#[tokio::test]
async fn indexes_survive_a_crash_and_serve_after_restart() {
    let mut s = TestServer::start("");
    let mut c = s.client().await;
    create(&mut c, "size", &["size"], "btree").await.unwrap();
    fixture(&mut c).await;
    s.kill9();
    s.boot();
    let mut c = s.client().await;
    let list = indexes(&mut c).await;
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].state.as_str(), list[0].lag), ("ready", 0));
    let (ix, scan, r) = both(&mut c, &cond("size", "gte", &[json!(2500)]), "key", false).await;
    assert!(r.indexed);
    assert_eq!(ix, scan);
    assert_eq!(ix, docs(25..30));
}

#[tokio::test]
async fn bad_index_requests_say_what_to_fix() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    create(&mut c, "cat", &["category"], "btree").await.unwrap();
    for (name, fields, kind, code, says) in [
        ("cat", &["title"][..], "btree", Code::AlreadyExists, "already has an index named \"cat\""),
        ("bad name!", &["title"][..], "btree", Code::InvalidArgument, "invalid index name"),
        ("x", &[][..], "btree", Code::InvalidArgument, "give 1 to 8 fields"),
        ("x", &["a..b"][..], "btree", Code::InvalidArgument, "not a field name"),
        ("x", &["a", "a"][..], "btree", Code::InvalidArgument, "listed twice"),
        ("x", &["a"][..], "nope", Code::InvalidArgument, "no index-type plugin"),
        ("x", &["a"][..], "rendezvous", Code::InvalidArgument, "no index-type plugin"),
        ("x", &["a", "b"][..], "hash", Code::InvalidArgument, "cannot index 2 field(s)"),
    ] {
        let err = create(&mut c, name, fields, kind).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(says), "{}", err.message());
    }
    let req = pb::CreateIndexRequest { bucket: "nope".into(), name: "x".into(), fields: vec!["a".into()], r#type: "btree".into() };
    assert_eq!(c.create_index(req).await.unwrap_err().code(), Code::NotFound);
    let err = c.drop_index(pb::DropIndexRequest { name: "zzz".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(indexes(&mut c).await.len(), 1, "nothing half-made");
}

#[tokio::test]
async fn disabled_indexing_and_search_are_refused_clearly() {
    let s = TestServer::start("[metadata]\nindexing_mode = \"disabled\"\nenable_search = false\n");
    let mut c = s.client().await;
    let err = create(&mut c, "cat", &["category"], "btree").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("indexing_mode"), "{}", err.message());
    let err = c.search(pb::SearchRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("enable_search = false"), "{}", err.message());
    // Switched off is said first, whatever else is wrong with the request.
    let err = c.search(pb::SearchRequest { bucket: "BAD".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = create(&mut c, "bad name!", &[], "nope").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let out = s.cli(&["search", "size > 1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("search is disabled"));
}

#[tokio::test]
async fn indexed_pages_equal_scanned_pages() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    create(&mut c, "cat", &["category"], "btree").await.unwrap();
    fixture(&mut c).await;
    let filter = cond("category", "in", &[json!("ops"), json!("legal")]);
    for (sort, descending) in [("size", true), ("score", false), ("key", true)] {
        let mut pages = Vec::new();
        for no_index in [false, true] {
            let mut keys = Vec::new();
            let mut cursor = String::new();
            loop {
                let req = pb::SearchRequest {
                    filter: Some(filter.clone()),
                    sort: sort.into(),
                    descending,
                    limit: 3,
                    cursor,
                    no_index,
                    ..Default::default()
                };
                let r = c.search(req).await.unwrap().into_inner();
                assert_eq!(r.indexed, !no_index, "{}", r.plan);
                keys.extend(r.objects.into_iter().map(|o| o.key));
                if r.next_cursor.is_empty() {
                    break;
                }
                cursor = r.next_cursor;
            }
            pages.push(keys);
        }
        assert_eq!(pages[0], pages[1], "sorted by {sort}");
        assert_eq!(pages[0].len(), 20);
    }
}

/// A search reads its candidates and then their objects in one snapshot:
/// an object overwritten (with the same attributes) while the search runs
/// is still found. Before, the candidate was the old version, no longer
/// live by the time it was read, and the new one was never a candidate.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_overwritten_during_a_search_is_still_found() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    create(&mut c, "n", &["n"], "btree").await.unwrap();
    for i in 0..600 {
        let attrs = if i == 300 { json!({"n": i, "sel": 1}) } else { json!({"n": i}) };
        put_with(&mut c, &format!("k/{i:04}"), 1, attrs).await;
    }
    settled(&mut c).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (mut w, stop) = (s.client().await, stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                put_with(&mut w, "k/0300", 1, json!({"n": 300, "sel": 1})).await;
            }
        })
    };
    // `n >= 0` serves the filter (every object is a candidate); `sel` is
    // rechecked. A page of 1 reads candidates a few at a time.
    let filter = all(vec![cond("n", "gte", &[json!(0)]), cond("sel", "eq", &[json!(1)])]);
    for (round, descending) in (0..40).map(|r| (r, r % 2 == 1)) {
        let req = pb::SearchRequest { filter: Some(filter.clone()), limit: 1, descending, ..Default::default() };
        let r = c.search(req).await.unwrap().into_inner();
        assert!(r.plan.contains("index n"), "{}", r.plan);
        let found: Vec<String> = r.objects.into_iter().map(|o| o.key).collect();
        assert_eq!(found, ["k/0300"], "round {round}, descending {descending}: {}", r.plan);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
}
