//! Model storage over gRPC and the CLI: an Ollama models tree imported,
//! pulled through the registry, joined by a model Ollama's way pushes,
//! exported byte-identical; `ls`, `show`, `tag`, `rm`; bad trees refused
//! with nothing stored.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;
use crate::registry::{gguf_file, http, push_model, start, text};

/// Every file under `dir` (hidden ones too), by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn blob(dir: &Path, data: &[u8], media_type: &str) -> Value {
    let hex = sha256_hex(data);
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::write(dir.join("blobs").join(format!("sha256-{hex}")), data).unwrap();
    json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()})
}

/// Writes a manifest as Ollama does, at manifests/<host>/<repo>/<tag>;
/// indented, so a re-serialised copy would differ. Returns its bytes.
fn manifest(dir: &Path, host: &str, repo: &str, tag: &str, config: Value, layers: Vec<Value>) -> Vec<u8> {
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": config, "layers": layers});
    let bytes = serde_json::to_vec_pretty(&m).unwrap();
    let p = dir.join("manifests").join(host).join(repo).join(tag);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, &bytes).unwrap();
    bytes
}

fn json_out(o: std::process::Output) -> Value {
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn an_ollama_tree_is_imported_pulled_and_exported_byte_identical() {
    let (s, reg) = start("anonymous = \"push\"\n");
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let license = blob(&a, b"MIT License\n...", "application/vnd.ollama.image.license");
    let model = blob(&a, &gguf_file("llama", 15, 3_000_000), "application/vnd.ollama.image.model");
    let template = blob(&a, b"{{ .Prompt }}", "application/vnd.ollama.image.template");
    let params = blob(&a, br#"{"stop":["<|eot_id|>"]}"#, "application/vnd.ollama.image.params");
    let config = blob(&a, br#"{"model_format":"gguf","model_family":"llama"}"#, "application/vnd.docker.container.image.v1+json");
    let llama =
        manifest(&a, "registry.ollama.ai", "library/llama3", "8b", config.clone(), vec![model.clone(), template, params, license.clone()]);
    manifest(&a, "registry.ollama.ai", "library/llama3", "latest", config.clone(), {
        let v: Value = serde_json::from_slice(&llama).unwrap();
        v["layers"].as_array().unwrap().clone()
    });
    let tiny_layer = gguf_file("qwen2", 7, 500_000);
    let tiny = blob(&a, &tiny_layer, "application/vnd.ollama.image.model");
    manifest(&a, "127.0.0.1:11434", "me/tiny", "q8_0", config.clone(), vec![tiny, license.clone()]);
    // Ollama keeps a Hugging Face name's case; OCI names are lowercase.
    let hf_layer = gguf_file("phi3", 2, 300_000);
    let hf = blob(&a, &hf_layer, "application/vnd.ollama.image.model");
    manifest(&a, "hf.co", "Someone/Phi-3-GGUF", "Q4_K_M", config, vec![hf, license.clone()]);
    let original = tree(&a);

    // Import (in path order: 127.0.0.1:11434 first): every blob sent once;
    // llama3 gets the config and license me/tiny sent by a link.
    let v = json_out(s.cli(&["models", "import", a.to_str().unwrap(), "--json"]));
    assert_eq!(names(&v), ["library/llama3:8b", "library/llama3:latest", "me/tiny:q8_0", "someone/phi-3-gguf:Q4_K_M"], "{v}");
    let row = |n: &str| v.as_array().unwrap().iter().find(|m| m["name"] == n).unwrap().clone();
    assert!(row("library/llama3:8b")["sent_bytes"].as_u64().unwrap() > 3_000_000, "{v}");
    assert_eq!(row("library/llama3:latest")["sent_bytes"], 0, "{v}");
    assert_eq!(row("library/llama3:8b")["linked"], 2, "config and license are linked, not sent: {v}");
    assert_eq!(row("someone/phi-3-gguf:Q4_K_M")["linked"], 2, "{v}");
    // Again: nothing is sent.
    let again = json_out(s.cli(&["models", "import", a.to_str().unwrap(), "--json"]));
    assert!(again.as_array().unwrap().iter().all(|m| m["sent_bytes"] == 0), "{again}");

    // ls and show see them, with what the GGUF header says.
    let ls = json_out(s.cli(&["models", "ls", "--json"]));
    assert_eq!(names(&ls), ["library/llama3:8b", "library/llama3:latest", "me/tiny:q8_0", "someone/phi-3-gguf:Q4_K_M"]);
    let l = ls.as_array().unwrap().iter().find(|m| m["name"] == "library/llama3:8b").unwrap();
    assert_eq!(l["attributes"]["gguf"]["architecture"], "llama", "{l}");
    assert_eq!(l["attributes"]["ollama.host"], "registry.ollama.ai", "{l}");
    let shown = json_out(s.cli(&["models", "show", "llama3:8b", "--json"]));
    assert_eq!(shown["layers"].as_array().unwrap().len(), 4, "{shown}");
    assert_eq!(serde_json::to_vec_pretty(&shown["manifest"]).unwrap(), llama);
    let human = s.cli(&["models", "show", "me/tiny:q8_0"]);
    assert!(text(&human).contains("qwen2"), "{}", text(&human));

    // Pulled through the registry: the manifest and every blob as imported.
    let (st, _, body) = http("GET", &format!("http://{reg}/v2/library/llama3/manifests/8b"), &[], None);
    assert_eq!((st, body == llama), (200, true));
    for (path, bytes) in original.iter().filter(|(p, _)| p.starts_with("blobs/")) {
        let digest = path.trim_start_matches("blobs/").replace('-', ":");
        let repo = match bytes.len() {
            500_000 => "me/tiny",
            300_000 => "someone/phi-3-gguf",
            _ => "library/llama3",
        };
        let (st, _, body) = http("GET", &format!("http://{reg}/v2/{repo}/blobs/{digest}"), &[], None);
        assert_eq!((st, body == *bytes), (200, true), "{path}");
    }

    // A model pushed Ollama's way joins them.
    let pushed_layer = gguf_file("gemma", 1, 400_000);
    push_model(&reg, "library/pushed", "v1", &pushed_layer, "application/vnd.ollama.image.model");

    // Export: the tree again, byte-identical, plus the pushed model.
    let v = json_out(s.cli(&["models", "export", b.to_str().unwrap(), "--json"]));
    assert_eq!(
        names(&v),
        ["library/llama3:8b", "library/llama3:latest", "library/pushed:v1", "me/tiny:q8_0", "someone/phi-3-gguf:Q4_K_M"],
        "{v}"
    );
    let exported = tree(&b);
    for (path, bytes) in &original {
        assert!(exported.get(path) == Some(bytes), "{path} is exported byte-identical");
    }
    let (_, _, pushed_manifest) = http("GET", &format!("http://{reg}/v2/library/pushed/manifests/v1"), &[], None);
    assert_eq!(exported["manifests/registry.ollama.ai/library/pushed/v1"], pushed_manifest);
    assert_eq!(exported[&format!("blobs/sha256-{}", sha256_hex(&pushed_layer))], pushed_layer);
    assert!(exported.keys().all(|k| !k.contains("partial")), "no temporary files are left");
    // Again: whole blobs are kept; a damaged one is fetched anew.
    let v = json_out(s.cli(&["models", "export", b.to_str().unwrap(), "--json"]));
    assert!(v.as_array().unwrap().iter().all(|m| m["fetched_bytes"] == 0), "{v}");
    let damaged = b.join(format!("blobs/sha256-{}", sha256_hex(&tiny_layer)));
    flip_a_byte(&damaged, 1000);
    let v = json_out(s.cli(&["models", "export", b.to_str().unwrap(), "me/tiny:q8_0", "--json"]));
    assert_eq!(v[0]["fetched_bytes"], 500_000, "{v}");
    assert_eq!(std::fs::read(&damaged).unwrap(), tiny_layer);

    // tag and rm: a manifest goes with its last tag; layers another
    // repository references stay readable there.
    let v = json_out(s.cli(&["models", "tag", "llama3:8b", "me/copy:v2", "--json"]));
    assert_eq!(v["name"], "me/copy:v2", "{v}");
    let v = json_out(s.cli(&["models", "rm", "llama3:8b", "--json"]));
    assert_eq!(v[0]["manifest_removed"], false, "llama3:latest still names it: {v}");
    let v = json_out(s.cli(&["models", "rm", "llama3", "--json"]));
    assert_eq!(v[0]["manifest_removed"], true, "{v}");
    let (st, _, _) = http("GET", &format!("http://{reg}/v2/library/llama3/blobs/{}", model["digest"].as_str().unwrap()), &[], None);
    assert_eq!(st, 404, "the repository no longer links the layer");
    let (st, _, body) = http("GET", &format!("http://{reg}/v2/me/copy/blobs/{}", model["digest"].as_str().unwrap()), &[], None);
    assert_eq!((st, sha256_hex(&body)), (200, model["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string()));
    let o = s.cli(&["models", "rm", "llama3:8b"]);
    assert!(!o.status.success() && text(&o).contains("there is no model library/llama3:8b"), "{}", text(&o));
    // A digest removes that manifest and every tag naming it.
    let tiny_digest = json_out(s.cli(&["models", "show", "me/tiny:q8_0", "--json"]))["model"]["digest"].as_str().unwrap().to_string();
    json_out(s.cli(&["models", "tag", "me/tiny:q8_0", "me/tiny:other", "--json"]));
    json_out(s.cli(&["models", "rm", &format!("me/tiny@{tiny_digest}"), "--json"]));
    let ls = json_out(s.cli(&["models", "ls", "me/", "--json"]));
    assert_eq!(names(&ls), ["me/copy:v2"], "{ls}");
    let o = s.cli(&["models", "show", "nosuch/model:x"]);
    assert!(!o.status.success() && text(&o).contains("there is no model nosuch/model:x"), "{}", text(&o));
}

#[tokio::test]
async fn a_bad_tree_is_refused_with_nothing_stored() {
    let (s, _reg) = start("anonymous = \"pull\"\n");
    let work = tempfile::tempdir().unwrap();
    let config = br#"{"model_format":"gguf"}"#;
    let bad = |name: &str, f: &dyn Fn(&Path)| {
        let dir = work.path().join(name);
        f(&dir);
        let o = s.cli(&["models", "import", dir.to_str().unwrap()]);
        assert!(!o.status.success(), "{name}: {}", text(&o));
        text(&o)
    };
    // Not an OCI name even in lowercase: refused, naming the file.
    let msg = bad("plus", &|d| {
        let c = blob(d, config, "application/vnd.docker.container.image.v1+json");
        let l = blob(d, b"layer", "application/vnd.ollama.image.model");
        manifest(d, "hf.co", "someone/a+b", "Q4_K_M", c, vec![l]);
    });
    assert!(msg.contains("someone/a+b") && msg.contains("components hold"), "{msg}");
    // Two hosts' models of one name would be one model here: refused.
    let msg = bad("twohosts", &|d| {
        let c = blob(d, config, "application/vnd.docker.container.image.v1+json");
        let l = blob(d, b"layer", "application/vnd.ollama.image.model");
        manifest(d, "h1.example", "dup/m", "t", c.clone(), vec![l.clone()]);
        manifest(d, "h2.example", "dup/m", "t", c, vec![l]);
    });
    assert!(msg.contains("h1.example") && msg.contains("h2.example") && msg.contains("dup/m:t"), "{msg}");
    // A blob shorter than its manifest says.
    let msg = bad("short", &|d| {
        let c = blob(d, config, "application/vnd.docker.container.image.v1+json");
        let mut l = blob(d, b"layer", "application/vnd.ollama.image.model");
        l["size"] = json!(6);
        manifest(d, "registry.ollama.ai", "library/short", "latest", c, vec![l]);
    });
    assert!(msg.contains("holds 5 bytes, the manifest says 6"), "{msg}");
    // A blob whose bytes are not its digest: the server refuses it.
    let msg = bad("forged", &|d| {
        let c = blob(d, config, "application/vnd.docker.container.image.v1+json");
        let l = blob(d, b"layer", "application/vnd.ollama.image.model");
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        std::fs::write(d.join(format!("blobs/sha256-{hex}")), b"LAYER").unwrap();
        manifest(d, "registry.ollama.ai", "library/forged", "latest", c, vec![l]);
    });
    assert!(msg.contains("not sha256:"), "{msg}");
    // Not an Ollama directory at all.
    let msg = bad("empty", &|d| std::fs::create_dir_all(d).unwrap());
    assert!(msg.contains("no manifests/ directory"), "{msg}");
    let ls = json_out(s.cli(&["models", "ls", "--json"]));
    assert_eq!(ls, json!([]), "nothing was stored");
}

/// The registry's address on `s` once it printed it.
fn registry_of(s: &TestServer) -> String {
    for _ in 0..200 {
        if let Some(a) = s.registry.lock().unwrap().clone() {
            return a;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no registry address");
}

/// On a cluster any node serves any model: a tree imported through one
/// node, with one replica per blob, is pulled from every node's registry
/// and exported through another node byte-identical.
#[tokio::test]
async fn on_a_cluster_any_node_serves_any_model() {
    let net = crate::cluster::Net::start(3, "[registry]\nlisten = \"127.0.0.1:0\"\nanonymous = \"pull\"\n");
    net.form().await;
    crate::cluster::ok(net.nodes[0].cli(&["bucket", "create", "oci", "--replicas", "1"]));
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let layer = gguf_file("llama", 15, 2_000_000);
    let model = blob(&a, &layer, "application/vnd.ollama.image.model");
    let config = blob(&a, br#"{"model_format":"gguf"}"#, "application/vnd.docker.container.image.v1+json");
    let m = manifest(&a, "registry.ollama.ai", "library/spread", "latest", config, vec![model.clone()]);
    json_out(net.nodes[0].cli(&["models", "import", a.to_str().unwrap(), "--json"]));

    let digest = model["digest"].as_str().unwrap();
    for n in &net.nodes {
        let reg = registry_of(n);
        let (st, _, body) = http("GET", &format!("http://{reg}/v2/library/spread/manifests/latest"), &[], None);
        assert_eq!((st, body == m), (200, true), "manifest through {reg}");
        let (st, _, body) = http("GET", &format!("http://{reg}/v2/library/spread/blobs/{digest}"), &[], None);
        assert_eq!((st, body == layer), (200, true), "layer through {reg}");
        let (st, _, body) = http("GET", &format!("http://{reg}/v2/library/spread/blobs/{digest}"), &["Range: bytes=1000-1999"], None);
        assert_eq!((st, body == layer[1000..2000]), (206, true), "a range through {reg}");
        let ls = json_out(n.cli(&["models", "ls", "--json"]));
        assert_eq!(names(&ls), ["library/spread:latest"]);
    }
    json_out(net.nodes[2].cli(&["models", "export", b.to_str().unwrap(), "--json"]));
    assert_eq!(tree(&a), tree(&b), "exported through another node byte-identical");
}

/// What a second import finds: a damaged layer is sent again (and the
/// model reads again), a layer another repository has is linked, not sent,
/// and a tag that moves drops the manifest it named.
#[tokio::test]
async fn a_second_import_repairs_links_and_replaces() {
    let (s, reg) = start("anonymous = \"pull\"\n");
    let work = tempfile::tempdir().unwrap();
    let (a, b, c) = (work.path().join("a"), work.path().join("b"), work.path().join("c"));
    let layer = gguf_file("llama", 15, 1_500_000);
    let config = br#"{"model_format":"gguf"}"#;
    let cfg = blob(&a, config, "application/vnd.docker.container.image.v1+json");
    let l = blob(&a, &layer, "application/vnd.ollama.image.model");
    manifest(&a, "registry.ollama.ai", "library/fix", "latest", cfg.clone(), vec![l.clone()]);
    json_out(s.cli(&["models", "import", a.to_str().unwrap(), "--json"]));
    let digest = l["digest"].as_str().unwrap();
    let url = format!("http://{reg}/v2/library/fix/blobs/{digest}");

    // Damage the stored layer; a read finds it and quarantines it.
    let hex = digest.trim_start_matches("sha256:");
    let file = blob_files(&s.data()).into_iter().find(|p| p.to_string_lossy().contains(hex)).expect("the layer's file");
    flip_a_byte(&file, 700_000);
    let o = std::process::Command::new("curl").args(["-s", "--max-time", "30", &url]).output().unwrap();
    assert!(!o.status.success() || o.stdout != layer, "damage is never served");
    let v = json_out(s.cli(&["models", "import", a.to_str().unwrap(), "--json"]));
    assert_eq!(v[0]["sent_bytes"], 1_500_000, "the damaged layer is sent again: {v}");
    let (st, _, body) = http("GET", &url, &[], None);
    assert_eq!((st, body == layer), (200, true));

    // Another tree with the same layer under another name: linked, not sent.
    let cfg_b = blob(&b, config, "application/vnd.docker.container.image.v1+json");
    let l_b = blob(&b, &layer, "application/vnd.ollama.image.model");
    manifest(&b, "registry.ollama.ai", "other/same", "v1", cfg_b, vec![l_b]);
    let v = json_out(s.cli(&["models", "import", b.to_str().unwrap(), "--json"]));
    assert_eq!((v[0]["sent_bytes"].as_u64(), v[0]["linked"].as_u64()), (Some(0), Some(2)), "{v}");

    // The same tag with new content: the old manifest goes.
    let old = json_out(s.cli(&["models", "show", "library/fix", "--json"]))["model"]["digest"].as_str().unwrap().to_string();
    let cfg_c = blob(&c, config, "application/vnd.docker.container.image.v1+json");
    let l_c = blob(&c, &gguf_file("llama", 7, 1_000_000), "application/vnd.ollama.image.model");
    manifest(&c, "registry.ollama.ai", "library/fix", "latest", cfg_c, vec![l_c]);
    json_out(s.cli(&["models", "import", c.to_str().unwrap(), "--json"]));
    let (st, _, _) = http("GET", &format!("http://{reg}/v2/library/fix/manifests/{old}"), &[], None);
    assert_eq!(st, 404, "the replaced manifest is gone");
    let (st, _, _) = http("GET", &url, &[], None);
    assert_eq!(st, 404, "and the layer only it used left the repository");
    let (st, _, body) = http("GET", &format!("http://{reg}/v2/other/same/blobs/{digest}"), &[], None);
    assert_eq!((st, body == layer), (200, true), "other/same keeps it");
}
