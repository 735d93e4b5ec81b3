//! The health checks, run at start and every `metrics.check_interval`:
//! free space, a durable write probe, the plugins, and on a cluster the
//! membership (a leader known), the peers, the replication queue's age and
//! the indexes. `/readyz`, gRPC health and `strata health` read the last
//! run; only the checks marked `readiness` decide whether the node is ready.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::Monitor;

#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// Whether a failure makes the node not ready (else it is reported only).
    pub readiness: bool,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub ready: bool,
    pub checks: Vec<Check>,
    /// When the checks ran (Unix ms).
    pub at_ms: i64,
}

pub struct Health {
    last: RwLock<Report>,
    /// Set when the server begins to shut down: it is no longer ready.
    stopping: std::sync::atomic::AtomicBool,
    /// Where the write probe writes (the data directory's `tmp/`).
    probe_dir: PathBuf,
    max_lag: Duration,
}

fn check(name: &'static str, readiness: bool, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check { name, ok: true, detail, readiness },
        Err(detail) => Check { name, ok: false, detail, readiness },
    }
}

impl Health {
    pub fn new(probe_dir: PathBuf, max_lag: Duration) -> Self {
        let starting = Check { name: "start", ok: false, detail: "the checks have not run yet".into(), readiness: true };
        Self {
            last: RwLock::new(Report { ready: false, checks: vec![starting], at_ms: 0 }),
            stopping: Default::default(),
            probe_dir,
            max_lag,
        }
    }

    /// The server is shutting down: from now on it reports not ready, so
    /// load balancers send it nothing new.
    pub fn stopping(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut last = self.last.write().expect("health");
        last.checks.push(shutdown_check());
        last.ready = false;
    }

    pub fn report(&self) -> Report {
        self.last.read().expect("health").clone()
    }

    /// Runs every check and keeps the report.
    pub async fn run(&self, m: &Monitor) -> Report {
        let mut checks =
            vec![check("space", false, space(m).await), check("write", true, self.probe(m).await), check("plugins", true, plugins(m))];
        if let Some(c) = &m.cluster {
            let view = crate::api::cluster::handle_status(c).await.map_err(|e| tonic::Status::from(e).message().to_string());
            checks.push(check("cluster", true, view.as_ref().map_err(Clone::clone).and_then(membership)));
            checks.push(check("peers", false, view.as_ref().map_err(Clone::clone).and_then(peers)));
            checks.push(check("replication", false, self.replication(m).await));
        }
        checks.push(check("indexes", false, indexes(m).await));
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            checks.push(shutdown_check());
        }
        let ready = checks.iter().all(|c| c.ok || !c.readiness);
        let report = Report { ready, checks, at_ms: crate::cluster::now_ms() as i64 };
        *self.last.write().expect("health") = report.clone();
        report
    }

    /// A small durable write and its read, in the data directory, and a
    /// read of the metadata database.
    async fn probe(&self, m: &Monitor) -> Result<String, String> {
        let path = self.probe_dir.join(format!("health-probe-{:016x}", rand::random::<u64>()));
        let data: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let result = async {
            let mut f = tokio::fs::File::create(&path).await?;
            f.write_all(&data).await?;
            f.sync_all().await?;
            drop(f);
            let back = tokio::fs::read(&path).await?;
            if back != data {
                return Err(std::io::Error::other("the probe read back other bytes"));
            }
            Ok(())
        }
        .await;
        let _ = tokio::fs::remove_file(&path).await;
        result.map_err(|e| format!("a 4 KiB durable write in the data directory's tmp/ failed: {e}"))?;
        m.objects.meta().head().await.map_err(|e| format!("the metadata database does not answer: {e}"))?;
        Ok("a durable 4 KiB write, its read and a metadata read succeeded".into())
    }

    async fn replication(&self, m: &Monitor) -> Result<String, String> {
        let q = m.objects.meta().queue_stats().await.map_err(|e| e.to_string())?;
        let age = Duration::from_millis(q.oldest_ms);
        let detail = format!("{} copies owed to other nodes ({} retrying), the oldest {} s old", q.pending, q.retrying, age.as_secs());
        if age > self.max_lag {
            return Err(format!("{detail}: over metrics.max_replication_lag ({} s)", self.max_lag.as_secs()));
        }
        Ok(detail)
    }
}

fn shutdown_check() -> Check {
    Check { name: "shutdown", ok: false, detail: "the server is shutting down".into(), readiness: true }
}

async fn space(m: &Monitor) -> Result<String, String> {
    let s = m.objects.space().await.map_err(|e| e.to_string())?;
    let detail = format!("{} free, {} reserved for the store", bytesize::ByteSize(s.free), bytesize::ByteSize(s.reserve));
    if s.is_low() {
        return Err(format!("{detail}: low (puts are refused inside the reserve); free space or raise the disk"));
    }
    Ok(detail)
}

fn plugins(m: &Monitor) -> Result<String, String> {
    match m.plugins.list().len() {
        0 => Err("no plugin is loaded".into()),
        n => Ok(format!("{n} plugins loaded")),
    }
}

fn membership(v: &crate::api::pb::ClusterView) -> Result<String, String> {
    if v.nodes.is_empty() {
        return Err("not a member of a cluster yet: run `strata cluster init` or `cluster join`".into());
    }
    if v.leader == 0 {
        return Err(format!("no leader is known (term {})", v.term));
    }
    Ok(format!("member of {} nodes, leader {}, term {}", v.nodes.len(), v.leader, v.term))
}

fn peers(v: &crate::api::pb::ClusterView) -> Result<String, String> {
    let bad: Vec<String> = v.nodes.iter().filter(|n| n.state != "healthy").map(|n| format!("{} is {}", n.id, n.state)).collect();
    if bad.is_empty() {
        return Ok(format!("all {} members healthy", v.nodes.len()));
    }
    Err(bad.join(", "))
}

async fn indexes(m: &Monitor) -> Result<String, String> {
    let defs = m.objects.meta().list_indexes().await.map_err(|e| e.to_string())?;
    let head = m.objects.meta().head().await.map_err(|e| e.to_string())?;
    let failed: Vec<String> = defs.iter().filter_map(|d| d.error.as_ref().map(|e| format!("{}/{}: {e}", d.bucket, d.name))).collect();
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    let lag = defs.iter().map(|d| d.lag(head)).max().unwrap_or(0);
    Ok(format!("{} indexes, at most {lag} versions behind", defs.len()))
}

/// Runs the checks now (before the server answers) and then every
/// `interval` until `stop`, setting gRPC health: the API's service is
/// SERVING while the node is ready, and each check has a service of its
/// own, `strata.check.<name>`.
pub async fn start(
    m: std::sync::Arc<Monitor>,
    interval: Duration,
    grpc: tonic_health::server::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    publish(&m.health.run(&m).await, &grpc).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            publish(&m.health.run(&m).await, &grpc).await;
        }
    });
}

async fn publish(r: &Report, grpc: &tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let status = |ok: bool| if ok { ServingStatus::Serving } else { ServingStatus::NotServing };
    grpc.set_service_status(API_SERVICE, status(r.ready)).await;
    // The whole server ("", what probes ask by default) follows readiness too.
    grpc.set_service_status("", status(r.ready)).await;
    for c in &r.checks {
        grpc.set_service_status(format!("strata.check.{}", c.name), status(c.ok)).await;
        if !c.ok {
            tracing::warn!(check = c.name, detail = %c.detail, "a health check fails");
        }
    }
}

/// The gRPC API's service name, as gRPC health knows it.
pub const API_SERVICE: &str = "strata.v1.Strata";
