//! Human tables and `--json` for scripts.

use serde_json::{Value, json};

use crate::api::pb;

pub fn value(v: &pb::Value) -> Value {
    use pb::value::Kind;
    match &v.kind {
        Some(Kind::String(s)) => json!(s),
        Some(Kind::Number(n)) => json!(n),
        Some(Kind::Boolean(b)) => json!(b),
        Some(Kind::List(l)) => Value::Array(l.values.iter().map(value).collect()),
        None => Value::Null,
    }
}

pub fn object_json(o: &pb::ObjectInfo) -> Value {
    let attrs: serde_json::Map<String, Value> = o.attributes.iter().map(|(k, v)| (k.clone(), value(v))).collect();
    let replicas: Vec<Value> = o.replicas.iter().map(|r| json!({"node_id": r.node_id, "address": r.address, "state": r.state})).collect();
    json!({
        "bucket": o.bucket, "key": o.key, "version": o.version, "digest": o.digest,
        "size": o.size, "content_type": o.content_type, "attributes": attrs,
        "created_ms": o.created_ms, "modified_ms": o.modified_ms,
        "delete_marker": o.delete_marker, "latest": o.latest, "replicas": replicas,
    })
}

fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn objects(list: &[pb::ObjectInfo], json: bool) {
    if json {
        println!("{}", Value::Array(list.iter().map(object_json).collect()));
        return;
    }
    for o in list {
        println!("{:>12}  {}  {}", o.size, time(o.modified_ms), o.key);
    }
}

pub fn object(o: &pb::ObjectInfo, json: bool) {
    if json {
        println!("{}", object_json(o));
        return;
    }
    println!("bucket:        {}", o.bucket);
    println!("key:           {}", o.key);
    println!("version:       {}{}", o.version, if o.latest { " (latest)" } else { "" });
    if o.delete_marker {
        println!("delete marker: yes");
    }
    println!("size:          {}", o.size);
    println!("digest:        sha256:{}", o.digest);
    println!("content type:  {}", o.content_type);
    println!("created:       {}", time(o.created_ms));
    println!("modified:      {}", time(o.modified_ms));
    let mut attrs: Vec<_> = o.attributes.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in attrs {
        println!("attribute:     {k} = {}", value(v));
    }
    for r in &o.replicas {
        println!("replica:       node {} ({}) {}", r.node_id, r.address, r.state);
    }
}

pub fn versions(list: &[pb::ObjectInfo], json: bool) {
    if json {
        println!("{}", Value::Array(list.iter().map(object_json).collect()));
        return;
    }
    for o in list {
        let what = if o.delete_marker { "delete marker".to_string() } else { format!("{} bytes", o.size) };
        println!("{}  {}  {}{}", o.version, time(o.modified_ms), what, if o.latest { "  (latest)" } else { "" });
    }
}

pub fn buckets(list: &[pb::Bucket], json: bool) {
    if json {
        let v: Vec<Value> = list.iter().map(|b| json!({"name": b.name, "created_ms": b.created_ms, "objects": b.object_count})).collect();
        println!("{}", Value::Array(v));
        return;
    }
    for b in list {
        println!("{:<40} {:>10} objects  created {}", b.name, b.object_count, time(b.created_ms));
    }
}

