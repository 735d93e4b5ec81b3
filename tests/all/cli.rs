//! The `strata` CLI against a real server.

use crate::common::*;

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "cli failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "cli should fail: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "errors are one line: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_ls_stat_versions_rm() {
    let s = TestServer::start("");
    let dir = s.dir.path();
    let src = dir.join("src.bin");
    let data = random_bytes(3 << 20);
    std::fs::write(&src, &data).unwrap();

    let out = ok(&s.cli(&[
        "put",
        "m/weights",
        src.to_str().unwrap(),
        "-m",
        "category=research",
        "-m",
        "epoch=3",
        "--content-type",
        "application/x-weights",
    ]));
    assert!(out.contains(&sha256_hex(&data)), "{out}");
    ok(&s.cli(&["put", "m/weights", src.to_str().unwrap()]));

    let dst = dir.join("dst.bin");
    ok(&s.cli(&["get", "m/weights", "-o", dst.to_str().unwrap()]));
    assert_eq!(std::fs::read(&dst).unwrap(), data);

    let out = crate::common::cli(&s.url, &["put", "piped"], Some(b"from stdin"));
    ok(&out);
    assert_eq!(ok(&s.cli(&["get", "piped"])), "from stdin");
    assert_eq!(ok(&s.cli(&["get", "piped", "--range", "5-9"])), "stdin");

    let ls: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["ls", "m/", "--json"]))).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["key"], "m/weights");

    let versions: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["versions", "m/weights", "--json"]))).unwrap();
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let first = versions[1]["version"].as_str().unwrap().to_string();
    let stat: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["stat", "m/weights", "--version", &first, "--json"]))).unwrap();
    assert_eq!(stat["attributes"]["category"], "research");
    assert_eq!(stat["attributes"]["epoch"], 3.0);
    assert_eq!(stat["content_type"], "application/x-weights");

    ok(&s.cli(&["rm", "m/weights"]));
    let err = fails(&s.cli(&["get", "m/weights", "-o", dir.join("gone").to_str().unwrap()]));
    assert!(err.contains("NotFound"), "{err}");
    assert!(!dir.join("gone").exists(), "a failed get leaves no file");
    let leftovers: Vec<_> =
        std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("partial")).collect();
    assert!(leftovers.is_empty());

    let stats: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["objects"], 1);
    assert!(stats["ops"].as_array().unwrap().iter().any(|o| o["op"] == "put"));
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_and_errors() {
    let s = TestServer::start("");
    ok(&s.cli(&["bucket", "create", "models"]));
    let err = fails(&s.cli(&["bucket", "create", "models"]));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&s.cli(&["bucket", "create", "Bad_Name"]));
    assert!(err.contains("invalid bucket name"), "{err}");
    let out = crate::common::cli(&s.url, &["put", "x", "-b", "models"], Some(b"1"));
    ok(&out);
    let ls: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["bucket", "ls", "--json"]))).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 2);
    let err = fails(&s.cli(&["bucket", "rm", "models"]));
    assert!(err.contains("delete them first"), "{err}");
    ok(&s.cli(&["rm", "x", "-b", "models"]));
    ok(&s.cli(&["bucket", "rm", "models"]));
    let err = fails(&s.cli(&["put", "k", "/no/such/file"]));
    assert!(err.contains("/no/such/file"), "{err}");
    let err = fails(&crate::common::cli("http://127.0.0.1:1", &["ls"], None));
    assert!(err.contains("strata serve"), "{err}");
    let err = fails(&s.cli(&["get", "k", "--range", "9-1"]));
    assert!(err.contains("--range"), "{err}");
    let err = fails(&s.cli(&["search", "--sort", "-"]));
    assert!(err.contains("names no field"), "{err}");
    let err = fails(&crate::common::cli(&s.url, &["put", "k\u{10FFFF}"], Some(b"1")));
    assert!(err.contains("U+10FFFF") && !err.contains("control"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_many_and_rm_many() {
    let s = TestServer::start("");
    let dir = s.dir.path();
    let mut files = Vec::new();
    for i in 0..5 {
        let p = dir.join(format!("f{i}.txt"));
        std::fs::write(&p, format!("file {i}")).unwrap();
        files.push(p.to_str().unwrap().to_string());
    }
    let mut args = vec!["put-many", "--prefix", "batch/"];
    args.extend(files.iter().map(String::as_str));
    ok(&s.cli(&args));
    assert_eq!(ok(&s.cli(&["get", "batch/f3.txt"])), "file 3");
    ok(&s.cli(&["rm", "batch/f0.txt", "batch/f1.txt"]));
    let ls: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["ls", "batch/", "--json"]))).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 3);
}

#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    use std::process::{Command, Stdio};
    let s = TestServer::start("");
    let mut child =
        Command::new(strata_bin()).args(["--addr", &s.url, "plugin", "ls"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Close the reading end before the CLI prints, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.status.success());
}
