//! The built-in plugins through the real host: placement properties,
//! strategy plans, index terms against brute force, and a misbehaving
//! plugin that the host must stop and survive.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use strata_config::{Config, PluginDecl, Size};

fn config_in(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.storage.base_path = dir.to_path_buf();
    c
}

/// The default plugin set, loaded once for the tests that only call it.
fn builtins() -> &'static Plugins {
    static PLUGINS: OnceLock<(tempfile::TempDir, Plugins)> = OnceLock::new();
    &PLUGINS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config_in(dir.path());
            // These tests check answers, not time limits: a loaded machine
            // must not turn a slow call into a failure.
            config.wasm.call_timeout = std::time::Duration::from_secs(10);
            let plugins = Plugins::load(&config).unwrap();
            (dir, plugins)
        })
        .1
}

fn node(id: &str, region: &str, zone: &str, capacity: u64, available: u64) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("127.0.0.1:{}", 7400 + id.len()),
        region: region.into(),
        zone: zone.into(),
        capacity_total: capacity,
        capacity_available: available,
        load: 0.0,
        health: Health::Healthy,
        labels: vec![],
    }
}

fn equal_nodes(n: usize) -> Vec<NodeInfo> {
    (0..n).map(|i| node(&format!("node-{i}"), "r", "z", 1 << 40, 1 << 40)).collect()
}

fn policy(replicas: u32) -> ReplicationPolicy {
    ReplicationPolicy { replicas, min_replicas: 1, max_replicas: replicas, consistency: Consistency::Strong, params: vec![] }
}

fn object(key: &str) -> ObjectInfo {
    ObjectInfo { bucket: "b".into(), key: key.into(), digest: String::new(), size: 0, content_type: String::new(), attributes: vec![] }
}

fn all(t: &Topology) -> Vec<u32> {
    (0..t.nodes().len() as u32).collect()
}

fn place(selector: &str, t: &Topology, key: &str, replicas: u32) -> Vec<String> {
    let chosen = builtins().selector(selector).unwrap().select(t, &all(t), &object(key), &policy(replicas)).unwrap();
    chosen.iter().map(|&i| t.nodes()[i as usize].id.clone()).collect()
}

#[test]
fn rendezvous_moves_about_one_in_n_plus_one_keys() {
    let before = Topology::new(equal_nodes(10));
    let after = Topology::new(equal_nodes(11));
    let keys = 10_000;
    let mut moved = 0;
    for k in 0..keys {
        let key = format!("key-{k}");
        let (a, b) = (place("rendezvous", &before, &key, 1), place("rendezvous", &after, &key, 1));
        if a != b {
            moved += 1;
            assert_eq!(b, ["node-10"], "a key may only move to the new node");
        }
    }
    let fraction = moved as f64 / keys as f64;
    // 1/11 = 0.091; four standard deviations either side.
    assert!((0.080..0.102).contains(&fraction), "moved {fraction}");
}

#[test]
fn rendezvous_follows_capacity_weights() {
    let t = Topology::new(vec![
        node("small", "r", "z", 1 << 40, 1 << 40),
        node("medium", "r", "z", 2 << 40, 2 << 40),
        node("large", "r", "z", 3 << 40, 3 << 40),
    ]);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let keys = 12_000;
    for k in 0..keys {
        *counts.entry(place("rendezvous", &t, &format!("k{k}"), 1).remove(0)).or_default() += 1;
    }
    for (id, share) in [("small", 1.0 / 6.0), ("medium", 2.0 / 6.0), ("large", 3.0 / 6.0)] {
        let got = counts[id] as f64 / keys as f64;
        assert!((got - share).abs() < 0.02, "{id}: {got} vs {share}");
    }
}

/// Placement must not change between releases unless on purpose: these
/// keys land where they landed when the hash was chosen.
#[test]
fn placement_is_pinned() {
    let keys = ["alpha", "beta", "gamma", "models/llama-70b/shard-00001", ""];
    let equal = Topology::new(equal_nodes(8));
    let got: Vec<String> = keys.iter().map(|k| place("rendezvous", &equal, k, 3).join(",")).collect();
    assert_eq!(
        got,
        ["node-5,node-7,node-0", "node-5,node-1,node-6", "node-6,node-5,node-4", "node-0,node-2,node-1", "node-1,node-3,node-7",]
    );
    // Unequal capacities take the weighted path.
    let weighted = Topology::new((0..8).map(|i| node(&format!("node-{i}"), "r", "z", (i + 1) << 40, 1 << 40)).collect());
    let got: Vec<String> = keys.iter().map(|k| place("rendezvous", &weighted, k, 3).join(",")).collect();
    assert_eq!(
        got,
        ["node-5,node-7,node-4", "node-5,node-6,node-2", "node-6,node-5,node-4", "node-0,node-2,node-6", "node-7,node-3,node-1",]
    );
}

