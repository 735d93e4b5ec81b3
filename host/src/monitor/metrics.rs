//! Prometheus metrics through the `metrics` crate. Events are counted where
//! they happen (requests in the API, plugin calls in the plugin host, GC
//! and scrub passes, Raft commits, leader changes and lock grants in the
//! cluster); what the node already keeps (totals, cache, plugin counters,
//! queue, cluster view, health) is read at each scrape. Labels are bounded:
//! operation names, status codes, plugin names, node ids, index names;
//! never a key or an object name.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use openraft::async_runtime::WatchReceiver;

use super::Monitor;

/// Latency buckets (seconds): 100 µs to 60 s.
const BUCKETS: [f64; 16] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

/// Installs the process's recorder; `None` if one is installed already.
pub fn install() -> Option<PrometheusHandle> {
    // Series not set for two minutes go (a dropped index's lag, a removed
    // member's state); what is read at each scrape is set again just before.
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .ok()?
        .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(std::time::Duration::from_secs(120)))
        .install_recorder()
        .ok()?;
    describe();
    Some(handle)
}

fn describe() {
    use metrics::Unit::{Bytes, Count, Seconds};
    describe_counter!("strata_requests_total", Count, "gRPC API calls by operation and status code");
    describe_histogram!("strata_request_duration_seconds", Seconds, "gRPC API call latency by operation");
    describe_counter!("strata_bytes_received_total", Bytes, "object bytes clients put");
    describe_counter!("strata_bytes_sent_total", Bytes, "object bytes clients got");
    describe_counter!("strata_cache_hits_total", Count, "metadata cache hits");
    describe_counter!("strata_cache_misses_total", Count, "metadata cache misses");
    describe_gauge!("strata_objects", Count, "live objects");
    describe_gauge!("strata_versions", Count, "versions kept");
    describe_gauge!("strata_blobs", Count, "unique blobs stored");
    describe_gauge!("strata_logical_bytes", Bytes, "bytes of live versions as clients see them");
    describe_gauge!("strata_physical_bytes", Bytes, "bytes blob files take after dedup and compression");
    describe_gauge!("strata_quarantined_blobs", Count, "blobs found damaged and quarantined");
    describe_gauge!("strata_free_bytes", Bytes, "least free space on the data and metadata disks");
    describe_gauge!("strata_reserved_bytes", Bytes, "free space puts leave (storage.min_free_space)");
    describe_counter!("strata_gc_runs_total", Count, "GC passes");
    describe_counter!("strata_gc_blobs_removed_total", Count, "blobs GC removed");
    describe_counter!("strata_gc_bytes_freed_total", Bytes, "bytes GC freed");
    describe_counter!("strata_scrub_runs_total", Count, "scrub passes");
    describe_counter!("strata_scrub_blobs_verified_total", Count, "blobs scrub read and verified");
    describe_counter!("strata_scrub_corrupt_blobs_total", Count, "damaged blobs scrub found");
    describe_counter!("strata_plugin_calls_total", Count, "plugin calls by plugin");
    describe_counter!("strata_plugin_errors_total", Count, "errors plugins returned");
    describe_counter!("strata_plugin_traps_total", Count, "plugin calls that trapped");
    describe_counter!("strata_plugin_timeouts_total", Count, "plugin calls stopped at wasm.call_timeout");
    describe_counter!("strata_plugin_memory_refusals_total", Count, "plugin allocations refused at wasm.memory_limit");
    describe_histogram!("strata_plugin_call_duration_seconds", Seconds, "plugin call latency by plugin");
    describe_gauge!("strata_index_lag_versions", Count, "versions an index has yet to take in");
    describe_gauge!("strata_replication_pending", Count, "copies this node owes other nodes");
    describe_gauge!("strata_replication_retrying", Count, "owed copies whose last attempt failed");
    describe_gauge!("strata_replication_lag_seconds", Seconds, "age of the oldest owed copy");
    describe_counter!("strata_anti_entropy_passes_total", Count, "anti-entropy passes");
    describe_counter!("strata_anti_entropy_partitions_differing_total", Count, "partitions whose digests differed from a peer's");
    describe_counter!("strata_anti_entropy_rows_read_total", Count, "version rows anti-entropy read here to compare");
    describe_counter!("strata_anti_entropy_rows_served_total", Count, "version rows listed for peers' anti-entropy");
    describe_counter!("strata_anti_entropy_copies_queued_total", Count, "copies anti-entropy found missing and queued");
    describe_gauge!("strata_node_state", Count, "1 for each member's state as this node judges it (healthy, suspect, down)");
    describe_gauge!("strata_node_capacity_bytes", Bytes, "each member's declared capacity");
    describe_gauge!("strata_node_used_bytes", Bytes, "each member's used bytes, from its heartbeat");
    describe_gauge!("strata_raft_term", Count, "the Raft term this node is in");
    describe_gauge!("strata_raft_is_leader", Count, "1 while this node leads");
    describe_gauge!("strata_raft_has_leader", Count, "1 while this node knows a leader");
    describe_counter!("strata_raft_leader_changes_total", Count, "leader changes this node saw");
    describe_histogram!("strata_raft_commit_duration_seconds", Seconds, "time to commit a cluster-state write");
    describe_counter!("strata_lock_grants_total", Count, "leased locks granted through this node");
    describe_gauge!("strata_health_check", Count, "1 while a health check passes, by check");
    describe_gauge!("strata_ready", Count, "1 while the node is ready to serve");
    describe_counter!("strata_auth_refusals_total", Count, "calls refused for their token (or its absence), by code");
}

