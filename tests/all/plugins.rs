//! Plugins through the real server: the built-ins listed and called, a
//! misbehaving plugin the server survives, a Rust plugin built from the SDK
//! template and a Python plugin, both loaded from paths in the TOML, and bad
//! components refused at start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use strata::api::pb;
use tonic::Code;

use crate::common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn node(id: &str, zone: &str, available: u64, labels: &[(&str, &str)]) -> pb::Node {
    pb::Node {
        id: id.into(),
        region: "r1".into(),
        zone: zone.into(),
        capacity_total: 1 << 40,
        capacity_available: available,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

fn place(selector: &str, key: &str, nodes: Vec<pb::Node>, replicas: u32) -> pb::PlaceRequest {
    pb::PlaceRequest { selector: selector.into(), bucket: "models".into(), key: key.into(), nodes, replicas, ..Default::default() }
}

fn five_nodes() -> Vec<pb::Node> {
    vec![
        node("a1", "a", 100, &[]),
        node("a2", "a", 100, &[]),
        node("b1", "b", 100, &[]),
        node("b2", "b", 100, &[]),
        node("c1", "c", 100, &[]),
    ]
}

#[tokio::test]
async fn builtins_are_listed_and_called_through_the_server() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let mut req = place("zone-aware", "llama/weights-00001", five_nodes(), 3);
    req.strategy = "quorum".into();
    let r = c.place(req).await.unwrap().into_inner();
    let zones: std::collections::BTreeSet<&str> = r.targets.iter().map(|t| &t[..1]).collect();
    assert_eq!(zones.len(), 3, "{r:?}");
    assert_eq!((r.sync_targets.len(), r.acks_required), (3, 2));

    let out = s.cli(&["plugin", "ls", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for b in [
        "rendezvous",
        "least-loaded",
        "zone-aware",
        "eager",
        "lazy",
        "geographic",
        "quorum",
        "larger-wins",
        "btree",
        "hash",
        "fulltext",
        "tags",
    ] {
        assert!(names.contains(&b), "{b} missing from {names:?}");
    }
    assert!(!names.contains(&"fixture"), "the fixture loads only when declared");
    let zone = list.as_array().unwrap().iter().find(|p| p["name"] == "zone-aware").unwrap();
    assert_eq!((zone["kind"].as_str(), zone["version"].as_str()), (Some("node-selector"), Some("0.1.0")));
    assert!(zone["calls"].as_u64().unwrap() >= 2, "{zone}");

    // Bad requests are INVALID_ARGUMENT with what to fix.
    let mut nan = place("rendezvous", "k", five_nodes(), 2);
    nan.nodes[1].load = f64::NAN;
    let mut dup = place("rendezvous", "k", five_nodes(), 2);
    dup.nodes[1].id = "a1".into();
    let mut min = place("rendezvous", "k", five_nodes(), 2);
    min.min_replicas = Some(3);
    for (req, says) in [(nan, "load"), (dup, "distinct"), (min, "min_replicas"), (place("rendezvous", "k", vec![], 1), "at least one node")]
    {
        let err = c.place(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(says), "{}", err.message());
    }

    let out = s.cli(&["plugin", "place", "k", "--selector", "nope", "--node", "id=a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node-selector plugin named `nope`"));
    let out = s.cli(&["plugin", "place", "k", "--node", "id=a,zone"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not key=value"));
}

const FIXTURE: &str = r#"
[wasm]
call_timeout = "100ms"
memory_limit = "16MiB"
[[plugins]]
name = "fixture"
kind = "node-selector"
builtin = "fixture"
"#;

#[tokio::test]
async fn a_misbehaving_plugin_is_stopped_and_the_server_keeps_serving() {
    let s = TestServer::start(FIXTURE);
    let mut c = s.client().await;
    let nodes = five_nodes();
    for (key, code, says) in
        [("loop", Code::DeadlineExceeded, "deadline"), ("alloc", Code::ResourceExhausted, "memory"), ("trap", Code::Internal, "trapped")]
    {
        let err = c.place(place("fixture", key, nodes.clone(), 2)).await.unwrap_err();
        assert_eq!(err.code(), code, "{key}: {err:?}");
        assert!(err.message().contains("fixture") && err.message().contains(says), "{key}: {}", err.message());
        // The next call gets a fresh instance and works.
        let ok = c.place(place("fixture", "fine", nodes.clone(), 2)).await.unwrap().into_inner();
        assert_eq!(ok.targets, ["a1", "a2"]);
    }
    put_key(&mut c, "still-here", b"data").await;
    assert_eq!(get_key(&mut c, "still-here").await.unwrap(), b"data");
    let list = c.list_plugins(pb::ListPluginsRequest {}).await.unwrap().into_inner();
    let f = list.plugins.iter().find(|p| p.name == "fixture").unwrap();
    assert_eq!((f.timeouts, f.memory_refusals, f.traps), (1, 1, 1));
}

/// The SDK template, built for wasm32-wasip2 beside the built-ins.
fn template_component() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let target = strata_bin().parent().unwrap().parent().unwrap().join("wasm-plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(repo().join("sdk/template/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo");
        assert!(status.success(), "building sdk/template failed");
        target.join("wasm32-wasip2/release/strata_plugin_template.wasm")
    })
}

#[tokio::test]
async fn a_rust_plugin_from_a_path_is_loaded_with_its_config() {
    let wasm = template_component();
    let s = TestServer::start(&format!(
        "[[plugins]]\nname = \"first\"\nkind = \"node-selector\"\npath = {wasm:?}\n[plugins.config]\navoid_zone = \"a\"\n"
    ));
    let mut c = s.client().await;
    let r = c.place(place("first", "k", five_nodes(), 2)).await.unwrap().into_inner();
    assert_eq!(r.targets, ["b1", "b2"], "zone a avoided, the rest in order");
    let list = c.list_plugins(pb::ListPluginsRequest {}).await.unwrap().into_inner();
    let first = list.plugins.iter().find(|p| p.name == "first").unwrap();
    assert_eq!(first.source, wasm.display().to_string());
    assert_eq!(first.description, "the first healthy candidates, in order (SDK template)");
}

/// The componentize-py release the Python plugin is built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The componentize-py command, installed with pip when missing so the
/// suite runs on a machine that has only Python.
fn componentize_py() -> PathBuf {
    pip_tool("componentize-py", COMPONENTIZE_PY)
}

/// The Python plugin, built with componentize-py (installed if missing).
fn python_component() -> &'static Path {
    static WASM: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &WASM
        .get_or_init(|| {
            let tool = componentize_py();
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("labels.wasm");
            let result = Command::new(tool)
                .args(["-d", "../../wit", "-w", "node-selector", "componentize", "app", "-o"])
                .arg(&out)
                .current_dir(repo().join("plugins/python-labels"))
                .stdout(Stdio::null())
                .status();
            match result {
                Ok(s) if s.success() => {}
                other => panic!("componentize-py failed ({other:?}); install it with `python3 -m pip install {COMPONENTIZE_PY}`"),
            }
            (dir, out)
        })
        .1
}

#[tokio::test]
async fn a_python_plugin_is_loaded_and_called() {
    let wasm = python_component();
    let s = TestServer::start(&format!(
        "[[plugins]]\nname = \"labels\"\nkind = \"node-selector\"\npath = {wasm:?}\ncall_timeout = \"2s\"\n[plugins.config]\nrequire = \"gpu=true\"\n"
    ));
    let mut c = s.client().await;
    let nodes = vec![
        node("cpu1", "a", 900, &[("gpu", "false")]),
        node("gpu1", "a", 100, &[("gpu", "true")]),
        node("gpu2", "b", 500, &[("gpu", "true"), ("tier", "hot")]),
        node("gpu3", "c", 300, &[("gpu", "true")]),
    ];
    let r = c.place(place("labels", "k", nodes.clone(), 2)).await.unwrap().into_inner();
    assert_eq!(r.targets, ["gpu2", "gpu3"], "gpu nodes, most free first");
    // The bucket policy adds a requirement.
    let mut req = place("labels", "k", nodes.clone(), 1);
    req.params.insert("require".into(), "tier=hot".into());
    assert_eq!(c.place(req).await.unwrap().into_inner().targets, ["gpu2"]);
    // Too few matches is the plugin's own error, mapped to a status.
    let mut req = place("labels", "k", nodes, 2);
    req.params.insert("require".into(), "tier=hot".into());
    let err = c.place(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("1 nodes match"), "{}", err.message());
}

/// The Python plugin changed to prefer the nodes with the *least* free
/// space, as version 0.2.0: the same world, another answer.
fn python_component_v2() -> &'static Path {
    static WASM: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &WASM
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let app = std::fs::read_to_string(repo().join("plugins/python-labels/app.py")).unwrap();
            let v2 = app
                .replace("version=\"0.1.0\"", "version=\"0.2.0\"")
                .replace("(-listed[i].capacity_available", "(listed[i].capacity_available");
            assert_ne!(app, v2);
            std::fs::write(dir.path().join("app.py"), v2).unwrap();
            let out = dir.path().join("labels2.wasm");
            let status = Command::new(componentize_py())
                .arg("-d")
                .arg(repo().join("wit"))
                .args(["-w", "node-selector", "componentize", "app", "-o"])
                .arg(&out)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "componentize-py failed");
            (dir, out)
        })
        .1
}