#[test]
fn zone_aware_never_doubles_a_zone_while_zones_remain() {
    let t = Topology::new(vec![
        node("a1", "eu", "a", 4 << 40, 4 << 40),
        node("a2", "eu", "a", 4 << 40, 4 << 40),
        node("b1", "eu", "b", 1 << 40, 1 << 40),
        node("b2", "eu", "b", 1 << 40, 1 << 40),
        node("c1", "eu", "c", 1 << 40, 1 << 40),
    ]);
    let zone = |id: &str| id[..1].to_string();
    for k in 0..1000 {
        let chosen = place("zone-aware", &t, &format!("k{k}"), 3);
        let zones: BTreeSet<String> = chosen.iter().map(|id| zone(id)).collect();
        assert_eq!(zones.len(), 3, "{chosen:?}");
        // With four replicas and three zones, one zone holds two.
        let four = place("zone-aware", &t, &format!("k{k}"), 4);
        assert_eq!(four.iter().map(|id| zone(id)).collect::<BTreeSet<_>>().len(), 3);
    }
    // Regions come first: two replicas across two regions never share one.
    let t = Topology::new(vec![node("eu-a", "eu", "a", 1, 1), node("eu-b", "eu", "b", 1, 1), node("us-a", "us", "a", 1, 1)]);
    for k in 0..200 {
        let chosen = place("zone-aware", &t, &format!("k{k}"), 2);
        assert!(chosen.iter().any(|id| id.starts_with("us")), "{chosen:?}");
    }
}

#[test]
fn least_loaded_picks_the_least_utilized() {
    let t = Topology::new(vec![
        node("ninety", "r", "z", 100, 10),
        node("ten", "r", "z", 100, 90),
        node("fifty", "r", "z", 100, 50),
        node("thirty", "r", "z", 100, 70),
    ]);
    for k in 0..50 {
        assert_eq!(place("least-loaded", &t, &format!("k{k}"), 2), ["ten", "thirty"]);
    }
}

#[test]
fn selectors_refuse_too_few_nodes() {
    let t = Topology::new(equal_nodes(2));
    let mut p = policy(3);
    p.min_replicas = 3;
    let err = builtins().selector("rendezvous").unwrap().select(&t, &all(&t), &object("k"), &p).unwrap_err();
    assert!(matches!(err, PluginError::Returned { error: ReturnedError::Unsatisfiable(_), .. }), "{err}");
}

fn plan(strategy: &str, t: &Topology, coordinator: u32, targets: &[u32], p: &ReplicationPolicy) -> WritePlan {
    builtins().strategy(strategy).unwrap().plan_write(t, coordinator, targets, &object("k"), p).unwrap()
}

#[test]
fn strategies_plan_as_defined() {
    let t = Topology::new(vec![
        node("eu1", "eu", "a", 1, 1),
        node("eu2", "eu", "b", 1, 1),
        node("us1", "us", "a", 1, 1),
        node("us2", "us", "b", 1, 1),
        node("ap1", "ap", "a", 1, 1),
    ]);
    let targets = [2, 0, 4, 1];
    let p = policy(4);

    let eager = plan("eager", &t, 0, &targets, &p);
    assert_eq!((eager.sync_targets.as_slice(), eager.async_targets.len(), eager.acks_required), (&targets[..], 0, 4));

    // Lazy: the coordinator's own copy when it is a target, else the first.
    let lazy = plan("lazy", &t, 0, &targets, &p);
    assert_eq!((lazy.sync_targets, lazy.async_targets, lazy.acks_required), (vec![0], vec![2, 4, 1], 1));
    let lazy = plan("lazy", &t, 3, &targets, &p);
    assert_eq!(lazy.sync_targets, vec![2]);

    // Quorum: all written, a majority acknowledges; a parameter overrides.
    let quorum = plan("quorum", &t, 0, &targets, &p);
    assert_eq!((quorum.sync_targets.len(), quorum.acks_required), (4, 3));
    let quorum = plan("quorum", &t, 0, &targets[..3], &p);
    assert_eq!(quorum.acks_required, 2);
    let mut two = p.clone();
    two.params = vec![("write_quorum".into(), "2".into())];
    assert_eq!(plan("quorum", &t, 0, &targets, &two).acks_required, 2);
    let mut five = p.clone();
    five.params = vec![("write_quorum".into(), "5".into())];
    let err = builtins().strategy("quorum").unwrap().plan_write(&t, 0, &targets, &object("k"), &five).unwrap_err();
    assert!(err.to_string().contains("write quorum 5 with 4 targets"), "{err}");

    // Geographic: the coordinator's region synchronously, others after.
    let geo = plan("geographic", &t, 1, &targets, &p);
    assert_eq!((geo.sync_targets, geo.async_targets, geo.acks_required), (vec![0, 1], vec![2, 4], 2));
    let geo = plan("geographic", &t, 2, &targets, &p);
    assert_eq!((geo.sync_targets, geo.async_targets), (vec![2], vec![0, 4, 1]));
}

