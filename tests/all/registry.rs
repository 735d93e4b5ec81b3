//! The OCI registry with a real client: skopeo copies an image to Strata
//! and back (byte-exact), inspects it, lists its tags and deletes it; users
//! and anonymous access; the spec's errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::*;

/// A server with the registry on; returns it and the registry's host:port.
pub fn start(extra: &str) -> (TestServer, String) {
    let mut s = TestServer::prepare("127.0.0.1", &format!("[registry]\nlisten = \"127.0.0.1:0\"\n{extra}"), Vec::new());
    s.boot();
    for _ in 0..100 {
        let found = s.registry.lock().unwrap().clone();
        if let Some(a) = found {
            return (s, a);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the server did not print the registry's address");
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn skopeo(args: &[&str]) -> Output {
    let bin = apt_tool("skopeo", "skopeo");
    Command::new(bin).arg("--insecure-policy").args(args).output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let hex = sha256_hex(data);
    std::fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
    (format!("sha256:{hex}"), data.len())
}

/// An OCI image layout with one image (tag `v1`): a tar layer of `size`
/// random bytes. Returns the layout's path, the manifest's bytes and the
/// layer's bytes.
fn image(dir: &Path, size: usize) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), random_bytes(size)).unwrap();
    let tar = dir.join("layer.tar");
    let st = Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&src).arg("data.bin").status().unwrap();
    assert!(st.success());
    let layer = std::fs::read(&tar).unwrap();
    let (layer_digest, layer_size) = write_blob(&layout, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}, "config": {}
    }))
    .unwrap();
    let (config_digest, config_size) = write_blob(&layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = write_blob(&layout, &manifest);
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "v1"}
    }]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (layout, manifest, layer)
}

#[tokio::test]
async fn skopeo_copies_an_image_in_and_out_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest, layer) = image(dir.path(), 3 << 20);
    let (_s, reg) = start("anonymous = \"push\"\n");
    let dest = format!("docker://{reg}/library/demo:v1");
    // --preserve-digests: skopeo pushes the manifest as it is (no recompression).
    ok(skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{}:v1", layout.display()), &dest]));

    // The manifest comes back as pushed, under the digest skopeo computes.
    let raw = ok(skopeo(&["inspect", "--tls-verify=false", "--raw", &dest]));
    assert_eq!(raw.as_bytes(), &manifest[..], "manifests are served byte-exact");
    let shown: Value = serde_json::from_str(&ok(skopeo(&["inspect", "--tls-verify=false", &dest]))).unwrap();
    assert_eq!(shown["Digest"], format!("sha256:{}", sha256_hex(&manifest)), "{shown}");

    // A second tag and a second repository: tags list, same bytes stored once.
    ok(skopeo(&["copy", "--src-tls-verify=false", "--dest-tls-verify=false", &dest, &format!("docker://{reg}/library/demo:v2")]));
    let tags: Value =
        serde_json::from_str(&ok(skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{reg}/library/demo")]))).unwrap();
    assert_eq!(tags["Tags"], json!(["v1", "v2"]), "{tags}");

    // Out again into a layout: the layer's bytes are the ones pushed.
    let out = dir.path().join("out");
    ok(skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", &dest, &format!("oci:{}:v1", out.display())]));
    let back = std::fs::read(out.join("blobs/sha256").join(sha256_hex(&layer))).unwrap();
    assert_eq!(back, layer);

    // Delete by digest: every tag of it goes, and the image is gone.
    ok(skopeo(&["delete", "--tls-verify=false", &dest]));
    let gone = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reg}/library/demo:v2")]);
    assert!(!gone.status.success(), "{}", text(&gone));
    assert!(text(&gone).to_lowercase().contains("manifest unknown") || text(&gone).contains("MANIFEST_UNKNOWN"), "{}", text(&gone));
}

#[tokio::test]
async fn users_need_their_password_and_push_rights() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _, _) = image(dir.path(), 64 << 10);
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "correct horse battery\n").unwrap();
    let reader = dir.path().join("pw2");
    std::fs::write(&reader, "only reads here\n").unwrap();
    let (_s, reg) = start(&format!(
        "anonymous = \"pull\"\n[[registry.users]]\nname = \"ci\"\npassword_file = {secret:?}\nrepositories = [\"team/*\"]\npush = true\n\
         [[registry.users]]\nname = \"viewer\"\npassword_file = {reader:?}\n"
    ));
    let src = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{reg}/team/app:v1");
    let denied = |o: &Output| !o.status.success() && (text(o).contains("403") || text(o).to_lowercase().contains("denied"));
    let o = skopeo(&["copy", "--dest-tls-verify=false", &src, &dest]);
    assert!(!o.status.success() && text(&o).to_lowercase().contains("unauthorized"), "{}", text(&o));
    let o = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", "ci:wrong password", &src, &dest]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", "viewer:only reads here", &src, &dest]);
    assert!(denied(&o), "{}", text(&o));
    let o = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "ci:correct horse battery",
        &src,
        &format!("docker://{reg}/other/app:v1"),
    ]);
    assert!(denied(&o), "{}", text(&o));
    ok(skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", "ci:correct horse battery", &src, &dest]));
    ok(skopeo(&["inspect", "--tls-verify=false", "--creds", "viewer:only reads here", &dest]));
    // Anonymous clients pull (anonymous = "pull"), and a user keeps that right
    // outside its own repositories.
    ok(skopeo(&["inspect", "--tls-verify=false", &dest]));
    ok(skopeo(&["inspect", "--tls-verify=false", "--creds", "ci:correct horse battery", &dest]));
}

