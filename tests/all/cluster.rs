//! The cluster control plane through real `strata serve` processes. Nodes
//! reach each other through fault-injecting proxies (`proxy.rs`), each node
//! on its own loopback address so a proxy can tell peers apart.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata::api::pb;
use tonic::Code;

use crate::common::*;
use crate::proxy::Proxy;

/// A `[cluster]` section with a secret file in `dir`.
fn cluster_toml(dir: &std::path::Path) -> String {
    format!("{}zone = \"a\"\n", cluster_toml_zoneless(dir))
}

/// The same without a zone, for nodes that set their own.
pub(crate) fn cluster_toml_zoneless(dir: &std::path::Path) -> String {
    let secret = dir.join("cluster.secret");
    std::fs::write(&secret, "a shared secret of some length\n").unwrap();
    format!(
        "[cluster]\nsecret_file = {secret:?}\nregion = \"eu\"\nheartbeat_interval = \"100ms\"\nsuspect_after = \"600ms\"\ndown_after = \"1500ms\"\n"
    )
}

pub(crate) async fn status(c: &mut Client) -> pb::ClusterView {
    c.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner()
}

async fn status_until(c: &mut Client, what: &str, ok: impl Fn(&pb::ClusterView) -> bool) -> pb::ClusterView {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = status(c).await;
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Nodes, each behind its proxy; peers know a node by its proxy's address.
pub(crate) struct Net {
    pub nodes: Vec<TestServer>,
    pub proxies: Vec<Proxy>,
    pub ips: Vec<IpAddr>,
    pub _dir: tempfile::TempDir,
}

impl Net {
    /// Starts `n` nodes; `extra` goes into every `[cluster]` section.
    pub fn start(n: usize, extra: &str) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let base = cluster_toml(dir.path());
        let mut net = Net { nodes: Vec::new(), proxies: Vec::new(), ips: Vec::new(), _dir: dir };
        for _ in 0..n {
            net.add(&base, extra);
        }
        net
    }

    /// Like `start`, but the nodes are not started yet (a test restores
    /// into them first); `boot` starts one.
    pub fn prepare(n: usize, extra: &str) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let base = cluster_toml(dir.path());
        let mut net = Net { nodes: Vec::new(), proxies: Vec::new(), ips: Vec::new(), _dir: dir };
        for _ in 0..n {
            net.add_prepared(&base, extra);
        }
        net
    }

    pub fn add(&mut self, base: &str, extra: &str) -> usize {
        let i = self.add_prepared(base, extra);
        self.boot(i);
        i
    }

    fn add_prepared(&mut self, base: &str, extra: &str) -> usize {
        let i = self.nodes.len();
        let ip: IpAddr = format!("127.0.0.{}", 20 + i).parse().unwrap();
        let proxy = Proxy::start();
        let toml = format!("{base}advertise = \"{}\"\nsource_address = \"{ip}\"\n{extra}\n", proxy.addr);
        self.nodes.push(TestServer::prepare(&ip.to_string(), &toml, Vec::new()));
        self.proxies.push(proxy);
        self.ips.push(ip);
        i
    }

    /// Starts node `i`, behind its proxy, on a port it keeps.
    pub fn boot(&mut self, i: usize) {
        self.nodes[i].boot();
        self.proxies[i].set_target(self.nodes[i].addr());
        self.nodes[i].pin_port();
    }

    /// Starts one more node like the first ones (not yet joined).
    pub fn add_like_the_rest(&mut self, extra: &str) -> usize {
        let base = cluster_toml(self._dir.path());
        self.add(&base, extra)
    }

    pub fn peer(&self, i: usize) -> String {
        self.proxies[i].addr.to_string()
    }

    /// Node 0 inits; the others join through it. Returns every node's view
    /// once all agree.
    pub async fn form(&self) -> Vec<pb::ClusterView> {
        ok(self.nodes[0].cli(&["cluster", "init"]));
        for n in &self.nodes[1..] {
            let shown = ok(n.cli(&["cluster", "join", &self.peer(0)]));
            assert!(!shown.contains("not in a cluster yet"), "a node that just joined says so: {shown}");
        }
        self.agree(&(0..self.nodes.len()).collect::<Vec<_>>(), self.nodes.len()).await
    }

    /// Waits until nodes `which` see `voters` voters, all healthy, and the
    /// same leader; returns their views.
    pub async fn agree(&self, which: &[usize], voters: usize) -> Vec<pb::ClusterView> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut views = Vec::new();
            for &i in which {
                views.push(status(&mut self.nodes[i].client().await).await);
            }
            let settled = views.iter().all(|v| {
                v.leader != 0
                    && v.leader == views[0].leader
                    && v.nodes.len() == voters
                    && v.nodes.iter().all(|n| n.role == "voter" && n.state == "healthy")
                    && v.nodes.iter().map(|n| (n.id, &n.address)).eq(views[0].nodes.iter().map(|n| (n.id, &n.address)))
            });
            if settled {
                return views;
            }
            assert!(Instant::now() < deadline, "nodes {which:?} never agreed: {views:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn index_of(&self, views: &[pb::ClusterView], id: u64) -> usize {
        views.iter().position(|v| v.node_id == id).unwrap()
    }

    /// Cuts `side` off from every other node, both ways.
    pub fn partition(&self, side: &[usize]) {
        let inside: Vec<IpAddr> = side.iter().map(|&i| self.ips[i]).collect();
        let outside: Vec<IpAddr> = (0..self.nodes.len()).filter(|i| !side.contains(i)).map(|i| self.ips[i]).collect();
        for (i, p) in self.proxies.iter().enumerate() {
            p.block(if side.contains(&i) { &outside } else { &inside });
        }
    }

    pub fn heal(&self) {
        self.proxies.iter().for_each(Proxy::heal);
    }
}