#[test]
fn conflicts_resolve_to_the_last_writer_and_repairs_move_to_the_placement() {
    let v = |stamp: u64, node: &str| VersionInfo { stamp, node_id: node.into(), digest: String::new(), size: 0, deleted: false };
    let quorum = builtins().strategy("quorum").unwrap();
    assert_eq!(quorum.resolve(&[v(5, "a"), v(9, "a"), v(7, "z")]).unwrap(), 1);
    assert_eq!(quorum.resolve(&[v(9, "a"), v(9, "b")]).unwrap(), 1, "the larger node id breaks a tie");
    let sized = |stamp: u64, size: u64| VersionInfo { size, ..v(stamp, "a") };
    let larger = builtins().strategy("larger-wins").unwrap();
    assert_eq!(larger.resolve(&[sized(9, 10), sized(5, 99), sized(7, 3)]).unwrap(), 1, "the larger object beats the newer");
    assert_eq!(larger.resolve(&[sized(5, 10), sized(9, 10)]).unwrap(), 1, "equal sizes: the last writer");

    let t = Topology::new(equal_nodes(5));
    let replicas = [
        Replica { node: 0, state: ReplicaState::Healthy },
        Replica { node: 1, state: ReplicaState::Unreachable },
        Replica { node: 2, state: ReplicaState::Corrupt },
    ];
    let actions = quorum.plan_repair(&t, &object("k"), &policy(3), &replicas, &[1, 3, 4]).unwrap();
    assert_eq!(
        actions,
        [
            RepairAction::Remove(2),
            RepairAction::Copy(CopyAction { source: 0, target: 3 }),
            RepairAction::Copy(CopyAction { source: 0, target: 4 }),
            RepairAction::Remove(0),
        ],
        "the unreachable replica on the placement keeps its place; the healthy one off it goes"
    );
    let none = [Replica { node: 2, state: ReplicaState::Corrupt }];
    assert!(quorum.plan_repair(&t, &object("k"), &policy(3), &none, &[1]).is_err(), "nothing to copy from");
}

// ---- index types: terms against brute force ----

/// What a host does with terms: keep (term, doc) pairs and run lookups.
fn run_lookup(stored: &[(Vec<u8>, usize)], plan: &LookupPlan) -> BTreeSet<usize> {
    let matches = |term: &[u8], m: &TermMatch| match m {
        TermMatch::Exact(t) => term == t.as_slice(),
        TermMatch::Prefix(p) => term.starts_with(p),
        TermMatch::Range(r) => {
            let lower_ok = r.lower.as_ref().is_none_or(|b| if b.inclusive { term >= &b.term[..] } else { term > &b.term[..] });
            let upper_ok = r.upper.as_ref().is_none_or(|b| if b.inclusive { term <= &b.term[..] } else { term < &b.term[..] });
            lower_ok && upper_ok
        }
    };
    let docs_of = |m: &TermMatch| -> BTreeSet<usize> { stored.iter().filter(|(t, _)| matches(t, m)).map(|(_, d)| *d).collect() };
    let mut out = BTreeSet::new();
    for group in &plan.groups {
        let mut sets = group.iter().map(docs_of);
        let first = sets.next().unwrap_or_default();
        out.extend(sets.fold(first, |acc, s| &acc & &s));
    }
    out
}