/// One HTTP request with curl: (status, headers lower-cased, body).
pub fn http(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (hdr, out) = (dir.path().join("h"), dir.path().join("b"));
    let mut c = Command::new("curl");
    // No `Expect: 100-continue`: one status line per answer.
    c.args(["-s", "--path-as-is", "--max-time", "60", "-H", "Expect:", "-D"]).arg(&hdr).arg("-o").arg(&out);
    // `-X HEAD` would wait for a body: `-I` is curl's HEAD.
    if method == "HEAD" {
        c.arg("-I");
    } else {
        c.args(["-X", method]);
    }
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        let f = dir.path().join("in");
        std::fs::write(&f, b).unwrap();
        c.arg("--data-binary").arg(format!("@{}", f.display()));
    }
    let o = c.arg(url).output().unwrap();
    assert!(o.status.success(), "curl failed: {}", text(&o));
    let head = std::fs::read_to_string(&hdr).unwrap().to_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, std::fs::read(&out).unwrap_or_default())
}

pub fn header_value(head: &str, name: &str) -> String {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_string())).unwrap_or_default()
}

pub fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_protocol_edges_and_bad_input_get_the_specs_answers() {
    let (_s, reg) = start("anonymous = \"push\"\nmax_manifest_size = \"2KiB\"\n");
    let base = format!("http://{reg}/v2");
    let data = random_bytes(100_000);
    let digest = format!("sha256:{}", sha256_hex(&data));

    // Chunked: in order, then one out of order (416 with what is held),
    // then a wrong digest: refused, nothing stored, the session gone.
    let (st, head, _) = http("POST", &format!("{base}/lib/x/blobs/uploads/"), &[], None);
    assert_eq!(st, 202, "{head}");
    let loc = header_value(&head, "location");
    assert!(loc.starts_with("http://"), "absolute upload locations: {loc}");
    let (st, head, _) = http("PATCH", &loc, &["Content-Range: 0-49999", "Content-Type: application/octet-stream"], Some(&data[..50_000]));
    assert_eq!((st, header_value(&head, "range")), (202, "0-49999".into()), "{head}");
    let (st, head, body) = http("PATCH", &loc, &["Content-Range: 60000-99999"], Some(&data[60_000..]));
    assert_eq!((st, header_value(&head, "range"), code(&body)), (416, "0-49999".into(), "BLOB_UPLOAD_INVALID".into()), "{head}");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (st, _, body) = http("PUT", &format!("{loc}?digest={wrong}"), &[], Some(&data[50_000..]));
    assert_eq!((st, code(&body)), (400, "DIGEST_INVALID".into()), "{}", String::from_utf8_lossy(&body));
    let (st, _, body) = http("GET", &format!("{base}/lib/x/blobs/{wrong}"), &[], None);
    assert_eq!((st, code(&body)), (404, "BLOB_UNKNOWN".into()));
    let (st, _, body) = http("GET", &format!("{base}/lib/x/blobs/{digest}"), &[], None);
    assert_eq!((st, code(&body)), (404, "BLOB_UNKNOWN".into()), "nothing half-stored");
    let (st, _, body) = http("PATCH", &loc, &[], Some(b"more"));
    assert_eq!((st, code(&body)), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    // A chunk whose body is not the length its Content-Range says ends the session.
    let (_, head, _) = http("POST", &format!("{base}/lib/x/blobs/uploads/"), &[], None);
    let loc2 = header_value(&head, "location");
    let (st, _, body) = http("PATCH", &loc2, &["Content-Range: 0-99"], Some(&data[..10]));
    assert_eq!((st, code(&body)), (416, "BLOB_UPLOAD_INVALID".into()));
    assert_eq!(http("GET", &loc2, &[], None).0, 404);

    // Monolithic, then reads: HEAD, whole (with Location), one range (206).
    let (st, head, _) = http("POST", &format!("{base}/lib/x/blobs/uploads/?digest={digest}"), &[], Some(&data));
    assert_eq!((st, header_value(&head, "docker-content-digest")), (201, digest.clone()), "{head}");
    let (st, head, _) = http("HEAD", &format!("{base}/lib/x/blobs/{digest}"), &[], None);
    assert_eq!((st, header_value(&head, "content-length")), (200, "100000".into()));
    let (st, head, body) = http("GET", &format!("{base}/lib/x/blobs/{digest}"), &[], None);
    assert_eq!((st, body == data), (200, true));
    assert!(header_value(&head, "location").ends_with(&format!("/v2/lib/x/blobs/{digest}")), "{head}");
    let (st, head, body) = http("GET", &format!("{base}/lib/x/blobs/{digest}"), &["Range: bytes=1000-1999"], None);
    assert_eq!((st, &body[..], header_value(&head, "content-range")), (206, &data[1000..2000], "bytes 1000-1999/100000".into()));
    let (st, head, _) = http("GET", &format!("{base}/lib/x/blobs/{digest}"), &["Range: bytes=200000-"], None);
    assert_eq!((st, header_value(&head, "content-range")), (416, "bytes */100000".into()));
    // Ollama's empty POST of a blob the repository has: 201.
    let (st, _, _) = http("POST", &format!("{base}/lib/x/blobs/uploads/?digest={digest}"), &["Content-Length: 0"], None);
    assert_eq!(st, 201);
    // A mount into another repository.
    let (st, _, _) = http("POST", &format!("{base}/lib/y/blobs/uploads/?mount={digest}&from=lib/x"), &[], None);
    assert_eq!(st, 201);

    // Manifests: an artifact with a subject, then the referrers.
    let empty = b"{}";
    http("POST", &format!("{base}/lib/x/blobs/uploads/?digest=sha256:{}", sha256_hex(empty)), &[], Some(empty));
    let manifest = |layer: &str, size: usize, subject: Option<(&str, usize)>| {
        let mut m = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": format!("sha256:{}", sha256_hex(empty)), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": size}],
            "annotations": {"note": "hi"}
        });
        if let Some((d, n)) = subject {
            m["subject"] = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": n});
        }
        serde_json::to_vec(&m).unwrap()
    };
    let ct = "Content-Type: application/vnd.oci.image.manifest.v1+json";
    let first = manifest(&digest, data.len(), None);
    let first_digest = format!("sha256:{}", sha256_hex(&first));
    for tag in ["a", "b", "c"] {
        let (st, _, body) = http("PUT", &format!("{base}/lib/x/manifests/{tag}"), &[ct], Some(&first));
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    }
    let (st, head, body) = http("GET", &format!("{base}/lib/x/manifests/b"), &["Accept: text/plain"], None);
    assert_eq!((st, body == first), (200, true), "byte-exact whatever Accept says");
    assert_eq!(header_value(&head, "docker-content-digest"), first_digest);
    let sbom = manifest(&digest, data.len(), Some((&first_digest, first.len())));
    let (st, head, _) = http("PUT", &format!("{base}/lib/x/manifests/sha256:{}", sha256_hex(&sbom)), &[ct], Some(&sbom));
    assert_eq!((st, header_value(&head, "oci-subject")), (201, first_digest.clone()));
    let (st, _, body) = http("GET", &format!("{base}/lib/x/referrers/{first_digest}"), &[], None);
    let idx: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st, 200);
    assert_eq!(idx["manifests"][0]["digest"], format!("sha256:{}", sha256_hex(&sbom)), "{idx}");
    assert_eq!(idx["manifests"][0]["artifactType"], "application/vnd.example.sbom", "{idx}");
    assert_eq!(idx["manifests"][0]["annotations"]["note"], "hi", "{idx}");
    let (_, _, body) = http("GET", &format!("{base}/lib/x/referrers/{first_digest}?artifactType=other"), &[], None);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["manifests"], json!([]));

    // Tags a page at a time.
    let (st, head, body) = http("GET", &format!("{base}/lib/x/tags/list?n=2"), &[], None);
    assert_eq!((st, serde_json::from_slice::<Value>(&body).unwrap()["tags"].clone()), (200, json!(["a", "b"])));
    assert!(header_value(&head, "link").contains("last=b"), "{head}");
    let (_, _, body) = http("GET", &format!("{base}/lib/x/tags/list?n=2&last=b"), &[], None);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["tags"], json!(["c"]));

    // Bad manifests: unknown media type, a missing blob, too large, a wrong digest.
    let (st, _, body) = http("PUT", &format!("{base}/lib/x/manifests/bad"), &["Content-Type: application/vnd.example+json"], Some(b"{}"));
    assert_eq!((st, code(&body)), (400, "MANIFEST_INVALID".into()));
    let missing = manifest(&format!("sha256:{}", "1".repeat(64)), 5, None);
    let (st, _, body) = http("PUT", &format!("{base}/lib/x/manifests/bad"), &[ct], Some(&missing));
    assert_eq!((st, code(&body)), (400, "MANIFEST_BLOB_UNKNOWN".into()));
    let (st, _, body) = http("PUT", &format!("{base}/lib/x/manifests/bad"), &[ct], Some(&vec![b' '; 3000]));
    assert_eq!((st, code(&body)), (413, "SIZE_INVALID".into()));
    let (st, _, body) = http("PUT", &format!("{base}/lib/x/manifests/{wrong}"), &[ct], Some(&first));
    assert_eq!((st, code(&body)), (400, "DIGEST_INVALID".into()));
    let (st, _, body) = http("GET", &format!("{base}/lib/x/manifests/bad"), &[], None);
    assert_eq!((st, code(&body)), (404, "MANIFEST_UNKNOWN".into()), "nothing half-stored");
    // Names with `..`, uppercase, or nothing.
    for path in ["lib/../x/manifests/a", "Lib/x/manifests/a", "lib//x/manifests/a"] {
        let (st, _, body) = http("GET", &format!("{base}/{path}"), &[], None);
        assert_eq!((st, code(&body)), (400, "NAME_INVALID".into()), "{path}");
    }

    // Deleting a manifest by digest removes its tags and the blobs only it used.
    let (st, _, _) = http("DELETE", &format!("{base}/lib/x/manifests/sha256:{}", sha256_hex(&sbom)), &[], None);
    assert_eq!(st, 202);
    let (st, _, _) = http("GET", &format!("{base}/lib/x/blobs/{digest}"), &[], None);
    assert_eq!(st, 200, "the first manifest still needs the layer");
    let (st, _, _) = http("DELETE", &format!("{base}/lib/x/manifests/{first_digest}"), &[], None);
    assert_eq!(st, 202);
    for tag in ["a", "b", "c"] {
        assert_eq!(http("GET", &format!("{base}/lib/x/manifests/{tag}"), &[], None).0, 404);
    }
    assert_eq!(http("GET", &format!("{base}/lib/x/blobs/{digest}"), &[], None).0, 404, "no manifest needs it now");
    assert_eq!(http("GET", &format!("{base}/lib/y/blobs/{digest}"), &[], None).0, 200, "the mounted copy stays");
}