fn policy(replicas: u32) -> pb::SetReplicationRequest {
    policy_for("photos", replicas)
}

pub(crate) fn policy_for(bucket: &str, replicas: u32) -> pb::SetReplicationRequest {
    pb::SetReplicationRequest {
        bucket: bucket.into(),
        policy: Some(pb::ReplicationPolicy {
            strategy: "eager".into(),
            selector: "rendezvous".into(),
            replicas,
            min_replicas: 1,
            params: Default::default(),
            consistency: String::new(),
        }),
    }
}

async fn replicas(c: &mut Client, bucket: &str) -> Result<u32, tonic::Status> {
    c.get_replication(pb::GetReplicationRequest { bucket: bucket.into() }).await.map(|r| r.into_inner().replicas)
}

#[tokio::test]
async fn one_node_inits_leads_and_keeps_its_id_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(&cluster_toml(dir.path()));
    s.pin_port();
    let mut c = s.client().await;
    let before = status(&mut c).await;
    assert!(before.nodes.is_empty() && before.leader == 0, "{before:?}");
    assert!(ok(s.cli(&["cluster", "status"])).contains("not in a cluster yet"));

    ok(s.cli(&["cluster", "init"]));
    let v = status_until(&mut c, "a leader", |v| v.leader != 0).await;
    assert_eq!(v.leader, v.node_id);
    assert_eq!(v.nodes.len(), 1);
    assert_eq!(v.cluster_id.len(), 32, "{v:?}");
    assert_eq!((v.nodes[0].region.as_str(), v.nodes[0].zone.as_str(), v.nodes[0].role.as_str()), ("eu", "a", "voter"));
    assert!(v.nodes[0].capacity > 0, "capacity defaults to the disk's size");

    let table = ok(s.cli(&["cluster", "status"]));
    assert!(table.contains("USED/CAPACITY") && table.contains("voter (leader)") && table.contains("healthy"), "{table}");
    let err = c.cluster_init(pb::ClusterInitRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    c.set_replication(policy(2)).await.unwrap();

    s.kill9();
    s.boot();
    let mut c = s.client().await;
    let after = status_until(&mut c, "leader again after restart", |v| v.leader != 0).await;
    assert_eq!((after.node_id, after.cluster_id.as_str()), (v.node_id, v.cluster_id.as_str()), "the ids are kept");
    assert_eq!(after.nodes.len(), 1);
    assert_eq!(replicas(&mut c, "photos").await.unwrap(), 2, "committed state survives kill -9");
}