fn scalar_value(s: &Scalar) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Boolean(*b),
        Scalar::Number(n) => Value::Number(*n),
        Scalar::Text(t) => Value::Text(t.clone()),
    }
}

/// The meaning of each operator, written plainly.
fn truth(v: &Value, op: Op, operands: &[Value]) -> bool {
    use std::cmp::Ordering::*;
    let cmp = |a: &Value, b: &Value| match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        (Value::Boolean(x), Value::Boolean(y)) => Some(x.cmp(y)),
        _ => None,
    };
    let words = |t: &str| -> BTreeSet<String> {
        t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    };
    match op {
        Op::Eq => cmp(v, &operands[0]) == Some(Equal),
        Op::Ne => {
            matches!(cmp(v, &operands[0]), Some(Less | Greater))
                || (!matches!(v, Value::Null | Value::List(_)) && cmp(v, &operands[0]).is_none())
        }
        Op::Gt => cmp(v, &operands[0]) == Some(Greater),
        Op::Gte => matches!(cmp(v, &operands[0]), Some(Greater | Equal)),
        Op::Lt => cmp(v, &operands[0]) == Some(Less),
        Op::Lte => matches!(cmp(v, &operands[0]), Some(Less | Equal)),
        Op::In => operands.iter().any(|o| cmp(v, o) == Some(Equal)),
        Op::Prefix => matches!((v, &operands[0]), (Value::Text(t), Value::Text(p)) if t.starts_with(p.as_str())),
        Op::Exists => !matches!(v, Value::Null),
        Op::Contains => match v {
            Value::List(items) => items.iter().any(|s| cmp(&scalar_value(s), &operands[0]) == Some(Equal)),
            _ => false,
        },
        Op::Match => match (v, &operands[0]) {
            (Value::Text(t), Value::Text(q)) => words(q).is_subset(&words(t)),
            _ => false,
        },
    }
}

/// Index `docs` with `index`, then check every condition: an exact lookup
/// finds exactly the matching docs, an inexact one at least them.
fn check_index(index: &str, docs: &[Value], conditions: &[(Op, Vec<Value>)]) {
    let batches: Vec<Vec<Value>> = docs.iter().map(|d| vec![d.clone()]).collect();
    check_compound(index, &batches, conditions);
}

/// As [`check_index`], for documents of several fields; conditions are on
/// the first.
fn check_compound(index: &str, batches: &[Vec<Value>], conditions: &[(Op, Vec<Value>)]) {
    let plugin = builtins().index(index).unwrap();
    let docs: Vec<Value> = batches.iter().map(|b| b[0].clone()).collect();
    let fields = batches[0].len() as u32;
    let terms = plugin.terms(batches).unwrap();
    let stored: Vec<(Vec<u8>, usize)> = terms.into_iter().enumerate().flat_map(|(d, ts)| ts.into_iter().map(move |t| (t, d))).collect();
    let mut served = 0;
    for (op, operands) in conditions {
        let condition = Condition { field: 0, fields, op: *op, operands: operands.clone() };
        let Some(plan) = plugin.lookup(&condition).unwrap() else { continue };
        served += 1;
        let found = run_lookup(&stored, &plan);
        let want: BTreeSet<usize> = (0..docs.len()).filter(|&d| truth(&docs[d], *op, operands)).collect();
        if plan.exact {
            assert_eq!(found, want, "{index} {op:?} {operands:?}");
        } else {
            assert!(found.is_superset(&want), "{index} {op:?} {operands:?}: missed {:?}", &want - &found);
        }
    }
    assert!(served > 0, "{index} served no condition");
}

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => Value::Null,
        1 => Value::Boolean(rng.random()),
        2..=5 => Value::Number((rng.random_range(-20..20) as f64) / 4.0),
        _ => Value::Text(["", "a", "ab", "abc", "b", "ba", "z\0", "Zed", "é"][rng.random_range(0..9)].into()),
    }
}