/// Python's `oras` package (the ORAS SDK), installed with pip when missing.
fn python_oras() {
    let has = || Command::new("python3").args(["-c", "import oras.client"]).status().is_ok_and(|s| s.success());
    if !has() {
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(extra)
                .arg("oras==0.2.43")
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = pip(&[]) || pip(&["--user", "--break-system-packages"]);
    }
    assert!(has(), "could not install oras with pip: `python3 -m pip install oras`");
}

#[tokio::test]
async fn oras_pushes_and_pulls_an_artifact() {
    python_oras();
    let dir = tempfile::tempdir().unwrap();
    let (_s, reg) = start("anonymous = \"push\"\n");
    let art = random_bytes(300_000);
    std::fs::write(dir.path().join("model.bin"), &art).unwrap();
    let script = r#"
import os, sys, oras.client
reg, work = sys.argv[1:3]
c = oras.client.OrasClient(hostname=reg, insecure=True)
os.chdir(work)
r = c.push(files=["model.bin"], target=f"{reg}/art/thing:v1")
assert r.status_code == 201, r.status_code
c.pull(target=f"{reg}/art/thing:v1", outdir=os.path.join(work, "out"))
print(",".join(c.get_tags(f"{reg}/art/thing")))
"#;
    let o = Command::new("python3").args(["-c", script, &reg]).arg(dir.path()).output().unwrap();
    assert_eq!(ok(o).trim(), "v1");
    assert_eq!(std::fs::read(dir.path().join("out/model.bin")).unwrap(), art, "pulled byte-exact");
}

