//! Indexed answers equal scanned ones: random objects (with overwrites,
//! deletes and mistyped values), random queries, every built-in index type,
//! every sort, all pages, in eager and lazy modes.

use std::sync::{Arc, OnceLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

use super::index::PluginTerms;
use super::query::{Condition, Expr, Field, Literal, Op};
use super::run::{Search, run};
use strata_config::{Config, IndexingMode};
use strata_meta::{MetaOptions, MetaStore, NewVersion};
use strata_plugin::Plugins;
use strata_store::Digest;

fn plugins() -> Arc<Plugins> {
    static PLUGINS: OnceLock<(tempfile::TempDir, Arc<Plugins>)> = OnceLock::new();
    PLUGINS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Config::default();
            c.storage.base_path = dir.path().to_path_buf();
            (dir, Arc::new(Plugins::load(&c).unwrap()))
        })
        .1
        .clone()
}

const WORDS: &[&str] = &["llama", "gpu", "fleet", "quantisation", "contract", "Report", "notes", "eu"];
const CATEGORIES: &[&str] = &["research", "ops", "legal", "Research", "re"];

fn attributes(rng: &mut StdRng) -> Json {
    let mut a = serde_json::Map::new();
    match rng.random_range(0..10) {
        0 => {}
        1 => drop(a.insert("category".into(), json!(3))),
        _ => drop(a.insert("category".into(), json!(CATEGORIES[rng.random_range(0..CATEGORIES.len())]))),
    }
    match rng.random_range(0..8) {
        0 => {}
        1 => drop(a.insert("score".into(), json!("7"))),
        _ => drop(a.insert("score".into(), json!(rng.random_range(0..20) as f64 / 2.0))),
    }
    if rng.random_bool(0.8) {
        let n = rng.random_range(1..5);
        let title: Vec<&str> = (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
        a.insert("title".into(), json!(title.join(if rng.random_bool(0.5) { " " } else { ", " })));
    }
    if rng.random_bool(0.5) {
        let n = rng.random_range(0..4);
        let mut tags: Vec<Json> = (0..n).map(|_| json!(WORDS[rng.random_range(0..WORDS.len())])).collect();
        if rng.random_bool(0.1) {
            tags.push(json!(3));
        }
        a.insert("tags".into(), Json::Array(tags));
    }
    if rng.random_bool(0.3) {
        a.insert("draft".into(), json!(rng.random_bool(0.5)));
    }
    Json::Object(a)
}

fn literal(rng: &mut StdRng, field: &str) -> Literal {
    // Mostly the field's own type, sometimes another.
    let own = rng.random_bool(0.85);
    match (field, own) {
        ("category", true) => Literal::Text(CATEGORIES[rng.random_range(0..CATEGORIES.len())].into()),
        ("score", true) => Literal::Number(rng.random_range(0..20) as f64 / 2.0),
        ("size", _) => Literal::Number(rng.random_range(0..5000) as f64),
        ("key", _) => Literal::Text(format!("k/{}", rng.random_range(0..40))),
        ("title" | "tags", true) => Literal::Text(WORDS[rng.random_range(0..WORDS.len())].into()),
        ("draft", true) => Literal::Bool(rng.random_bool(0.5)),
        (_, _) => match rng.random_range(0..3) {
            0 => Literal::Number(3.0),
            1 => Literal::Text("7".into()),
            _ => Literal::Bool(true),
        },
    }
}

fn condition(rng: &mut StdRng) -> Condition {
    const FIELDS: &[&str] = &["category", "score", "size", "key", "title", "tags", "draft", "missing"];
    loop {
        let name = FIELDS[rng.random_range(0..FIELDS.len())];
        let field = Field::parse(name);
        let op = [Op::Eq, Op::Ne, Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::In, Op::Prefix, Op::Contains, Op::Exists, Op::Match]
            [rng.random_range(0..11)];
        let operands = match op {
            Op::Exists => vec![],
            Op::In => (0..rng.random_range(1..4)).map(|_| literal(rng, name)).collect(),
            Op::Prefix => vec![Literal::Text(match name {
                "key" => format!("k/{}", rng.random_range(0..4)),
                _ => CATEGORIES[rng.random_range(0..CATEGORIES.len())][..2].to_string(),
            })],
            Op::Match => {
                let n = rng.random_range(1..4);
                let w: Vec<&str> = (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
                vec![Literal::Text(w.join(" ").to_uppercase())]
            }
            _ => vec![literal(rng, name)],
        };
        let c = Condition { field, op, operands };
        if c.check().is_ok() {
            return c;
        }
    }
}

fn expr(rng: &mut StdRng, depth: u32) -> Expr {
    if depth == 0 || rng.random_bool(0.5) {
        return Expr::Cond(condition(rng));
    }
    let parts = (0..rng.random_range(2..4)).map(|_| expr(rng, depth - 1)).collect();
    if rng.random_bool(0.6) { Expr::And(parts) } else { Expr::Or(parts) }
}

async fn write(meta: &MetaStore, rng: &mut StdRng, keys: std::ops::Range<usize>) {
    let items: Vec<NewVersion> = keys
        .map(|i| {
            let mut digest = [0u8; 32];
            rng.fill(&mut digest[..]);
            NewVersion {
                bucket: "default".into(),
                key: format!("k/{i}"),
                digest: Digest(digest),
                size: rng.random_range(0..5000),
                stored_size: 1,
                content_type: "application/octet-stream".into(),
                attributes: attributes(rng).as_object().unwrap().clone(),
                condition: Default::default(),
                fresh_blob: true,
                inline: None,
                request_id: None,
                identity: None,
            }
        })
        .collect();
    for r in meta.commit_puts(&items).await.unwrap() {
        r.unwrap();
    }
}

/// Every page of a search, concatenated.
async fn all_pages(meta: &MetaStore, plugins: Option<&Plugins>, mut s: Search) -> (Vec<String>, bool) {
    let mut keys = Vec::new();
    let mut indexed = false;
    loop {
        let found = run(meta, plugins, &s).await.unwrap();
        indexed |= found.indexed;
        keys.extend(found.records.iter().map(|r| r.key.clone()));
        match found.next {
            Some(p) => s.after = Some(p),
            None => return (keys, indexed),
        }
    }
}

async fn indexed_equals_scanned(mode: IndexingMode, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let meta = MetaStore::open(MetaOptions { indexing: mode, ..MetaOptions::in_memory() }).await.unwrap();
    let plugins = plugins();
    meta.set_term_maker(Arc::new(PluginTerms(plugins.clone())));
    // Some indexes exist before the data, some are backfilled.
    meta.create_index("default", "cat", &["category".into()], "btree").await.unwrap();
    meta.create_index("default", "title", &["title".into()], "fulltext").await.unwrap();
    write(&meta, &mut rng, 0..200).await;
    meta.create_index("default", "score_cat", &["score".into(), "category".into()], "btree").await.unwrap();
    meta.create_index("default", "score", &["score".into()], "hash").await.unwrap();
    meta.create_index("default", "tags", &["tags".into()], "tags").await.unwrap();
    meta.create_index("default", "size", &["size".into()], "btree").await.unwrap();
    meta.create_index("default", "key", &["key".into()], "btree").await.unwrap();
    meta.create_index("default", "draft", &["draft".into()], "btree").await.unwrap();
    meta.catch_up_indexes(64).await.unwrap();
    // Overwrites (retention drops the oldest versions) and deletes.
    write(&meta, &mut rng, 150..260).await;
    for i in (0..260).step_by(7) {
        meta.delete("default", &format!("k/{i}"), None).await.unwrap();
    }
    write(&meta, &mut rng, 0..10).await;
    if mode == IndexingMode::Lazy {
        // Part of the writes stay above the watermarks: the tail.
        let before = meta.head().await.unwrap();
        write(&meta, &mut rng, 255..270).await;
        assert!(meta.head().await.unwrap() > before);
    }
    meta.sweep_index_terms().await.unwrap();
    for ix in meta.list_indexes().await.unwrap() {
        assert!(ix.ready && ix.error.is_none(), "{ix:?}");
    }

    let mut used = 0;
    for q in 0..300 {
        let filter = expr(&mut rng, 2);
        let sort = ["key", "size", "score", "category", "modified"][rng.random_range(0..5)];
        let s = Search {
            bucket: "default".into(),
            filter: Some(filter.clone()),
            sort: Field::parse(sort),
            descending: rng.random_bool(0.5),
            limit: rng.random_range(1..40),
            after: None,
            // Small byte budgets end pages early; paging must not lose or
            // repeat anything either way.
            max_bytes: if rng.random_bool(0.5) { rng.random_range(200..4000) } else { usize::MAX },
        };
        let (scanned, _) = all_pages(&meta, None, s.clone()).await;
        let (indexed, used_index) = all_pages(&meta, Some(&plugins), s).await;
        assert_eq!(indexed, scanned, "query {q}: {filter:?} sorted by {sort}");
        used += used_index as u32;
    }
    // Most random filters have a condition some index serves.
    assert!(used > 100, "indexes served only {used} of 300 queries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_answers_equal_scanned_answers_eager() {
    indexed_equals_scanned(IndexingMode::Eager, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_answers_equal_scanned_answers_lazy() {
    indexed_equals_scanned(IndexingMode::Lazy, 11).await;
}
