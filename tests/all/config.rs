//! Start-up: defaults, the example file, env overrides, bad config, the lock.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn serve_fails(toml: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, format!("[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbase_path = {:?}\n{toml}", dir.path().join("d"))).unwrap();
    let mut cmd = Command::new(strata_bin());
    cmd.args(["serve", "--config"]).arg(&cfg).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            return err;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the server started on a bad config: {toml}");
}

#[test]
fn bad_config_names_the_key() {
    let e = serve_fails("colour = \"blue\"", &[]);
    assert!(e.contains("colour"), "{e}");
    let e = serve_fails("[metadata]\ncache_size = \"many\"", &[]);
    assert!(e.contains("metadata.cache_size"), "{e}");
    let e = serve_fails("[metadata]\ncompact_interval = \"soon\"", &[]);
    assert!(e.contains("metadata.compact_interval") && e.contains("duration"), "{e}");
    let e = serve_fails("", &[("STRATA_STORAGE__MAX_SIZE", "lots")]);
    assert!(e.contains("max_size") && e.contains("size"), "{e}");
    let e = serve_fails("", &[("STRATA_STORAGE__COMPRESSION", "lz4")]);
    assert!(e.contains("storage.compression"), "{e}");
    let e = serve_fails("[storage.encryption]\nkey_env = \"STRATA_TEST_NO_SUCH_KEY\"", &[]);
    assert!(e.contains("STRATA_TEST_NO_SUCH_KEY"), "{e}");
    let e = serve_fails("", &[("STRATA_STORAGE__MIN_FREE_SPACE", "1MiB")]);
    assert!(e.contains("storage.min_free_space") && e.contains("4MiB"), "{e}");
    let e = serve_fails("", &[("STRATA_SERVER__MAX_CONNECTIONS", "0")]);
    assert!(e.contains("server.max_connections"), "{e}");
    let e = serve_fails("[server]\nlisten = \"nowhere\"", &[]);
    assert!(e.contains("TOML parse error") || e.contains("server.listen"), "{e}");
}

#[test]
fn a_second_server_on_the_same_dir_refuses() {
    let s = TestServer::start("");
    let out =
        Command::new(strata_bin()).args(["serve", "--config"]).arg(&s.config).env("STRATA_SERVER__LISTEN", "127.0.0.1:0").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another strata server"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_config_loads_with_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../strata.example.toml");
    let mut child = Command::new(strata_bin())
        .args(["serve", "--config", example])
        .env("STRATA_SERVER__LISTEN", "127.0.0.1:0")
        .env("STRATA_STORAGE__BASE_PATH", dir.path().join("data"))
        .env("STRATA_STORAGE__MAX_SIZE", "1MiB")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines.next().unwrap().unwrap().strip_prefix("strata listening on ").unwrap().to_string();
    let stores = lines.next().unwrap().unwrap();
    assert!(stores.contains(dir.path().join("data").to_str().unwrap()), "{stores}");
    let out = cli(&format!("http://{addr}"), &["stats", "--json"], None);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["max_size"], 1 << 20, "the env override took effect");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn serve_without_a_config_uses_the_embedded_defaults() {
    // Run in a temp cwd so ./strata-data lands there; the default port may be
    // taken on a shared machine, in which case the error must say so.
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        Command::new(strata_bin()).arg("serve").current_dir(dir.path()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Start-up compiles the built-in plugins on a fresh data dir: wait for
    // the address line (or an exit), not a fixed time.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("strata storing data in") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let text = rx.recv_timeout(Duration::from_secs(60)).expect("the server neither started nor exited within 60 s");
    if text.contains("strata listening on") {
        let _ = child.kill();
        let _ = child.wait();
        assert!(text.contains("strata listening on 127.0.0.1:7400"), "{text}");
        assert!(text.contains("strata storing data in ./strata-data"), "{text}");
        assert!(dir.path().join("strata-data/meta/strata.db").exists());
        assert!(dir.path().join("strata-data/plugin-cache").is_dir(), "compiled plugins are cached");
    } else {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("127.0.0.1:7400"), "{err}");
    }
}