fn scalar_conditions(rng: &mut StdRng) -> Vec<(Op, Vec<Value>)> {
    let mut out = Vec::new();
    for _ in 0..60 {
        let mut v = random_scalar(rng);
        if v == Value::Null {
            v = Value::Number(0.0);
        }
        let op = [Op::Eq, Op::Ne, Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::Prefix, Op::Exists][rng.random_range(0..8)];
        let operands = match op {
            Op::Exists => vec![],
            Op::Prefix => vec![Value::Text(["", "a", "b", "Z", "z\0"][rng.random_range(0..5)].into())],
            _ => vec![v],
        };
        out.push((op, operands));
        let ins: Vec<Value> = (0..3).map(|_| random_scalar(rng)).filter(|v| *v != Value::Null).collect();
        if !ins.is_empty() {
            out.push((Op::In, ins));
        }
    }
    out
}

#[test]
fn btree_and_hash_terms_answer_their_conditions() {
    let mut rng = StdRng::seed_from_u64(7);
    let docs: Vec<Value> = (0..400).map(|_| random_scalar(&mut rng)).collect();
    let conditions = scalar_conditions(&mut rng);
    check_index("btree", &docs, &conditions);
    check_index("hash", &docs, &conditions);
    // Over two fields, with nulls in either: conditions on the first still
    // find exactly the matching objects.
    let pairs: Vec<Vec<Value>> = docs.iter().map(|d| vec![d.clone(), random_scalar(&mut rng)]).collect();
    check_compound("btree", &pairs, &conditions);
}

#[test]
fn fulltext_and_tags_terms_answer_their_conditions() {
    let mut rng = StdRng::seed_from_u64(11);
    let vocabulary = ["Quick", "brown", "fox", "jumps", "LAZY", "dog", "llama-70b", "über"];
    let text = |rng: &mut StdRng| -> String {
        (0..rng.random_range(0..6)).map(|_| vocabulary[rng.random_range(0..vocabulary.len())]).collect::<Vec<_>>().join(" ")
    };
    let docs: Vec<Value> = (0..300).map(|_| Value::Text(text(&mut rng))).collect();
    let conditions: Vec<(Op, Vec<Value>)> = (0..40).map(|_| (Op::Match, vec![Value::Text(text(&mut rng).to_uppercase())])).collect();
    check_index("fulltext", &docs, &conditions);

    let tags = ["gpu", "cpu", "eu", "us", "prod"];
    let docs: Vec<Value> = (0..300)
        .map(|_| {
            let n = rng.random_range(0..4);
            Value::List((0..n).map(|_| Scalar::Text(tags[rng.random_range(0..tags.len())].into())).collect())
        })
        .collect();
    let conditions: Vec<(Op, Vec<Value>)> = tags.iter().map(|t| (Op::Contains, vec![Value::Text((*t).into())])).collect();
    check_index("tags", &docs, &conditions);
}

// ---- the host's limits, with the misbehaving fixture ----

fn with_fixture(dir: &std::path::Path) -> Config {
    let mut c = config_in(dir);
    c.wasm.call_timeout = Duration::from_millis(50);
    c.wasm.memory_limit = Size(16 << 20);
    c.wasm.max_instances = 2;
    c.plugins.push(PluginDecl {
        name: "fixture".into(),
        kind: strata_config::PluginKind::NodeSelector,
        builtin: Some("fixture".into()),
        path: None,
        config: Default::default(),
        call_timeout: None,
        memory_limit: None,
    });
    c
}

#[test]
fn a_misbehaving_plugin_is_stopped_and_the_next_call_works() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = Plugins::load(&with_fixture(dir.path())).unwrap();
    let fixture = plugins.selector("fixture").unwrap();
    let t = Topology::new(equal_nodes(3));
    let call = |key: &str| fixture.select(&t, &all(&t), &object(key), &policy(2));
    let fine = || assert_eq!(call("ok").unwrap(), [0, 1], "the call after a failure works");

    let started = Instant::now();
    let err = call("loop").unwrap_err();
    assert!(matches!(err, PluginError::Timeout { ref plugin, .. } if plugin == "fixture"), "{err}");
    // Stopped at the deadline, not long after (generous for a loaded machine).
    assert!(started.elapsed() < Duration::from_millis(50 * 10), "{:?}", started.elapsed());
    fine();

    let err = call("alloc").unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { limit, .. } if limit == 16 << 20), "{err}");
    fine();

    let err = call("trap").unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("fixture"), "{err}");
    fine();

    // Sleeping happens inside a host call, where epochs cannot reach: the
    // host refuses it outright.
    let started = Instant::now();
    let err = call("sleep").unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }) && err.to_string().contains("may not sleep"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    fine();

    call("log").unwrap();
    call("escape").expect("no filesystem, environment, clock or network inside a plugin");
    let stats = fixture.stats();
    assert_eq!((stats.timeouts, stats.memory_refusals, stats.traps), (1, 1, 2));
    assert!(stats.instances_live <= 2);
}

