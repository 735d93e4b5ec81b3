//! TLS on every listener and mTLS between nodes, with certificates made by
//! `strata cert` in the test: a 3-node cluster over mTLS, the CLI over TLS,
//! a wrong CA, a client without a certificate and a node from another CA
//! refused, and a certificate rotated by SIGHUP under a stream in flight.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata::api::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::cluster::cluster_toml_zoneless;
use crate::common::*;

/// `strata cert …`, which must succeed.
fn cert(args: &[&str]) {
    let o = Command::new(strata_bin()).arg("cert").args(args).output().unwrap();
    assert!(o.status.success(), "strata cert {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A CA in `dir` and node certificates `names` for 127.0.0.1, signed by it.
fn pki(dir: &Path, names: &[&str]) {
    let d = dir.to_str().unwrap();
    cert(&["ca", "--out", d]);
    for n in names {
        cert(&["node", "--ca", d, "--out", d, "--name", n, "--host", "127.0.0.1", "--host", "localhost"]);
    }
}

fn tls_toml(dir: &Path, name: &str, ca: &Path) -> String {
    format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
        ca
    )
}

fn https(s: &TestServer) -> String {
    s.url.replace("http://", "https://")
}

async fn tls_client(url: &str, ca: &Path) -> Result<Client, tonic::transport::Error> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    let ch = Endpoint::from_shared(url.to_string())?.tls_config(tls)?.connect().await?;
    Ok(pb::strata_client::StrataClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20))
}