#[tokio::test]
async fn a_server_without_cluster_config_says_so() {
    let s = TestServer::start("");
    let mut c = s.client().await;
    let err = c.cluster_status(pb::ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("[cluster]"), "{}", err.message());
    let err = c.lock_acquire(pb::LockAcquireRequest { name: "x".into(), ttl_ms: 1000, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // A bucket policy needs a cluster, whatever the policy says.
    for consistency in ["", "weird"] {
        let policy = pb::ReplicationPolicy { replicas: 2, consistency: consistency.into(), ..Default::default() };
        let err = c.create_bucket(pb::CreateBucketRequest { name: "pics".into(), policy: Some(policy) }).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("needs a cluster"), "{}", err.message());
    }
}

/// Forms `n` nodes, checks that all agree, kills the leader, times the
/// election of a new one, and brings the old leader back as a follower
/// that catches up with what was committed meanwhile.
async fn form_fail_over_and_catch_up(n: usize) {
    let mut net = Net::start(n, "");
    let views = net.form().await;
    let leader = views[0].leader;
    let mut c = net.nodes[1].client().await;
    c.set_replication(policy(3)).await.unwrap();

    let dead = net.index_of(&views, leader);
    net.nodes[dead].kill9();
    let started = Instant::now();
    let alive: Vec<usize> = (0..n).filter(|i| *i != dead).collect();
    let mut c = net.nodes[alive[0]].client().await;
    let v = status_until(&mut c, "a new leader", |v| v.leader != 0 && v.leader != leader).await;
    let failover = started.elapsed();
    println!("{n} nodes: new leader {} after {failover:?}", v.leader);
    assert!(failover < Duration::from_secs(5), "failover took {failover:?}");
    // The state is intact and the cluster goes on committing.
    assert_eq!(replicas(&mut c, "photos").await.unwrap(), 3);
    c.set_replication(policy(2)).await.unwrap();

    // The killed node restarts, follows, and has the change made without it.
    net.nodes[dead].boot();
    let views = net.agree(&(0..n).collect::<Vec<_>>(), n).await;
    assert!(views.iter().all(|w| w.leader == v.leader), "{views:?}");
    let mut back = net.nodes[dead].client().await;
    assert_eq!(replicas(&mut back, "photos").await.unwrap(), 2);
    let applied = status(&mut back).await.applied;
    assert!(applied >= v.applied, "caught up: {applied} >= {}", v.applied);
    // Its heartbeats tell the others how far it got.
    let dead_id = views[dead].node_id;
    status_until(&mut c, "the restarted node's applied index", |w| {
        w.nodes.iter().any(|n| n.id == dead_id && n.applied >= applied && n.term == w.term)
    })
    .await;
}

#[tokio::test]
async fn three_nodes_form_agree_and_elect_a_new_leader_when_one_dies() {
    form_fail_over_and_catch_up(3).await;
}

#[tokio::test]
async fn five_nodes_form_agree_and_elect_a_new_leader_when_one_dies() {
    form_fail_over_and_catch_up(5).await;
}

#[tokio::test]
async fn a_partitioned_minority_cannot_commit_and_all_converge_after_healing() {
    let net = Net::start(3, "");
    let views = net.form().await;
    let old = net.index_of(&views, views[0].leader);
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();

    // Watch every node's claim to lead, all along: (term -> leaders).
    let stop = Arc::new(AtomicBool::new(false));
    let claims = Arc::new(std::sync::Mutex::new(BTreeMap::<u64, std::collections::BTreeSet<u64>>::new()));
    let mut watchers = Vec::new();
    for s in &net.nodes {
        let (url, stop, claims) = (s.url.clone(), stop.clone(), claims.clone());
        watchers.push(tokio::spawn(async move {
            let Ok(ch) = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await else { return };
            let mut c = pb::strata_client::StrataClient::new(ch);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(v) = c.cluster_status(pb::ClusterStatusRequest {}).await {
                    let v = v.into_inner();
                    if v.leader == v.node_id {
                        claims.lock().unwrap().entry(v.term).or_default().insert(v.node_id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Cut the leader off: alone, it cannot commit.
    net.partition(&[old]);
    let mut lonely = net.nodes[old].client().await;
    let err = lonely.set_replication(policy_for("minority", 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    println!("minority write: {}", err.message());

    // The majority elects a leader and commits.
    let mut c = net.nodes[majority[0]].client().await;
    let v = status_until(&mut c, "a majority leader", |v| v.leader != 0 && v.leader != views[0].leader).await;
    c.set_replication(policy_for("majority", 2)).await.unwrap();
    // The lone node sees its peers go silent.
    let w = status_until(&mut lonely, "peers suspect or down", |w| w.nodes.iter().filter(|n| n.state != "healthy").count() == 2).await;
    assert!(w.nodes.iter().all(|n| n.id == w.node_id || n.state != "healthy"), "{w:?}");

    // Heal: all converge on the majority's leader and state.
    net.heal();
    let views = net.agree(&[0, 1, 2], 3).await;
    assert!(views.iter().all(|w| w.leader == views[0].leader), "{views:?}");
    for s in &net.nodes {
        let mut c = s.client().await;
        assert_eq!(replicas(&mut c, "majority").await.unwrap(), 2);
        let e = replicas(&mut c, "minority").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "the minority's write never committed: {e:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.await.unwrap();
    }
    let claims = claims.lock().unwrap().clone();
    println!("leaders by term: {claims:?}");
    assert!(claims.values().all(|l| l.len() == 1), "two leaders in one term: {claims:?}");
    assert!(claims.keys().any(|t| *t > views[0].term.min(v.term) - 1));
}

#[tokio::test]
async fn a_killed_node_goes_suspect_then_down_and_healthy_after_restart() {
    let mut net = Net::start(3, "");
    net.form().await;
    let mut c = net.nodes[0].client().await;
    let victim_id = status(&mut c).await.nodes.iter().find(|n| n.address == net.peer(2)).unwrap().id;
    net.nodes[2].kill9();
    let killed = Instant::now();
    let state = |v: &pb::ClusterView| v.nodes.iter().find(|n| n.id == victim_id).unwrap().state.clone();
    let (mut suspect, mut down) = (None, None);
    while down.is_none() {
        let v = status(&mut c).await;
        match state(&v).as_str() {
            "suspect" if suspect.is_none() => suspect = Some(killed.elapsed()),
            "down" => down = Some(killed.elapsed()),
            _ => {}
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "never went down: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (suspect, down) = (suspect.expect("suspect before down"), down.unwrap());
    // Node selectors get the cluster's view: the down node is not chosen.
    let place = |c: &mut Client| {
        let req = pb::PlaceRequest { key: "k".into(), replicas: 3, min_replicas: Some(1), ..Default::default() };
        let mut c = c.clone();
        async move { c.place(req).await.unwrap().into_inner().targets }
    };
    let targets = place(&mut c).await;
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(!targets.contains(&victim_id.to_string()), "{targets:?}");
    println!("suspect after {suspect:?}, down after {down:?} (configured 600ms and 1500ms)");
    // Not before the configured timings, and within a beat or two after them.
    assert!(suspect >= Duration::from_millis(500) && suspect < Duration::from_millis(1500), "{suspect:?}");
    assert!(down >= Duration::from_millis(1400) && down < Duration::from_millis(2500), "{down:?}");

    net.nodes[2].boot();
    let v = status_until(&mut c, "healthy again", |v| state(v) == "healthy").await;
    let n = v.nodes.iter().find(|n| n.id == victim_id).unwrap();
    assert!(n.last_heartbeat_ms >= 0 && n.last_heartbeat_ms < 1000, "{n:?}");
    assert!(n.capacity > 0 && (0.0..=1.0).contains(&n.load), "{n:?}");
    assert!(place(&mut c).await.contains(&victim_id.to_string()));
}

#[tokio::test]
async fn locks_keep_sixty_clients_on_three_nodes_exact() {
    let net = Net::start(3, "");
    net.form().await;
    const PER_CLIENT: u64 = 5;
    let counter = Arc::new(std::sync::Mutex::new(0u64));
    let inside = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for node in &net.nodes {
        for client in 0..20 {
            let ch = tonic::transport::Endpoint::from_shared(node.url.clone()).unwrap().connect().await.unwrap();
            let mut c = pb::strata_client::StrataClient::new(ch);
            let (counter, inside, tokens) = (counter.clone(), inside.clone(), tokens.clone());
            let who = format!("{}-{client}", node.url);
            tasks.push(tokio::spawn(async move {
                for round in 0..PER_CLIENT {
                    let req = pb::LockAcquireRequest {
                        name: "counter".into(),
                        holder: format!("{who}-{round}"),
                        ttl_ms: 10_000,
                        wait_ms: 120_000,
                    };
                    let g = c.lock_acquire(req).await.unwrap().into_inner();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    // Read, yield, write: lost updates show if exclusion fails.
                    let seen = *counter.lock().unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    *counter.lock().unwrap() = seen + 1;
                    tokens.lock().unwrap().push((seen, g.token));
                    inside.store(false, Ordering::SeqCst);
                    c.lock_release(pb::LockReleaseRequest { name: "counter".into(), token: g.token }).await.unwrap();
                }
            }));
        }
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let total = 60 * PER_CLIENT;
    println!("{total} lock rounds by 60 clients on 3 nodes in {:?}", started.elapsed());
    assert_eq!(*counter.lock().unwrap(), total);
    let mut tokens = tokens.lock().unwrap().clone();
    tokens.sort();
    assert!(tokens.windows(2).all(|w| w[0].1 < w[1].1), "fencing tokens grow with every grant");
}

#[tokio::test]
async fn a_dead_holders_lock_passes_on_after_its_lease_with_a_higher_token() {
    let mut net = Net::start(3, "");
    let views = net.form().await;
    // The holder works through the leader; the leader's node dies.
    let holder_node = net.index_of(&views, views[0].leader);
    let other = (holder_node + 1) % 3;
    let mut h = net.nodes[holder_node].client().await;
    let ttl = Duration::from_secs(6);
    let req = pb::LockAcquireRequest { name: "job".into(), holder: "first".into(), ttl_ms: ttl.as_millis() as u64, wait_ms: 0 };
    let first = h.lock_acquire(req).await.unwrap().into_inner();
    let granted = Instant::now();
    net.nodes[holder_node].kill9();

    let mut c = net.nodes[other].client().await;
    let req = pb::LockAcquireRequest { name: "job".into(), holder: "second".into(), ttl_ms: 3000, wait_ms: 0 };
    // Until the survivors elect a leader the answer is UNAVAILABLE.
    let busy = loop {
        let e = c.lock_acquire(req.clone()).await.unwrap_err();
        if e.code() != Code::Unavailable || granted.elapsed() > ttl - Duration::from_secs(2) {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    assert!(busy.message().contains("held by first"), "{}", busy.message());
    let next = c.lock_acquire(pb::LockAcquireRequest { wait_ms: 20_000, ..req }).await.unwrap().into_inner();
    let after = granted.elapsed();
    println!("next holder after {after:?} (lease {ttl:?})");
    assert!(after >= ttl - Duration::from_millis(300), "granted before the lease ran out: {after:?}");
    assert!(next.token > first.token, "{} > {}", next.token, first.token);
}

#[tokio::test]
async fn lock_run_holds_the_lock_while_the_command_runs() {
    let net = Net::start(1, "");
    net.form().await;
    let s = &net.nodes[0];
    let url = s.url.clone();
    // The command outlives its 1 s lease: renewals keep it.
    let run = std::thread::spawn(move || {
        cli(&url, &["lock", "run", "nightly", "--ttl", "1s", "--", "sh", "-c", "echo token=$STRATA_LOCK_TOKEN; sleep 2.5; exit 3"], None)
    });
    let mut c = s.client().await;
    let req = pb::LockAcquireRequest { name: "nightly".into(), holder: "other".into(), ttl_ms: 1000, wait_ms: 0 };
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait until `run` holds it, then check it stays held past the lease.
    loop {
        let locks = c.list_locks(pb::ListLocksRequest {}).await.unwrap().into_inner().locks;
        if !locks.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = c.lock_acquire(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "still held after its first lease: {err:?}");
    let out = run.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "the command's exit status: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("token="));
    // Released at exit: free at once.
    let g = c.lock_acquire(req.clone()).await.unwrap().into_inner();
    // A holder name is not a pass: another acquisition under the same name is refused.
    let err = c.lock_acquire(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    c.lock_release(pb::LockReleaseRequest { name: "nightly".into(), token: g.token }).await.unwrap();
}

#[tokio::test]
async fn lock_run_stops_the_whole_command_when_the_lease_cannot_be_renewed() {
    let mut net = Net::start(1, "");
    net.form().await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let url = net.nodes[0].url.clone();
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let run = std::thread::spawn(move || cli(&url, &["lock", "run", "job", "--ttl", "1s", "--", "sh", "-c", &script], None));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grandchild = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    // The only node dies: no renewal can succeed.
    net.nodes[0].kill9();
    let started = Instant::now();
    let out = run.join().unwrap();
    println!("lock run stopped its command {:?} after the node died", started.elapsed());
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(3), "stopped within the lease");
    assert!(String::from_utf8_lossy(&out.stderr).contains("lease"), "{}", String::from_utf8_lossy(&out.stderr));
    // The shell's own child went too: the whole process group was stopped.
    let alive = std::path::Path::new(&format!("/proc/{grandchild}")).exists()
        && !std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default().contains(") Z ");
    assert!(!alive, "process {grandchild} survived");
}

#[tokio::test]
async fn bad_joins_and_removals_get_clear_errors_and_leave_the_cluster_unharmed() {
    let mut net = Net::start(1, "");
    let views = net.form().await;
    let a = views[0].node_id;
    let dir = tempfile::tempdir().unwrap();
    let base = cluster_toml(dir.path());

    // Wrong secret.
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "a different secret, also long").unwrap();
    let bad_secret = base.replace(&format!("{:?}", dir.path().join("cluster.secret")), &format!("{wrong:?}"));
    let i = net.add(&bad_secret, "");
    let out = net.nodes[i].cli(&["cluster", "join", &net.peer(0)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret") && err.contains("PermissionDenied"), "{err}");

    // A node of another cluster.
    let i = net.add(&base, "");
    ok(net.nodes[i].cli(&["cluster", "init"]));
    status_until(&mut net.nodes[i].client().await, "its own cluster", |v| !v.cluster_id.is_empty()).await;
    let out = net.nodes[i].cli(&["cluster", "join", &net.peer(0)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("belongs to cluster"), "{err}");

    // A duplicate node id.
    let i = net.add(&base, &format!("node_id = {a}"));
    let out = net.nodes[i].cli(&["cluster", "join", &net.peer(0)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("node id {a} is already used")), "{err}");

    // An unreachable seed: the node runs, and says why it is alone.
    let i = net.add(&base, "seeds = [\"127.0.0.1:1\"]");
    let mut c = net.nodes[i].client().await;
    let v = status_until(&mut c, "the seed problem", |v| !v.problem.is_empty()).await;
    assert!(v.problem.contains("127.0.0.1:1") && v.nodes.is_empty(), "{v:?}");
    let out = net.nodes[i].cli(&["cluster", "join", "127.0.0.1:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("127.0.0.1:1") && err.contains("Unavailable"), "{err}");

    // A server that is no cluster node does not serve the peer service.
    let single = TestServer::start("");
    let out = net.nodes[i].cli(&["cluster", "join", &single.addr().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is it a cluster node") && err.contains("FailedPrecondition"), "{err}");

    // The last voter cannot be removed, nor leave.
    let out = net.nodes[0].cli(&["cluster", "remove", &a.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("last voter"), "{err}");
    let out = net.nodes[0].cli(&["cluster", "leave"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("last voter"));

    // Unharmed: one voter, leading, committing.
    let mut c = net.nodes[0].client().await;
    let v = status(&mut c).await;
    assert_eq!((v.nodes.len(), v.leader), (1, a), "{v:?}");
    c.set_replication(policy(1)).await.unwrap();
}

#[tokio::test]
async fn leave_remove_and_a_removed_id_never_returns() {
    let mut net = Net::start(4, "");
    let views = net.form().await;
    let id = |i: usize| views[0].nodes.iter().find(|n| n.address == net.peer(i)).unwrap().id;
    let (id1, id2) = (id(1), id(2));

    // Node 1 leaves gracefully, and says so.
    ok(net.nodes[1].cli(&["cluster", "leave"]));
    net.agree(&[0, 2, 3], 3).await;
    let gone = status(&mut net.nodes[1].client().await).await;
    assert!(gone.problem.contains("left the cluster"), "{gone:?}");

    // Node 2 dies and is removed by force (the other two are a majority).
    net.nodes[2].kill9();
    let out = ok(net.nodes[0].cli(&["cluster", "remove", &id2.to_string()]));
    assert!(out.contains(&format!("removed node {id2}")), "{out}");
    let v = net.agree(&[0, 3], 2).await;
    assert!(v[0].nodes.iter().all(|n| n.id != id1 && n.id != id2));

    // The removed node comes back: it may not rejoin under its old id.
    net.nodes[2].boot();
    let out = net.nodes[2].cli(&["cluster", "join", &net.peer(0)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("may never return"), "{err}");
    let mut c = net.nodes[0].client().await;
    c.set_replication(policy(1)).await.unwrap();
}

#[tokio::test]
async fn snapshots_purge_the_log_and_bring_a_new_node_up_to_date() {
    let mut net = Net::start(2, "snapshot_every = 20");
    net.form().await;
    let mut c = net.nodes[0].client().await;
    for i in 0..60u32 {
        c.set_replication(policy_for(&format!("bucket-{i:02}"), 1 + i % 3)).await.unwrap();
    }
    let v = status_until(&mut c, "a snapshot and a purge", |v| v.snapshot >= 40 && v.purged >= 20).await;
    println!("applied {}, snapshot at {}, purged to {}", v.applied, v.snapshot, v.purged);
    let dir = tempfile::tempdir().unwrap();
    let i = net.add(&cluster_toml(dir.path()), "snapshot_every = 20");
    ok(net.nodes[i].cli(&["cluster", "join", &net.peer(0)]));
    net.agree(&[0, 1, 2], 3).await;
    let mut n = net.nodes[i].client().await;
    assert_eq!(replicas(&mut n, "bucket-59").await.unwrap(), 1 + 59 % 3);
    assert_eq!(replicas(&mut n, "bucket-00").await.unwrap(), 1);

    // Every node restarts from its snapshot and log, with nothing lost.
    for s in &mut net.nodes {
        s.kill9();
    }
    for s in &mut net.nodes {
        s.boot();
    }
    net.agree(&[0, 1, 2], 3).await;
    for s in &net.nodes {
        let mut c = s.client().await;
        for b in [0, 31, 59] {
            assert_eq!(replicas(&mut c, &format!("bucket-{b:02}")).await.unwrap(), 1 + b % 3);
        }
    }
}