pub fn stats(s: &pb::StatsResponse, json: bool) {
    let ops: Vec<Value> = s
        .ops
        .iter()
        .map(|o| json!({"op": o.op, "count": o.count, "errors": o.errors, "mean_ms": o.mean_ms, "p50_ms": o.p50_ms, "p99_ms": o.p99_ms}))
        .collect();
    if json {
        println!(
            "{}",
            json!({
                "objects": s.objects, "versions": s.versions, "blobs": s.blobs,
                "logical_bytes": s.logical_bytes, "physical_bytes": s.physical_bytes,
                "dedup_ratio": s.dedup_ratio, "cache_hits": s.cache_hits, "cache_misses": s.cache_misses,
                "cache_hit_ratio": s.cache_hit_ratio, "corrupt_blobs": s.corrupt_blobs,
                "max_size": s.max_size, "free_bytes": s.free_bytes,
                "reserved_bytes": s.reserved_bytes, "low_space": s.low_space, "ops": ops,
            })
        );
        return;
    }
    println!("objects:          {}", s.objects);
    println!("versions:         {}", s.versions);
    println!("blobs:            {}", s.blobs);
    println!("logical bytes:    {}", s.logical_bytes);
    println!(
        "physical bytes:   {}{}",
        s.physical_bytes,
        if s.max_size > 0 { format!(" of {} allowed", s.max_size) } else { String::new() }
    );
    println!("dedup ratio:      {:.2}", s.dedup_ratio);
    println!("cache hit ratio:  {:.2} ({} hits, {} misses)", s.cache_hit_ratio, s.cache_hits, s.cache_misses);
    println!("corrupt blobs:    {}", s.corrupt_blobs);
    println!(
        "free space:       {} (puts keep {} free){}",
        s.free_bytes,
        s.reserved_bytes,
        if s.low_space { "  LOW: puts are refused inside the reserve; remove versions or add disk" } else { "" }
    );
    for o in &s.ops {
        println!(
            "op {:<14} count {:>8}  errors {:>5}  mean {:>8.3} ms  p50 {:>8.3} ms  p99 {:>8.3} ms",
            o.op, o.count, o.errors, o.mean_ms, o.p50_ms, o.p99_ms
        );
    }
}

pub fn plugins(list: &[pb::PluginStatus], json: bool) {
    if json {
        let v: Vec<Value> = list
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "kind": p.kind, "version": p.version, "description": p.description,
                    "source": p.source, "calls": p.calls, "errors": p.errors, "traps": p.traps,
                    "timeouts": p.timeouts, "memory_refusals": p.memory_refusals,
                    "instantiations": p.instantiations, "instances": p.instances,
                    "mean_us": p.mean_us, "max_us": p.max_us,
                })
            })
            .collect();
        println!("{}", Value::Array(v));
        return;
    }
    println!(
        "{:<18} {:<21} {:<8} {:>9} {:>6} {:>6} {:>8} {:>6} {:>10}  SOURCE",
        "NAME", "KIND", "VERSION", "CALLS", "ERRORS", "TRAPS", "TIMEOUTS", "OOM", "MEAN"
    );
    for p in list {
        println!(
            "{:<18} {:<21} {:<8} {:>9} {:>6} {:>6} {:>8} {:>6} {:>8.1}us  {}",
            p.name, p.kind, p.version, p.calls, p.errors, p.traps, p.timeouts, p.memory_refusals, p.mean_us, p.source
        );
    }
}

pub fn placement(r: &pb::PlaceResponse, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "targets": r.targets, "sync_targets": r.sync_targets,
                "async_targets": r.async_targets, "acks_required": r.acks_required,
            })
        );
        return;
    }
    println!("targets: {}", r.targets.join(" "));
    if r.acks_required > 0 {
        println!("sync:    {}", r.sync_targets.join(" "));
        println!("async:   {}", r.async_targets.join(" "));
        println!("acks:    {}", r.acks_required);
    }
}