/// Ollama's pull and push, request by request (server/download.go,
/// upload.go): HEAD the blob, a GET that must carry `Location`, then 16
/// parallel ranged GETs without credentials, each exact; a push of
/// chunked PATCHes with `Content-Range: a-b` (no `bytes`) and an absolute
/// Location to follow, the closing PUT, and an empty `POST ?digest=` of a
/// blob that is there.
#[tokio::test]
async fn ollamas_request_sequences_work() {
    let (_s, reg) = start("anonymous = \"push\"\n");
    let base = format!("http://{reg}/v2/library/tiny");
    let layer = random_bytes(250_000_000);
    let digest = format!("sha256:{}", sha256_hex(&layer));

    // Push: POST, then PATCHes following each answer's Location, then PUT.
    let (st, head, _) = http("POST", &format!("{base}/blobs/uploads/"), &[], None);
    assert_eq!(st, 202);
    let mut loc = header_value(&head, "location");
    let part = 64 << 20;
    for (i, chunk) in layer.chunks(part).enumerate() {
        let (a, b) = (i * part, i * part + chunk.len() - 1);
        let range = format!("Content-Range: {a}-{b}");
        let (st, head, _) = http("PATCH", &loc, &[&range, "Content-Type: application/octet-stream", "X-Redirect-Uploads: 1"], Some(chunk));
        assert_eq!(st, 202, "{head}");
        loc = header_value(&head, "location");
        assert!(loc.starts_with("http://"), "{loc}");
    }
    let (st, _, _) = http("PUT", &format!("{loc}?digest={digest}"), &["Content-Length: 0"], None);
    assert_eq!(st, 201);
    let config = br#"{"model_format":"gguf"}"#;
    let config_digest = format!("sha256:{}", sha256_hex(config));
    let (st, _, _) = http("POST", &format!("{base}/blobs/uploads/?digest={config_digest}"), &[], Some(config));
    assert_eq!(st, 201);
    // Ollama's empty POST for a blob that exists: 201, nothing sent.
    let (st, _, _) = http("POST", &format!("{base}/blobs/uploads/?digest={digest}"), &["Content-Length: 0"], None);
    assert_eq!(st, 201);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": layer.len()}]
    }))
    .unwrap();
    let (st, _, _) = http(
        "PUT",
        &format!("{base}/manifests/latest"),
        &["Content-Type: application/vnd.docker.distribution.manifest.v2+json"],
        Some(&manifest),
    );
    assert_eq!(st, 201);

    // Pull: the manifest with Ollama's Accept, HEAD, a GET with Location.
    let (st, _, body) =
        http("GET", &format!("{base}/manifests/latest"), &["Accept: application/vnd.docker.distribution.manifest.v2+json"], None);
    assert_eq!((st, body == manifest), (200, true));
    let (st, head, _) = http("HEAD", &format!("{base}/blobs/{digest}"), &[], None);
    assert_eq!((st, header_value(&head, "content-length")), (200, layer.len().to_string()));
    let (st, head, _) = http("GET", &format!("{base}/blobs/{digest}"), &[], None);
    assert_eq!(st, 200);
    let direct = header_value(&head, "location");
    assert!(direct.starts_with("http://"), "Ollama needs a Location: {head}");
    // 16 parts in parallel, no credentials, each exactly its range.
    sixteen_ranges(&direct, &layer);
}

