//! What an operator watches: `/metrics`, `/healthz` and `/readyz` on one
//! node (the scrape passes `promtool check metrics`), readiness following
//! cluster membership, JSON logs, and a real Prometheus scraping a 3-node
//! cluster, with every metric the shipped Grafana dashboard queries found
//! in its answers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::api::pb;

use crate::common::*;
use crate::registry::{http, text};

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

fn promtool_check(scrape: &[u8]) {
    let promtool = apt_tool("promtool", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), scrape).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "promtool check metrics: {}", text(&o));
}

/// The metric names a scrape holds (histograms by their `_bucket`, `_sum`
/// and `_count` series).
fn names(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| l.split(['{', ' ']).next().unwrap().to_string()).collect()
}

#[tokio::test]
async fn one_node_serves_metrics_health_and_readiness() {
    let s = TestServer::start(METRICS);
    let m = s.metrics_addr();
    let mut c = s.client().await;
    put_key(&mut c, "a/one", &random_bytes(100_000)).await;
    assert_eq!(get_key(&mut c, "a/one").await.unwrap().len(), 100_000);
    let missing = c.get(pb::GetRequest { key: "nope".into(), ..Default::default() }).await;
    assert!(missing.is_err());

    let (st, _, body) = http("GET", &format!("http://{m}/healthz"), &[], None);
    assert_eq!((st, String::from_utf8_lossy(&body).trim()), (200, "ok"));
    let (st, _, body) = http("GET", &format!("http://{m}/readyz"), &[], None);
    let ready = String::from_utf8_lossy(&body).to_string();
    assert_eq!(st, 200, "{ready}");
    for check in ["space", "write", "plugins", "indexes"] {
        assert!(ready.lines().any(|l| l.starts_with("ok") && l.contains(check)), "{check}: {ready}");
    }

    let (st, head, body) = http("GET", &format!("http://{m}/metrics"), &[], None);
    assert_eq!(st, 200, "{head}");
    let scrape = String::from_utf8(body.clone()).unwrap();
    assert!(scrape.contains(r#"strata_requests_total{op="put",code="OK"} 1"#), "{scrape}");
    assert!(scrape.contains(r#"strata_requests_total{op="get",code="NOT_FOUND"} 1"#), "{scrape}");
    assert!(scrape.contains("strata_bytes_received_total 100000"), "{scrape}");
    assert!(scrape.contains("strata_bytes_sent_total 100000"), "{scrape}");
    assert!(scrape.contains("strata_ready 1"), "{scrape}");
    assert!(scrape.contains(r#"strata_plugin_calls_total{plugin="#), "{scrape}");
    let n = names(&scrape);
    for name in ["strata_request_duration_seconds_bucket", "strata_objects", "strata_free_bytes", "strata_health_check"] {
        assert!(n.contains(name), "{name}: {n:?}");
    }
    assert!(!scrape.contains("a/one"), "no key names in labels");
    promtool_check(&body);
}

/// `--log-format json`: every line the server logs is one JSON object.
#[test]
fn logs_can_be_json() {
    let s = TestServer::prepare("127.0.0.1", "", Vec::new());
    let mut child = Command::new(strata_bin())
        .args(["--log-format", "json", "serve", "--config"])
        .arg(s.dir.path().join("strata.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    assert!(lines.next().unwrap().unwrap().starts_with("strata listening on"));
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&o.stderr);
    assert!(logs.lines().count() >= 2, "{logs}");
    for l in logs.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
}

/// A free loopback port for a program that wants a fixed one.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn prom_query(prom: &str, q: &str) -> Vec<Value> {
    let url = format!("http://{prom}/api/v1/query?query={}", form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let (st, _, body) = http("GET", &url, &[], None);
    assert_eq!(st, 200, "{q}: {}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn prometheus_scrapes_a_cluster_and_the_dashboard_queries_exist() {
    let net = crate::cluster::Net::start(3, &format!("{METRICS}[storage]\ngc_interval = \"1s\"\nscrub_interval = \"1s\"\n"));
    net.form().await;
    let mut c = net.nodes[0].client().await;
    for i in 0..5 {
        put_key(&mut c, &format!("k{i}"), &random_bytes(50_000)).await;
    }
    assert_eq!(get_key(&mut c, "k1").await.unwrap().len(), 50_000);
    c.lock_acquire(pb::LockAcquireRequest { name: "job".into(), ttl_ms: 5000, ..Default::default() }).await.unwrap();
    let o = net.nodes[0].cli(&["index", "create", "by-size", "--field", "size"]);
    assert!(o.status.success(), "{}", text(&o));

    let targets: Vec<String> = net.nodes.iter().map(|n| format!("'{}'", n.metrics_addr())).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let mut server = Command::new(apt_tool("prometheus", "prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(std::mem::replace(&mut server, Command::new("true").spawn().unwrap()));

    // Every node up, then every name the dashboard uses answered by them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::process::Command::new("curl").args(["-s", &format!("http://{prom}/-/ready")]).output().unwrap();
        if up.status.success() && prom_query(&prom, "up == 1").len() == 3 && !prom_query(&prom, "strata_gc_runs_total").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never saw three nodes up");
        std::thread::sleep(Duration::from_millis(500));
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/strata.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let re = |e: &str| -> Vec<String> {
        let mut out = Vec::new();
        let b = e.as_bytes();
        let mut i = 0;
        while let Some(at) = e[i..].find("strata_") {
            let start = i + at;
            let mut end = start;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                end += 1;
            }
            out.push(e[start..end].to_string());
            i = end;
        }
        out
    };
    let used: std::collections::BTreeSet<String> = exprs.iter().flat_map(|e| re(e)).collect();
    assert!(used.len() >= 30, "the dashboard covers the metrics: {used:?}");
    for name in &used {
        let found = prom_query(&prom, &format!("count by (instance) ({name})"));
        assert!(!found.is_empty(), "the dashboard queries {name}, which no node exports");
    }
    // Per-node series come from all three.
    for name in ["strata_raft_term", "strata_requests_total", "strata_node_state", "strata_ready"] {
        assert_eq!(prom_query(&prom, &format!("count by (instance) ({name})")).len(), 3, "{name} from every node");
    }
    assert_eq!(prom_query(&prom, "sum(strata_raft_is_leader)")[0]["value"][1], "1", "one leader");
    assert_eq!(prom_query(&prom, "sum(strata_node_state{state=\"healthy\"})")[0]["value"][1], "9", "each of 3 sees 3 healthy");
    // Every panel's query runs.
    for e in &exprs {
        let e = e.replace("$instance", ".*");
        let url = format!("http://{prom}/api/v1/query?query={}", form_urlencoded::byte_serialize(e.as_bytes()).collect::<String>());
        let (st, _, body) = http("GET", &url, &[], None);
        assert_eq!(st, 200, "{e}: {}", String::from_utf8_lossy(&body));
    }
    let (_, _, scrape) = http("GET", &format!("http://{}/metrics", net.nodes[1].metrics_addr()), &[], None);
    promtool_check(&scrape);
}

/// A cluster node is not ready until it is a member that knows a leader.
#[tokio::test]
async fn readiness_follows_cluster_membership() {
    let net = crate::cluster::Net::start(1, METRICS);
    let m = net.nodes[0].metrics_addr();
    let (st, _, body) = http("GET", &format!("http://{m}/readyz"), &[], None);
    assert_eq!(st, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("FAIL cluster: not a member"), "{}", String::from_utf8_lossy(&body));
    let o = net.nodes[0].cli(&["health"]);
    assert!(!o.status.success() && text(&o).contains("NOT READY"), "{}", text(&o));
    crate::cluster::ok(net.nodes[0].cli(&["cluster", "init"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, _) = http("GET", &format!("http://{m}/readyz"), &[], None);
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready after init");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(text(&net.nodes[0].cli(&["health"])).contains("READY"));
}
