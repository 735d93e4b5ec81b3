//! Search through the real server: every operator, and/or, sorts, cursor
//! pages that stay correct while objects change, the CLI's query language
//! and its errors.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use strata::api::pb;
use tonic::Code;

use crate::common::*;

fn value(v: &serde_json::Value) -> pb::Value {
    strata::api::validate::from_json(v)
}

pub async fn put_with(c: &mut Client, key: &str, size: usize, attrs: serde_json::Value) {
    let mut h = header(key);
    h.attributes = attrs.as_object().unwrap().iter().map(|(k, v)| (k.clone(), value(v))).collect::<HashMap<_, _>>();
    put(c, h, &vec![b'x'; size]).await.unwrap();
}

/// Thirty objects with varied attributes; object i has size 100 * i.
pub async fn fixture(c: &mut Client) {
    for i in 0..30usize {
        let category = ["research", "ops", "legal"][i % 3];
        let title = format!("Report {i}: {} notes", ["LLaMA quantisation", "GPU fleet", "contract"][i % 3]);
        let mut a = json!({
            "category": category,
            "score": (i % 7) as f64 / 2.0,
            "title": title,
            "model.family": if i % 2 == 0 { "llama" } else { "mistral" },
        });
        if i % 4 == 0 {
            a["tags"] = json!(["gpu", format!("team-{}", i % 3)]);
        }
        if i % 5 == 0 {
            a["draft"] = json!(true);
        }
        put_with(c, &format!("docs/{i:02}"), 100 * i, a).await;
    }
}

pub fn cond(field: &str, op: &str, values: &[serde_json::Value]) -> pb::Filter {
    pb::Filter {
        kind: Some(pb::filter::Kind::Condition(pb::Condition {
            field: field.into(),
            op: op.into(),
            values: values.iter().map(value).collect(),
        })),
    }
}

pub async fn keys(c: &mut Client, filter: Option<pb::Filter>) -> Vec<String> {
    let req = pb::SearchRequest { filter, limit: 1000, ..Default::default() };
    c.search(req).await.unwrap().into_inner().objects.into_iter().map(|o| o.key).collect()
}

pub fn docs(ids: impl IntoIterator<Item = usize>) -> Vec<String> {
    ids.into_iter().map(|i| format!("docs/{i:02}")).collect()
}

#[tokio::test]
async fn every_operator_through_the_server() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    fixture(&mut c).await;
    let all = 0..30usize;
    let cases: Vec<(pb::Filter, Vec<String>)> = vec![
        (cond("category", "eq", &[json!("ops")]), docs(all.clone().filter(|i| i % 3 == 1))),
        (cond("category", "ne", &[json!("ops")]), docs(all.clone().filter(|i| i % 3 != 1))),
        (cond("size", "gt", &[json!(2500)]), docs(26..30)),
        (cond("size", "gte", &[json!(2500)]), docs(25..30)),
        (cond("size", "lt", &[json!(300)]), docs(0..3)),
        (cond("size", "lte", &[json!(300)]), docs(0..4)),
        (cond("score", "in", &[json!(0.0), json!(3.0)]), docs(all.clone().filter(|i| i % 7 == 0 || i % 7 == 6))),
        (cond("key", "prefix", &[json!("docs/2")]), docs(20..30)),
        (cond("tags", "contains", &[json!("gpu")]), docs(all.clone().filter(|i| i % 4 == 0))),
        (cond("draft", "exists", &[]), docs(all.clone().filter(|i| i % 5 == 0))),
        (cond("title", "match", &[json!("gpu FLEET")]), docs(all.clone().filter(|i| i % 3 == 1))),
        (cond("model.family", "eq", &[json!("llama")]), docs(all.clone().filter(|i| i % 2 == 0))),
        (
            pb::Filter {
                kind: Some(pb::filter::Kind::All(pb::FilterList {
                    filters: vec![
                        cond("category", "eq", &[json!("research")]),
                        pb::Filter {
                            kind: Some(pb::filter::Kind::Any(pb::FilterList {
                                filters: vec![cond("size", "lt", &[json!(700)]), cond("draft", "eq", &[json!(true)])],
                            })),
                        },
                    ],
                })),
            },
            docs([0, 3, 6, 15]),
        ),
    ];
    for (filter, want) in cases {
        assert_eq!(keys(&mut c, Some(filter.clone())).await, want, "{filter:?}");
    }
    assert_eq!(keys(&mut c, None).await.len(), 30);
}