/// Ollama's pull of `layer` from `url`: 16 ranged GETs in parallel without
/// credentials, each answered 206 with exactly its bytes.
fn sixteen_ranges(url: &str, layer: &[u8]) {
    let n = layer.len() / 16;
    let parts: Vec<_> = (0..16)
        .map(|i| {
            let url = url.to_string();
            let (a, b) = (i * n, if i == 15 { layer.len() - 1 } else { (i + 1) * n - 1 });
            std::thread::spawn(move || (a, b, http("GET", &url, &[&format!("Range: bytes={a}-{b}")], None)))
        })
        .collect();
    for p in parts {
        let (a, b, (st, head, body)) = p.join().unwrap();
        assert_eq!(st, 206, "{head}");
        assert_eq!(header_value(&head, "content-range"), format!("bytes {a}-{b}/{}", layer.len()));
        assert!(body == layer[a..=b], "part {a}-{b} is exact");
    }
}

/// A manifest pushed while another that shares its layer is deleted: if the
/// push is acknowledged, its layer is there (the delete frees blobs under
/// the repository's lock, not between the push's check and its write).
#[tokio::test]
async fn a_push_racing_a_delete_never_acknowledges_a_missing_layer() {
    let (_s, reg) = start("anonymous = \"push\"\n");
    let base = format!("http://{reg}/v2/race/r");
    let empty = b"{}";
    let layer = random_bytes(50_000);
    let (ld, cd) = (format!("sha256:{}", sha256_hex(&layer)), format!("sha256:{}", sha256_hex(empty)));
    let ct = "Content-Type: application/vnd.oci.image.manifest.v1+json";
    let manifest = |note: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": ld, "size": layer.len()}],
            "annotations": {"note": note}
        }))
        .unwrap()
    };
    for round in 0..60 {
        http("POST", &format!("{base}/blobs/uploads/?digest={cd}"), &[], Some(empty));
        http("POST", &format!("{base}/blobs/uploads/?digest={ld}"), &[], Some(&layer));
        let (a, v) = (manifest(&format!("a{round}")), manifest(&format!("v{round}")));
        assert_eq!(http("PUT", &format!("{base}/manifests/a"), &[ct], Some(&a)).0, 201);
        let a_digest = format!("sha256:{}", sha256_hex(&a));
        let del = {
            let url = format!("{base}/manifests/{a_digest}");
            std::thread::spawn(move || http("DELETE", &url, &[], None).0)
        };
        let (st, _, _) = http("PUT", &format!("{base}/manifests/v"), &[ct], Some(&v));
        assert_eq!(del.join().unwrap(), 202);
        if st == 201 {
            assert_eq!(
                http("HEAD", &format!("{base}/blobs/{ld}"), &[], None).0,
                200,
                "round {round}: an acknowledged manifest lost its layer"
            );
        }
        http("DELETE", &format!("{base}/manifests/sha256:{}", sha256_hex(&v)), &[], None);
    }
}