#[tokio::test]
async fn a_plugin_reloads_under_a_stream_of_placements_without_a_failed_call() {
    let (v1, v2) = (python_component(), python_component_v2());
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("labels.wasm");
    replace_file(v1, &live);
    let s = TestServer::start(&format!(
        "[[plugins]]\nname = \"labels\"\nkind = \"node-selector\"\npath = {live:?}\ncall_timeout = \"5s\"\n[plugins.config]\nrequire = \"gpu=true\"\n"
    ));
    let nodes = vec![
        node("gpu1", "a", 100, &[("gpu", "true")]),
        node("gpu2", "b", 500, &[("gpu", "true")]),
        node("gpu3", "c", 300, &[("gpu", "true")]),
        node("cpu1", "a", 900, &[("gpu", "false")]),
    ];
    let (old, new) = (vec!["gpu2", "gpu3"], vec!["gpu1", "gpu3"]);
    let version = |s: &TestServer| {
        let out = s.cli(&["plugin", "ls", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array().unwrap().iter().find(|p| p["name"] == "labels").unwrap()["version"].as_str().unwrap().to_string()
    };
    assert_eq!(version(&s), "0.1.0");

    // Four clients place without a pause; every answer is kept.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for t in 0..4 {
        let (mut c, stop, nodes) = (s.client().await, stop.clone(), nodes.clone());
        callers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let r = c.place(place("labels", &format!("{t}-{n}"), nodes.clone(), 2)).await;
                answers.push((started, r.map(|r| r.into_inner().targets)));
                n += 1;
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    replace_file(v2, &live);
    let out = s.cli(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("plugin labels") && said.contains("0.2.0"), "{said}");
    let reloaded = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut before, mut after) = (0, 0);
    for c in callers {
        for (started, r) in c.await.unwrap() {
            let targets = r.expect("no placement fails during a reload");
            assert!(targets == old || targets == new, "{targets:?}");
            if started > reloaded {
                assert_eq!(targets, new, "a call made after the reload uses the new component");
                after += 1;
            } else {
                before += 1;
            }
        }
    }
    assert!(before > 0 && after > 0, "calls before ({before}) and after ({after}) the reload");
    assert_eq!(version(&s), "0.2.0");

    // A broken component is refused; the one serving stays.
    std::fs::write(&live, b"not a component").unwrap();
    let out = s.cli(&["reload"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("REFUSED") && said.contains("labels") && said.contains("old component stays"), "{said}");
    let mut c = s.client().await;
    assert_eq!(c.place(place("labels", "k", nodes.clone(), 2)).await.unwrap().into_inner().targets, new);
    assert_eq!(version(&s), "0.2.0");

    // SIGHUP does the same.
    replace_file(v1, &live);
    let pid = s.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while version(&s) != "0.1.0" {
        assert!(std::time::Instant::now() < deadline, "SIGHUP did not reload the plugin");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.place(place("labels", "k", nodes, 2)).await.unwrap().into_inner().targets, old);
}

fn serve_fails(extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbase_path = {:?}\n[wasm]\ncache_dir = {:?}\n{extra}",
            dir.path().join("d"),
            plugin_cache()
        ),
    )
    .unwrap();
    let mut child =
        Command::new(strata_bin()).args(["serve", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let out = child.wait_with_output().unwrap();
            return String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the server started with a bad plugin: {extra}");
}

#[test]
fn bad_plugins_stop_the_server_with_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    let err = serve_fails(&format!("[[plugins]]\nname = \"junk\"\nkind = \"index-type\"\npath = {junk:?}\n"));
    assert!(err.contains("plugin `junk`") && err.contains("not a WebAssembly component"), "{err}");

    let err = serve_fails(&format!("[[plugins]]\nname = \"wrong\"\nkind = \"index-type\"\npath = {:?}\n", template_component()));
    assert!(err.contains("`wrong` does not implement the index-type world"), "{err}");
    assert!(err.contains("strata:plugin/indexer@0.1.0"), "{err}");

    let err = serve_fails(
        "[[plugins]]\nname = \"x\"\nkind = \"node-selector\"\nbuiltin = \"rendezvous\"\n[plugins.config]\nweight = \"heavy\"\n",
    );
    assert!(err.contains("plugin `x`: init refused its config") && err.contains("weight"), "{err}");

    let err = serve_fails("[[plugins]]\nname = \"hash\"\nkind = \"node-selector\"\nbuiltin = \"rendezvous\"\n");
    assert!(err.contains("plugin `hash`: that name belongs to a built-in"), "{err}");

    let err = serve_fails("[[plugins]]\nname = \"x\"\nkind = \"node-selector\"\npath = \"/nonexistent/p.wasm\"\n");
    assert!(err.contains("/nonexistent/p.wasm"), "{err}");
}