#[tokio::test]
async fn sorts_and_cursor_pages_stay_correct_while_objects_change() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    fixture(&mut c).await;
    let page = |sort: &str, descending: bool, cursor: String, filter: Option<pb::Filter>| pb::SearchRequest {
        sort: sort.into(),
        descending,
        limit: 7,
        cursor,
        filter,
        ..Default::default()
    };
    // Size, descending.
    let r = c.search(page("size", true, String::new(), None)).await.unwrap().into_inner();
    assert_eq!(r.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(), docs((23..30).rev()));
    // Its cursor continues that search only: another order is refused.
    for (sort, descending) in [("size", false), ("key", true)] {
        let err = c.search(page(sort, descending, r.next_cursor.clone(), None)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("continues a search of bucket \"default\" by size descending"), "{err:?}");
    }

    // An attribute sort: objects without the attribute come last, in key order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = c.search(page("draft", false, cursor, None)).await.unwrap().into_inner();
        seen.extend(r.objects.into_iter().map(|o| o.key));
        if r.next_cursor.is_empty() {
            break;
        }
        cursor = r.next_cursor;
    }
    assert_eq!(seen[..6], docs([0, 5, 10, 15, 20, 25])[..]);
    assert_eq!(seen.len(), 30);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 30, "no object twice");

    // Pages by score descending; between pages, add an object that sorts
    // before the cursor and delete one after it: no duplicates, nothing
    // that existed throughout is skipped.
    let first = c.search(page("score", true, String::new(), None)).await.unwrap().into_inner();
    put_with(&mut c, "docs/new", 1, json!({"score": 99.0})).await;
    let last = first.objects.last().unwrap().key.clone();
    let removed = "docs/00"; // score 0: sorts last
    c.delete(pb::DeleteRequest { key: removed.into(), ..Default::default() }).await.unwrap();
    let mut rest = Vec::new();
    let mut cursor = first.next_cursor.clone();
    while !cursor.is_empty() {
        let r = c.search(page("score", true, cursor, None)).await.unwrap().into_inner();
        rest.extend(r.objects.into_iter().map(|o| o.key));
        cursor = r.next_cursor;
    }
    let mut all: Vec<String> = first.objects.iter().map(|o| o.key.clone()).collect();
    all.extend(rest);
    assert!(!all.contains(&"docs/new".to_string()), "sorted before the cursor: not on later pages");
    assert!(!all.contains(&removed.to_string()));
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len(), "no object twice");
    assert_eq!(all.len(), 29, "every object that existed throughout, once");
    assert!(all.contains(&last));

    // Filter and sort together; the plan says how.
    let r = c.search(page("size", false, String::new(), Some(cond("category", "eq", &[json!("legal")])))).await.unwrap().into_inner();
    assert_eq!(r.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(), docs([2, 5, 8, 11, 14, 17, 20]));
    assert!(r.plan.contains("scan"), "{}", r.plan);
    assert!(r.scanned >= 7);
}

#[tokio::test]
async fn bad_searches_say_what_to_fix() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let forged = r#"{"at":{"Valued":{"value":{"Text":"zzz"},"key":"a"}},"bucket":"default","sort":"key","descending":false}"#;
    for (req, says) in [
        (pb::SearchRequest { filter: Some(cond("size", "about", &[json!(1)])), ..Default::default() }, "not one of eq"),
        (pb::SearchRequest { filter: Some(cond("size", "gt", &[json!("big")])), ..Default::default() }, "size is a number"),
        (pb::SearchRequest { filter: Some(cond("key", "contains", &[json!("x")])), ..Default::default() }, "contains looks inside list"),
        (pb::SearchRequest { filter: Some(cond("a", "exists", &[json!(1)])), ..Default::default() }, "exists takes no value"),
        (pb::SearchRequest { filter: Some(pb::Filter { kind: None }), ..Default::default() }, "set condition"),
        (pb::SearchRequest { cursor: "zz".into(), ..Default::default() }, "cursor"),
        // A forged position sorted by key: its value is not its key.
        (pb::SearchRequest { cursor: hex::encode(forged), ..Default::default() }, "cursor: not one this server gave out"),
        (pb::SearchRequest { limit: 10_001, ..Default::default() }, "limit"),
    ] {
        let err = c.search(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(says), "{}", err.message());
    }
    let err = c.search(pb::SearchRequest { bucket: "nope".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn the_cli_takes_a_readable_query() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    fixture(&mut c).await;
    let out = s.cli(&["search", r#"category = "research" and size > 1500"#, "--sort", "-size", "--limit", "3", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<&str> = v["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(got, ["docs/27", "docs/24", "docs/21"]);
    assert!(!v["next_cursor"].as_str().unwrap().is_empty());

    let out = s.cli(&["search", "tags contains \"gpu\" or title match \"contract\"", "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("docs/00") && text.contains("docs/02") && text.contains("plan: scan"), "{text}");

    let out = s.cli(&["search", "size > and"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("size > and\n") && err.contains("         ^"), "{err}");
    assert!(err.contains("bad query at column 8: expected"), "{err}");
}

/// A number comes back as the double that was put, to the bit, and a search
/// sorted by it pages through each object once, either way: a parse one
/// step off made the cursor repeat the first page forever.
#[tokio::test]
async fn doubles_round_trip_and_page_exactly() {
    let s = TestServer::start("");
    let x = -6.864829614150004e-172_f64;
    for k in ["p", "q", "r"] {
        let out = s.cli(&["put", "-m", &format!("x={x:e}"), k, "/dev/null"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut c = s.client().await;
    put_with(&mut c, "s", 0, json!({ "x": 5.0, "y": x })).await;
    let stat: serde_json::Value = serde_json::from_slice(&s.cli(&["stat", "p", "--json"]).stdout).unwrap();
    assert_eq!(stat["attributes"]["x"].as_f64().unwrap().to_bits(), x.to_bits(), "{stat}");
    let stat: serde_json::Value = serde_json::from_slice(&s.cli(&["stat", "s", "--json"]).stdout).unwrap();
    assert_eq!(stat["attributes"]["y"].as_f64().unwrap().to_bits(), x.to_bits(), "{stat}");
    for (sort, want) in [("x", ["p", "q", "r", "s"]), ("-x", ["s", "r", "q", "p"])] {
        let mut keys = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10 {
            let mut args = vec!["search", "x exists", "--sort", sort, "--limit", "1", "--json"];
            if !cursor.is_empty() {
                args.extend(["--cursor", &cursor]);
            }
            let out = s.cli(&args);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            keys.extend(v["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_string()));
            cursor = v["next_cursor"].as_str().unwrap_or_default().to_string();
            if cursor.is_empty() {
                break;
            }
        }
        assert_eq!(keys, want, "sorted by {sort}");
    }
    // An equality search finds the value that was put.
    let out = s.cli(&["search", &format!("x = {x:e}"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["objects"].as_array().unwrap().len(), 3, "{v}");
}