/// Sets what is read rather than counted, just before a scrape renders.
pub async fn refresh(m: &Monitor) {
    if let Ok(s) = m.objects.meta().stats().await {
        gauge!("strata_objects").set(s.objects as f64);
        gauge!("strata_versions").set(s.versions as f64);
        gauge!("strata_blobs").set(s.blobs as f64);
        gauge!("strata_logical_bytes").set(s.live_bytes as f64);
        gauge!("strata_physical_bytes").set(s.stored_bytes as f64);
        gauge!("strata_quarantined_blobs").set(s.corrupt_blobs as f64);
        counter!("strata_cache_hits_total").absolute(s.cache.hits);
        counter!("strata_cache_misses_total").absolute(s.cache.misses);
    }
    if let Ok(space) = m.objects.space().await {
        gauge!("strata_free_bytes").set(space.free as f64);
        gauge!("strata_reserved_bytes").set(space.reserve as f64);
    }
    for (info, st) in m.plugins.list() {
        let p = info.name;
        counter!("strata_plugin_calls_total", "plugin" => p.clone()).absolute(st.calls);
        counter!("strata_plugin_errors_total", "plugin" => p.clone()).absolute(st.errors);
        counter!("strata_plugin_traps_total", "plugin" => p.clone()).absolute(st.traps);
        counter!("strata_plugin_timeouts_total", "plugin" => p.clone()).absolute(st.timeouts);
        counter!("strata_plugin_memory_refusals_total", "plugin" => p).absolute(st.memory_refusals);
    }
    if let (Ok(defs), Ok(head)) = (m.objects.meta().list_indexes().await, m.objects.meta().head().await) {
        for d in defs {
            let lag = d.lag(head) as f64;
            gauge!("strata_index_lag_versions", "bucket" => d.bucket, "index" => d.name).set(lag);
        }
    }
    if let Some(c) = &m.cluster {
        if let Ok(q) = m.objects.meta().queue_stats().await {
            gauge!("strata_replication_pending").set(q.pending as f64);
            gauge!("strata_replication_retrying").set(q.retrying as f64);
            gauge!("strata_replication_lag_seconds").set(q.oldest_ms as f64 / 1000.0);
        }
        if let Ok(v) = crate::api::cluster::handle_status(c).await {
            gauge!("strata_raft_term").set(v.term as f64);
            gauge!("strata_raft_is_leader").set(f64::from(u8::from(v.leader != 0 && v.leader == v.node_id)));
            gauge!("strata_raft_has_leader").set(f64::from(u8::from(v.leader != 0)));
            for n in v.nodes {
                let id = n.id.to_string();
                for state in ["healthy", "suspect", "down"] {
                    gauge!("strata_node_state", "node" => id.clone(), "state" => state).set(f64::from(u8::from(n.state == state)));
                }
                gauge!("strata_node_capacity_bytes", "node" => id.clone()).set(n.capacity as f64);
                gauge!("strata_node_used_bytes", "node" => id).set(n.used as f64);
            }
        }
    }
    let r = m.health.report();
    for c in &r.checks {
        gauge!("strata_health_check", "check" => c.name).set(f64::from(u8::from(c.ok)));
    }
    gauge!("strata_ready").set(f64::from(u8::from(r.ready)));
}

/// Counts leader changes as this node's Raft reports them, until the
/// metrics channel closes.
pub fn watch_leader(c: std::sync::Arc<crate::cluster::node::Cluster>) {
    let mut rx = c.raft.metrics();
    tokio::spawn(async move {
        let mut leader = rx.borrow_watched().current_leader;
        while rx.changed().await.is_ok() {
            let now = rx.borrow_watched().current_leader;
            if now != leader {
                if now.is_some() {
                    counter!("strata_raft_leader_changes_total").increment(1);
                }
                leader = now;
            }
        }
    });
}