#[test]
fn calls_run_concurrently_within_the_instance_cap() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = Plugins::load(&with_fixture(dir.path())).unwrap();
    let t = Topology::new(equal_nodes(5));
    std::thread::scope(|s| {
        for th in 0..4 {
            let (plugins, t) = (&plugins, &t);
            s.spawn(move || {
                for k in 0..200 {
                    let got = plugins.selector("fixture").unwrap().select(t, &all(t), &object(&format!("{th}-{k}")), &policy(3));
                    assert_eq!(got.unwrap(), [0, 1, 2]);
                }
            });
        }
    });
    let stats = plugins.selector("fixture").unwrap().stats();
    assert!(stats.instantiations <= 2, "{stats:?}");
    assert_eq!(stats.calls, 801, "800 selects and the info call at load");
}

// ---- loading ----

fn decl(name: &str, kind: Kind, path: Option<std::path::PathBuf>, builtin: Option<&str>) -> PluginDecl {
    PluginDecl {
        name: name.into(),
        kind: match kind {
            Kind::NodeSelector => strata_config::PluginKind::NodeSelector,
            Kind::ReplicationStrategy => strata_config::PluginKind::ReplicationStrategy,
            Kind::IndexType => strata_config::PluginKind::IndexType,
        },
        builtin: builtin.map(Into::into),
        path,
        config: Default::default(),
        call_timeout: None,
        memory_limit: None,
    }
}

fn builtin_wasm(name: &str) -> &'static [u8] {
    BUILTINS.iter().find(|b| b.name == name).unwrap().wasm
}

#[test]
fn a_component_of_the_wrong_kind_is_refused_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("btree.wasm");
    std::fs::write(&file, builtin_wasm("btree")).unwrap();
    let mut c = config_in(dir.path());
    c.plugins.push(decl("sneaky", Kind::NodeSelector, Some(file), None));
    let err = Plugins::load(&c).unwrap_err().to_string();
    assert!(err.contains("`sneaky` does not implement the node-selector world"), "{err}");
    assert!(err.contains("strata:plugin/selector@0.1.0"), "{err}");
}

#[test]
fn garbage_and_bad_config_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junk.wasm");
    std::fs::write(&file, b"not wasm at all").unwrap();
    let mut c = config_in(dir.path());
    c.plugins.push(decl("junk", Kind::IndexType, Some(file), None));
    let err = Plugins::load(&c).unwrap_err();
    assert!(matches!(err, PluginError::Compile { ref plugin, .. } if plugin == "junk"), "{err}");

    let mut c = config_in(dir.path());
    let mut d = decl("heavy", Kind::NodeSelector, None, Some("rendezvous"));
    d.config.insert("weight".into(), "heavy".into());
    c.plugins.push(d);
    let err = Plugins::load(&c).unwrap_err().to_string();
    assert!(err.contains("init refused its config") && err.contains("weight"), "{err}");

    let mut c = config_in(dir.path());
    c.plugins.push(decl("x", Kind::IndexType, None, Some("rendezvous")));
    let err = Plugins::load(&c).unwrap_err().to_string();
    assert!(err.contains("built-in `rendezvous` is a node-selector"), "{err}");
}

#[test]
fn a_restart_loads_compiled_components_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first = Plugins::load(&config_in(dir.path())).unwrap();
    assert_eq!(first.load_report().compiled, BUILTINS.len() - 1);
    drop(first);
    let second = Plugins::load(&config_in(dir.path())).unwrap();
    assert_eq!((second.load_report().cached, second.load_report().compiled), (BUILTINS.len() - 1, 0));
}

#[test]
fn builtin_config_flattens_to_dotted_keys() {
    let mut d = decl("x", Kind::NodeSelector, None, Some("rendezvous"));
    d.config = serde_json::from_str(r#"{"a": {"b": 1, "c": "x"}, "d": [1, 2], "e": true}"#).unwrap();
    assert_eq!(
        flatten_config(&d),
        [("a.b".into(), "1".into()), ("a.c".into(), "x".into()), ("d".into(), "[1,2]".into()), ("e".into(), "true".into())]
    );
}