/// The CLI over TLS, trusting `ca`.
fn cli_tls(url: &str, ca: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--ca-cert", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    cli(url, &all, None)
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A failed command's stdout and stderr.
fn ok_or_err(o: std::process::Output) -> String {
    assert!(!o.status.success(), "expected a failure: {}", String::from_utf8_lossy(&o.stdout));
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn stderr(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected a failure: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn a_cluster_over_mtls_refuses_what_its_ca_did_not_sign() {
    let dir = tempfile::tempdir().unwrap();
    let (good, wrong) = (dir.path().join("good"), dir.path().join("wrong"));
    pki(&good, &["n0", "n1", "n2"]);
    pki(&wrong, &["stranger"]);
    let ca = good.join("ca.crt");
    let cluster = cluster_toml_zoneless(dir.path());
    let nodes: Vec<TestServer> = (0..3)
        .map(|i| {
            let extra = format!("{cluster}{}[metrics]\nlisten = \"127.0.0.1:0\"\n", tls_toml(&good, &format!("n{i}"), &ca));
            TestServer::start(&extra)
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(https).collect();

    // The CLI forms the cluster over TLS; the nodes talk over mTLS.
    ok(cli_tls(&urls[0], &ca, &["cluster", "init"]));
    for u in &urls[1..] {
        ok(cli_tls(u, &ca, &["cluster", "join", &nodes[0].addr().to_string()]));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = tls_client(&urls[2], &ca).await.unwrap().cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
        if v.leader != 0 && v.nodes.len() == 3 && v.nodes.iter().all(|n| n.state == "healthy") {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never formed over mTLS: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A write on one node is read on another (replicas travel over mTLS).
    let file = dir.path().join("obj");
    let data = random_bytes(3 << 20);
    std::fs::write(&file, &data).unwrap();
    ok(cli_tls(&urls[0], &ca, &["put", "mtls/obj", file.to_str().unwrap()]));
    let out = dir.path().join("back");
    ok(cli_tls(&urls[1], &ca, &["get", "mtls/obj", "-o", out.to_str().unwrap()]));
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Clients: the wrong CA, no CA, plaintext.
    let e = stderr(&cli_tls(&urls[0], &wrong.join("ca.crt"), &["health"]));
    assert!(e.contains("certificate") || e.contains("UnknownIssuer"), "{e}");
    let e = stderr(&cli(&urls[0], &["health"], None));
    assert!(e.contains("--ca-cert"), "{e}");
    let e = stderr(&cli(&nodes[0].url, &["health"], None));
    assert!(e.contains("https"), "a plaintext client is told to use TLS: {e}");

    // A peer call from a connection without a client certificate.
    let peer = |identity: Option<&str>| {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()));
        if let Some(n) = identity {
            let d = if n == "stranger" { &wrong } else { &good };
            tls = tls.identity(Identity::from_pem(
                std::fs::read(d.join(format!("{n}.crt"))).unwrap(),
                std::fs::read(d.join(format!("{n}.key"))).unwrap(),
            ));
        }
        let url = urls[0].clone();
        async move {
            let ch = Endpoint::from_shared(url).unwrap().tls_config(tls).unwrap().connect().await?;
            let mut c = strata::cluster::network::pb::peer_client::PeerClient::new(ch);
            Ok::<_, Box<dyn std::error::Error>>(c.heartbeat(strata::cluster::network::pb::RaftBytes { data: b"{}".to_vec() }).await)
        }
    };
    let refused = peer(None).await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("client certificate"), "{}", refused.message());
    // With a node certificate the call gets past TLS to the cluster secret.
    let secret = peer(Some("n2")).await.unwrap().unwrap_err();
    assert!(secret.message().contains("cluster secret"), "{}", secret.message());
    // A certificate from another CA does not get a connection at all.
    let stranger = peer(Some("stranger")).await;
    let no_connection = match &stranger {
        Err(_) => true,
        Ok(Err(s)) => matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled),
        Ok(Ok(_)) => false,
    };
    assert!(no_connection, "the handshake refuses another CA's certificate: {stranger:?}");

    // A node whose certificate does not chain to its own ca_file does not
    // start; one of another CA (with the cluster's secret) cannot join.
    let mismatched = format!("{cluster}{}", tls_toml(&wrong, "stranger", &ca));
    let mut n3 = TestServer::prepare("127.0.0.1", &mismatched, Vec::new());
    let o = Command::new(strata_bin()).args(["serve", "--config"]).arg(&n3.config).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("does not verify against the CA"), "{e}");
    std::fs::write(
        &n3.config,
        std::fs::read_to_string(&n3.config).unwrap().replace(ca.to_str().unwrap(), wrong.join("ca.crt").to_str().unwrap()),
    )
    .unwrap();
    n3.boot();
    let e = stderr(&cli_tls(&https(&n3), &wrong.join("ca.crt"), &["cluster", "join", &nodes[0].addr().to_string()]));
    assert!(e.contains("certificate") || e.contains("alert"), "the refusal says it is the certificate: {e}");
    let v = tls_client(&urls[0], &ca).await.unwrap().cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(v.nodes.len(), 3, "the stranger is not a member: {v:?}");

    // Metrics over TLS, with curl.
    let m = Command::new("curl")
        .args(["-sf", "--cacert", ca.to_str().unwrap()])
        .arg(format!("https://{}/metrics", nodes[1].metrics_addr()))
        .output()
        .unwrap();
    assert!(m.status.success() && String::from_utf8_lossy(&m.stdout).contains("strata_"), "{m:?}");
    let plain = Command::new("curl").args(["-sf"]).arg(format!("http://{}/metrics", nodes[1].metrics_addr())).output().unwrap();
    assert!(!plain.status.success(), "the metrics listener serves only TLS");
}

#[tokio::test]
async fn a_certificate_rotates_on_sighup_without_dropping_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    // A new CA too, so a client can tell which certificate it was served.
    pki(&old, &["node"]);
    pki(&new, &["node"]);
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    for f in ["node.crt", "node.key", "ca.crt"] {
        std::fs::copy(old.join(f), live.join(f)).unwrap();
    }
    let s = TestServer::start(&tls_toml(&live, "node", &live.join("ca.crt")));
    let url = https(&s);
    let (old_ca, new_ca) = (old.join("ca.crt"), new.join("ca.crt"));

    let data = random_bytes(48 << 20);
    let mut c = tls_client(&url, &old_ca).await.unwrap();
    put_key(&mut c, "big", &data).await;
    // A download starts, reads its first chunk, and waits.
    let mut stream = c.get(pb::GetRequest { key: "big".into(), ..Default::default() }).await.unwrap().into_inner();
    let mut got = Vec::new();
    let chunk = |m: pb::GetResponse| match m.part {
        Some(pb::get_response::Part::Chunk(b)) => b.to_vec(),
        _ => Vec::new(),
    };
    for _ in 0..2 {
        got.extend(chunk(stream.next().await.unwrap().unwrap()));
    }
    assert!(!got.is_empty());

    // A certificate the configured CA did not sign is refused (peers would
    // refuse it), and the old one keeps serving.
    replace_file(&new.join("node.crt"), &live.join("node.crt"));
    replace_file(&new.join("node.key"), &live.join("node.key"));
    let e = ok_or_err(cli_tls(&url, &old_ca, &["reload"]));
    assert!(e.contains("does not verify against the CA"), "{e}");
    tls_client(&url, &old_ca).await.expect("the old certificate still serves");

    // With the new CA, SIGHUP.
    replace_file(&new.join("ca.crt"), &live.join("ca.crt"));
    let pid = s.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls_client(&url, &new_ca).await.is_err() {
        assert!(Instant::now() < deadline, "the new certificate is never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(tls_client(&url, &old_ca).await.is_err(), "new connections get the new certificate");

    // The download in flight finishes on its connection, every byte right.
    while let Some(m) = stream.next().await {
        got.extend(chunk(m.expect("the stream in flight is not dropped")));
    }
    assert_eq!(sha256_hex(&got), sha256_hex(&data));

    // A broken certificate is refused by `strata reload`; the last good one stays.
    std::fs::write(live.join("node.crt"), "not a certificate").unwrap();
    let e = stderr(&cli_tls(&url, &new_ca, &["reload"]));
    assert!(e.contains("refused"), "{e}");
    let mut c = tls_client(&url, &new_ca).await.expect("the old certificate still serves");
    assert_eq!(get_key(&mut c, "big").await.unwrap().len(), data.len());
    assert!(s.child.is_some());
}

#[tokio::test]
async fn a_tls_connection_that_says_nothing_after_its_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path(), &["node"]);
    let ca = dir.path().join("ca.crt");
    let s = TestServer::start(&tls_toml(dir.path(), "node", &ca));
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.expect("handshake");
    // Silent after the handshake: the server closes the connection (so
    // such sockets cannot hold `server.max_connections`).
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // (The server speaks first: its HTTP/2 settings.)
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "closed, not left open");
    assert!(started.elapsed() >= Duration::from_secs(5), "not before the client had its time");
}

