//! The OCI registry with a real client: skopeo copies an image to Strata
//! and back (byte-exact), inspects it, lists its tags and deletes it; users
//! and anonymous access; the spec's errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::*;

/// A server with the registry on; returns it and the registry's host:port.
fn start(extra: &str) -> (TestServer, String) {
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

fn text(o: &Output) -> String {
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
        "[[registry.users]]\nname = \"ci\"\npassword_file = {secret:?}\nrepositories = [\"team/*\"]\npush = true\n\
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
}