/// A GGUF v3 file: metadata as llama.cpp writes it (with a vocabulary
/// array) and two tensors, padded to `size` bytes.
pub fn gguf_file(arch: &str, file_type: u32, size: usize) -> Vec<u8> {
    let s = |b: &mut Vec<u8>, v: &str| {
        b.extend((v.len() as u64).to_le_bytes());
        b.extend(v.as_bytes());
    };
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    s(&mut b, arch);
    s(&mut b, "general.file_type");
    b.extend(4u32.to_le_bytes());
    b.extend(file_type.to_le_bytes());
    s(&mut b, &format!("{arch}.context_length"));
    b.extend(4u32.to_le_bytes());
    b.extend(8192u32.to_le_bytes());
    s(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend(3u64.to_le_bytes());
    for t in ["<s>", "</s>", "hello"] {
        s(&mut b, t);
    }
    for (name, dims) in [("token_embd.weight", vec![4096u64, 32000]), ("output_norm.weight", vec![4096])] {
        s(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(12u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
    }
    b.resize(size, 0);
    b
}

/// Pushes a model the way Ollama does: config, the layer, the manifest.
pub fn push_model(reg: &str, repo: &str, tag: &str, layer: &[u8], media_type: &str) {
    let base = format!("http://{reg}/v2/{repo}");
    let config = br#"{"model_format":"gguf"}"#;
    let (cd, ld) = (format!("sha256:{}", sha256_hex(config)), format!("sha256:{}", sha256_hex(layer)));
    assert_eq!(http("POST", &format!("{base}/blobs/uploads/?digest={cd}"), &[], Some(config)).0, 201);
    assert_eq!(http("POST", &format!("{base}/blobs/uploads/?digest={ld}"), &[], Some(layer)).0, 201);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": ld, "size": layer.len()}]
    }))
    .unwrap();
    let ct = "Content-Type: application/vnd.docker.distribution.manifest.v2+json";
    let (st, _, body) = http("PUT", &format!("{base}/manifests/{tag}"), &[ct], Some(&manifest));
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn models_are_found_by_what_is_inside_them() {
    let (s, reg) = start("anonymous = \"push\"\n");
    push_model(&reg, "library/llama3", "8b-q4", &gguf_file("llama", 15, 200_000), "application/vnd.ollama.image.model");
    push_model(&reg, "library/llama3", "8b-q8", &gguf_file("llama", 7, 210_000), "application/vnd.ollama.image.model");
    push_model(&reg, "library/qwen", "latest", &gguf_file("qwen2", 15, 190_000), "application/vnd.ollama.image.model");
    let header = br#"{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[64,64],"data_offsets":[0,8192]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend(header);
    st.extend(vec![7u8; 8192]);
    push_model(&reg, "hf/tiny", "v1", &st, "application/vnd.ollama.image.tensor");

    let search = |q: &str| {
        let o = s.cli(&["models", "search", q, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut m: Vec<String> = v.as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap().to_string()).collect();
        m.sort();
        (m, v)
    };
    let (m, v) = search(r#"gguf.architecture = "llama" and gguf.file_type = "Q4_K_M""#);
    assert_eq!(m, ["library/llama3:8b-q4"], "{v}");
    assert_eq!(v[0]["attributes"]["gguf"]["context_length"], 8192, "{v}");
    assert_eq!(v[0]["attributes"]["gguf"]["parameter_count"], 4096 * 32000 + 4096, "{v}");
    let (m, _) = search(r#"gguf.file_type = "Q4_K_M""#);
    assert_eq!(m, ["library/llama3:8b-q4", "library/qwen:latest"]);
    let (m, _) = search(r#"gguf.architecture = "llama""#);
    assert_eq!(m, ["library/llama3:8b-q4", "library/llama3:8b-q8"]);
    let (m, v) = search(r#"safetensors.dtype = "BF16" and safetensors.parameter_count = 4096"#);
    assert_eq!(m, ["hf/tiny:v1"], "{v}");
    // Through an index as well: the same answer.
    let o = s.cli(&["index", "create", "--bucket", "oci", "arch", "--field", "gguf.architecture"]);
    assert!(o.status.success(), "{}", text(&o));
    let (m, _) = search(r#"gguf.architecture = "qwen2""#);
    assert_eq!(m, ["library/qwen:latest"]);
}

/// The same bytes as an OCI layer, an Ollama layer and a plain object are
/// one blob with three references.
#[tokio::test]
async fn the_same_bytes_three_ways_are_one_blob() {
    let (s, reg) = start("anonymous = \"push\"\n");
    let mut c = s.client().await;
    let bytes = random_bytes(300_000);
    let d = format!("sha256:{}", sha256_hex(&bytes));
    let before = stats(&mut c).await.blobs;
    assert_eq!(http("POST", &format!("http://{reg}/v2/oci/image/blobs/uploads/?digest={d}"), &[], Some(&bytes)).0, 201);
    // Ollama's way: a session, one PATCH, the PUT.
    let (_, head, _) = http("POST", &format!("http://{reg}/v2/library/model/blobs/uploads/"), &[], None);
    let loc = header_value(&head, "location");
    let (_, head, _) = http("PATCH", &loc, &[&format!("Content-Range: 0-{}", bytes.len() - 1)], Some(&bytes));
    assert_eq!(http("PUT", &format!("{}?digest={d}", header_value(&head, "location")), &[], None).0, 201);
    put_key(&mut c, "plain/copy", &bytes).await;
    let after = stats(&mut c).await;
    assert_eq!(after.blobs, before + 1, "one blob");
    // Three references: removing two leaves the bytes readable through the third.
    assert_eq!(http("DELETE", &format!("http://{reg}/v2/oci/image/blobs/{d}"), &[], None).0, 202);
    assert_eq!(http("DELETE", &format!("http://{reg}/v2/library/model/blobs/{d}"), &[], None).0, 202);
    assert_eq!(get_key(&mut c, "plain/copy").await.unwrap(), bytes);
}

/// The `oci-client` crate: a push (its layers go up in 4 MiB chunks), a
/// pull, a chunked stream push, a mount and the tags list.
#[tokio::test]
async fn the_oci_client_crate_pushes_pulls_mounts_and_lists() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};
    let (_s, reg) = start("anonymous = \"push\"\n");
    let c = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    let anon = RegistryAuth::Anonymous;
    let layer = random_bytes(10 << 20);
    let tar = "application/vnd.oci.image.layer.v1.tar";
    let r: Reference = format!("{reg}/lib/app:v1").parse().unwrap();
    let config = Config::new(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), "application/vnd.oci.image.config.v1+json".into(), None);
    c.push(&r, &[ImageLayer::new(layer.clone(), tar.into(), None)], config, &anon, None).await.unwrap();
    let image = c.pull(&r, &anon, vec![tar]).await.unwrap();
    assert_eq!(image.layers.len(), 1);
    assert!(image.layers[0].data[..] == layer[..], "pulled byte-exact");

    // A stream pushed in chunks, then mounted into another repository.
    let streamed = random_bytes(9 << 20);
    let chunks: Vec<oci_client::errors::Result<bytes::Bytes>> =
        streamed.chunks(1 << 20).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let pushed = c.push_blob_stream_chunked(&r, futures::stream::iter(chunks)).await.unwrap();
    assert_eq!(pushed.blob_digest, format!("sha256:{}", sha256_hex(&streamed)));
    assert_eq!(pushed.size, streamed.len() as u64);
    let other: Reference = format!("{reg}/lib/other:v1").parse().unwrap();
    c.mount_blob(&other, &r, &pushed.blob_digest).await.unwrap();
    assert!(c.blob_exists(&other, &pushed.blob_digest).await.unwrap());

    c.push(&format!("{reg}/lib/app:v2").parse().unwrap(), &image.layers, image.config.clone(), &anon, None).await.unwrap();
    let tags = c.list_tags(&r, &anon, None, None).await.unwrap();
    assert_eq!(tags.tags, ["v1", "v2"]);
}

/// Without anonymous pulls: a user's password works as a bearer token
/// (here through the `oci-client` crate), and a blob GET answers a signed
/// `Location` that Ollama's 16 ranged GETs, sent without credentials,
/// follow; the signature serves that blob only.
#[tokio::test]
async fn bearer_tokens_and_signed_blob_locations() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a token of at least 8\n").unwrap();
    let (_s, reg) =
        start(&format!("[[registry.users]]\nname = \"ollama\"\npassword_file = {pw:?}\nrepositories = [\"library/*\"]\npush = true\n"));
    let c = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    let layer = random_bytes(3_000_000);
    let image: Reference = format!("{reg}/library/tok:v1").parse().unwrap();
    let layers = [ImageLayer::new(layer.clone(), "application/vnd.ollama.image.model".into(), None)];
    let config = Config::new(br#"{"model_format":"gguf"}"#.to_vec(), "application/vnd.docker.container.image.v1+json".into(), None);
    let wrong = RegistryAuth::Bearer("not the token".into());
    let fresh = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    assert!(fresh.push(&image, &layers, config.clone(), &wrong, None).await.is_err(), "a wrong token is refused");
    let token = RegistryAuth::Bearer("a token of at least 8".into());
    c.push(&image, &layers, config, &token, None).await.expect("the token pushes");

    let digest = format!("sha256:{}", sha256_hex(&layer));
    let blob = format!("http://{reg}/v2/library/tok/blobs/{digest}");
    let (st, _, _) = http("GET", &blob, &[], None);
    assert_eq!(st, 401, "no credentials, no blob");
    let (st, head, _) = http("GET", &blob, &["Authorization: Bearer a token of at least 8"], None);
    assert_eq!(st, 200);
    let signed = header_value(&head, "location");
    assert!(signed.contains("signature="), "{head}");
    sixteen_ranges(&signed, &layer);
    // The signature is for that blob, unaltered, and only for reading.
    let query = signed.split_once('?').unwrap().1;
    let other = format!("sha256:{}", "0".repeat(64));
    assert_eq!(http("GET", &format!("http://{reg}/v2/library/tok/blobs/{other}?{query}"), &[], None).0, 401);
    assert_eq!(http("GET", &format!("http://{reg}/v2/library/tok/manifests/v1?{query}"), &[], None).0, 401);
    assert_eq!(http("DELETE", &signed, &[], None).0, 401);
    let tampered = signed.replace("signature=", "signature=00");
    assert_eq!(http("GET", &tampered, &[], None).0, 401);
}