#[test]
fn strata_cert_refuses_what_would_make_a_useless_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, mix) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("mix"));
    pki(&a, &["n1"]);
    pki(&b, &[]);
    let fails = |args: &[&str], says: &str| {
        let o = Command::new(strata_bin()).arg("cert").args(args).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(says), "{args:?}: {e}");
    };
    let a_dir = a.to_str().unwrap();
    fails(&["node", "--ca", a_dir, "--out", a_dir, "--name", "n1", "--host", "127.0.0.1"], "exists");
    fails(&["ca", "--out", a_dir], "exists");
    fails(&["node", "--ca", a_dir, "--out", a_dir, "--name", "n2", "--host", "bad host"], "neither a DNS name");
    fails(&["node", "--ca", a_dir, "--out", a_dir, "--name", "n2", "--host", ""], "neither a DNS name");
    fails(&["node", "--ca", a_dir, "--out", a_dir, "--name", "..", "--host", "h"], "--name");
    fails(&["node", "--ca", a_dir, "--out", a_dir, "--name", "n2", "--host", "h", "--days", "0"], "--days");
    fails(&["node", "--ca", a_dir, "--out", a_dir, "--name", "n2", "--host", "h", "--days", "99999999"], "--days");
    // A CA key that is not the CA certificate's.
    std::fs::create_dir(&mix).unwrap();
    std::fs::copy(a.join("ca.crt"), mix.join("ca.crt")).unwrap();
    std::fs::copy(b.join("ca.key"), mix.join("ca.key")).unwrap();
    let m = mix.to_str().unwrap();
    fails(&["node", "--ca", m, "--out", m, "--name", "x", "--host", "h"], "does not go with");
    assert!(!mix.join("x.crt").exists() && !mix.join("x.key").exists(), "nothing written");
}