pub fn cluster(v: &pb::ClusterView, json: bool) {
    let nodes: Vec<Value> = v
        .nodes
        .iter()
        .map(|n| {
            json!({"id": n.id, "address": n.address, "region": n.region, "zone": n.zone,
                   "capacity": n.capacity, "used": n.used, "load": n.load, "ops_per_second": n.ops_per_second, "state": n.state, "term": n.term, "applied": n.applied,
                   "last_heartbeat_ms": n.last_heartbeat_ms, "role": n.role, "leader": n.id == v.leader})
        })
        .collect();
    if json {
        println!(
            "{}",
            json!({"node_id": v.node_id, "cluster_id": v.cluster_id, "leader": v.leader, "term": v.term,
                   "applied": v.applied, "epoch": v.epoch, "problem": v.problem, "nodes": nodes,
                   "replication_pending": v.replication_pending, "replication_retrying": v.replication_retrying,
                   "replication_lag_ms": v.replication_lag_ms,
                   "placement": v.placement.as_ref().map(|p| json!({"checked": p.checked, "copies": p.copies,
                       "copy_bytes": p.copy_bytes, "dropped": p.dropped}))})
        );
        return;
    }
    if !v.problem.is_empty() {
        println!("problem: {}", v.problem);
    }
    if v.nodes.is_empty() {
        println!("node {} is not in a cluster yet: `strata cluster init` on one node, `strata cluster join ADDR` on the others", v.node_id);
        return;
    }
    println!(
        "{:<20} {:<22} {:<14} {:>21} {:>5} {:<8} {:<16} {:>10} {:>5} {:>8}",
        "ID", "ADDRESS", "REGION/ZONE", "USED/CAPACITY", "LOAD", "STATE", "ROLE", "HEARTBEAT", "TERM", "APPLIED"
    );
    for n in &v.nodes {
        let role = if n.id == v.leader { format!("{} (leader)", n.role) } else { n.role.clone() };
        let beat = if n.id == v.node_id {
            "self".to_string()
        } else if n.last_heartbeat_ms < 0 {
            "never".to_string()
        } else {
            format!("{}ms ago", n.last_heartbeat_ms)
        };
        println!(
            "{:<20} {:<22} {:<14} {:>21} {:>5.2} {:<8} {:<16} {:>10} {:>5} {:>8}",
            n.id,
            n.address,
            format!("{}/{}", n.region, n.zone),
            format!("{}/{}", bytesize::ByteSize(n.used), bytesize::ByteSize(n.capacity)),
            n.load,
            n.state,
            role,
            beat,
            n.term,
            n.applied
        );
    }
    println!("cluster {}, term {}, applied index {}, epoch {}, answered by node {}", v.cluster_id, v.term, v.applied, v.epoch, v.node_id);
    let p = v.placement.unwrap_or_default();
    println!(
        "replication on this node: {} copies owed ({} retrying, oldest {} ms); since start checked {} versions, queued {} copies ({}), dropped {} surplus",
        v.replication_pending,
        v.replication_retrying,
        v.replication_lag_ms,
        p.checked,
        p.copies,
        bytesize::ByteSize(p.copy_bytes),
        p.dropped
    );
}

pub fn indexes(list: &[pb::IndexInfo], json: bool) {
    if json {
        let v: Vec<Value> = list
            .iter()
            .map(|i| {
                json!({
                    "bucket": i.bucket, "name": i.name, "fields": i.fields, "type": i.r#type,
                    "state": i.state, "progress": i.progress, "lag": i.lag, "error": i.error,
                    "created_ms": i.created_ms, "node": i.node,
                })
            })
            .collect();
        println!("{}", Value::Array(v));
        return;
    }
    // On a cluster each node has its own copy, built over what it holds.
    let nodes = list.iter().any(|i| !i.node.is_empty());
    let node = |n: &str| if nodes { format!("{n:<32} ") } else { String::new() };
    println!("{}{:<16} {:<20} {:<10} {:<14} {:>8}  FIELDS", node("NODE"), "BUCKET", "NAME", "TYPE", "STATE", "LAG");
    for i in list {
        let state = match i.state.as_str() {
            "building" => format!("building {:.0}%", i.progress * 100.0),
            s => s.to_string(),
        };
        println!("{}{:<16} {:<20} {:<10} {:<14} {:>8}  {}", node(&i.node), i.bucket, i.name, i.r#type, state, i.lag, i.fields.join(","));
        if !i.error.is_empty() {
            println!("  error: {}", i.error);
        }
    }
}

pub fn search(r: &pb::SearchResponse, explain: bool, json: bool) {
    if json {
        let objects: Vec<Value> = r.objects.iter().map(object_json).collect();
        println!(
            "{}",
            json!({
                "objects": objects, "next_cursor": r.next_cursor, "plan": r.plan,
                "scanned": r.scanned, "took_ms": r.took_ms, "indexed": r.indexed, "missing": r.missing,
            })
        );
        return;
    }
    objects(&r.objects, false);
    if !r.next_cursor.is_empty() {
        println!("more: --cursor {}", r.next_cursor);
    }
    if explain {
        println!("plan: {}", r.plan);
        println!("{} found, {} scanned, {:.2} ms", r.objects.len(), r.scanned, r.took_ms);
    }
}
