//! The coordinator's side of a write: plan it, stream the client's bytes
//! to the local store and to every synchronous target at once (hashing as
//! they pass, buffering a few chunks per target), acknowledge once the
//! plan's acknowledgements are durable, and queue every other copy.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

use super::error::ReplicationError;
use super::wire::{self, PUSH_DEPTH, Trailer, VersionHeader};
use super::{Replicator, plan};
use strata_cluster::detector::Health;
use strata_cluster::types::Consistency as ConsistencyLevel;
use strata_meta::{Condition, ObjectRecord};
use strata_objects::{ObjectError, PutSpec};
use strata_store::{Digest, StoreError};

/// A synchronous target's push in flight.
struct Push {
    node: u64,
    /// `None` once the target stopped taking data (closed or stalled).
    tx: Option<mpsc::Sender<strata_cluster::network::pb::ReplicaFrame>>,
    task: tokio::task::JoinHandle<Result<wire::PushAck, ReplicationError>>,
    stalled: bool,
}

/// Why a copy failed, and whether the target may still have stored it (no
/// answer, a broken connection) or surely did not (it answered a refusal).
type Failure = (String, bool);

type Outcome = Pin<Box<dyn Future<Output = (u64, Result<(), Failure>)> + Send>>;

impl Replicator {
    /// Stores a client's object on the nodes its policy names.
    pub async fn put<S, E>(self: &Arc<Self>, mut spec: PutSpec, mut chunks: S) -> Result<ObjectRecord, ReplicationError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        if spec.condition != Condition::Always {
            return Err(ReplicationError::Refused(
                "conditional puts (if_absent, if_version) are not available on a cluster yet: \
                 each replica would judge the condition alone"
                    .into(),
            ));
        }
        self.require_bucket(&spec.bucket).await?;
        let policy = self.policy(&spec.bucket).await;
        let (members, _) = plan::members(&self.cluster);
        if policy.consistency == ConsistencyLevel::Strong {
            let reachable = members.iter().filter(|m| m.health != Health::Down).count();
            if reachable * 2 <= members.len() {
                return Err(ReplicationError::Unavailable(format!(
                    "this node reaches {reachable} of {} members; with strong consistency the minority side takes no writes",
                    members.len()
                )));
            }
        }
        let p = plan::plan(
            &self.plugins,
            &self.cluster,
            &policy,
            &spec.bucket,
            &spec.key,
            spec.size.unwrap_or(0),
            self.config.enable_async_replication,
        )
        .await?;
        if let Some(rid) = &spec.request_id
            && let Some(first) = self.replayed(&spec, rid, &p, &members).await?
        {
            return Ok(first); // a retry: the first attempt's version
        }
        let me = self.cluster.id;
        let mut placement = p.targets.clone();
        placement.extend(p.ideal.iter().filter(|n| !p.targets.contains(n)));
        let identity = self.objects.meta().mint(placement);
        spec.identity = Some(identity.clone());
        let header = VersionHeader {
            bucket: spec.bucket.clone(),
            key: spec.key.clone(),
            identity: identity.clone(),
            content_type: spec.content_type.clone(),
            attributes: spec.attributes.clone(),
            digest: None,
            size: spec.size,
            no_data: false,
            marker: false,
            forget: false,
            relist: false,
            request_id: spec.request_id.clone(),
        };

        let mut pushes = Vec::new();
        let mut failed: Vec<(u64, Failure)> = Vec::new();
        for &t in p.sync.iter().filter(|t| **t != me) {
            let Some(m) = members.iter().find(|m| m.id == t) else {
                failed.push((t, ("not a member".into(), true)));
                continue;
            };
            let (tx, task) = wire::open_push(&self.cluster.network, &m.addr);
            let tx = tx.send(wire::header_frame(&header)).await.is_ok().then_some(tx);
            pushes.push(Push { node: t, tx, task, stalled: false });
        }
        let local = p.sync.contains(&me);
        let timeout = self.config.sync_timeout;

        // The client's bytes go to every target as they arrive.
        let (ltx, lrx) = mpsc::channel::<Result<Bytes, String>>(PUSH_DEPTH);
        let limit = spec.size;
        let pump = async {
            let mut hasher = (!local).then(Sha256::new);
            let mut size = 0u64;
            while let Some(item) = chunks.next().await {
                let c = match item {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ltx.send(Err(e.to_string())).await;
                        return Err(ReplicationError::Aborted(format!("the upload was cut off: {e}")));
                    }
                };
                if c.is_empty() {
                    continue;
                }
                size += c.len() as u64;
                if limit.is_some_and(|l| size > l) {
                    return Err(ReplicationError::Invalid(format!("size: more than the promised {} bytes arrived", limit.unwrap_or(0))));
                }
                let sends = pushes.iter_mut().filter(|p| p.tx.is_some()).map(|p| {
                    let tx = p.tx.clone().expect("open");
                    let frame = wire::data_frame(c.clone());
                    async move { (p, tokio::time::timeout(timeout, tx.send(frame)).await) }
                });
                for (p, r) in futures::future::join_all(sends).await {
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => p.tx = None, // it answered already; its task says how
                        Err(_) => {
                            p.tx = None;
                            p.stalled = true;
                        }
                    }
                }
                match &mut hasher {
                    Some(h) => h.update(&c),
                    None => {
                        if ltx.send(Ok(c)).await.is_err() {
                            break; // the local write failed; it says why
                        }
                    }
                }
            }
            drop(ltx);
            Ok((size, hasher.map(|h| Digest(h.finalize().into()))))
        };
        let objects = self.objects.clone();
        let stage = async { if local { Some(objects.stage(&spec, ReceiverStream::new(lrx)).await) } else { None } };
        let (pumped, staged) = tokio::join!(pump, stage);
        let abort = |pushes: Vec<Push>| pushes.into_iter().for_each(|p| p.task.abort());
        let (size, hashed) = match pumped {
            Ok(v) => v,
            Err(s) => {
                abort(pushes);
                return Err(s.not_stored());
            }
        };
        let (digest, staged) = match staged {
            Some(Ok(st)) => (st.digest, Some(st)),
            Some(Err(e)) => {
                abort(pushes);
                return Err(ReplicationError::from(e).not_stored());
            }
            None => {
                let d = hashed.expect("hashed when not stored here");
                let broken = spec
                    .size
                    .filter(|s| *s != size)
                    .map(|s| ("size", s.to_string(), size.to_string()))
                    .or_else(|| spec.expected_digest.filter(|e| *e != d).map(|e| ("digest", e.to_string(), d.to_string())));
                if let Some((what, expected, actual)) = broken {
                    abort(pushes);
                    return Err(ReplicationError::from(ObjectError::from(StoreError::Mismatch { what, expected, actual })).not_stored());
                }
                (d, None)
            }
        };

        // The client's stream has ended. hyper reports a stream the client
        // reset (cancelled, past its deadline) as a clean end and drops the
        // handler at its next `Pending`: yield once, so a reset stream stops
        // here, before any replica is told to commit.
        tokio::task::yield_now().await;
        // A retry asks again now that its bytes are in: a first attempt
        // whose commits were still landing when this one began (its
        // coordinator died after sending its trailers) has landed by now.
        if let Some(rid) = &spec.request_id
            && let Some(first) = self.replayed(&spec, rid, &p, &members).await?
        {
            abort(pushes);
            return Ok(first);
        }
        // From here the write runs to its end even if the client goes away:
        // a version must not be committed on some replicas and abandoned on
        // others because the handler was dropped between two steps.
        let this = self.clone();
        let done = tokio::spawn(async move { this.finish(p, spec, identity, pushes, failed, staged, digest, size).await });
        done.await.map_err(|e| ReplicationError::Internal(format!("the write's task failed: {e}")))?
    }

    /// Sends the trailers, commits the local copy, waits for the plan's
    /// acknowledgements and queues every copy still owed.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        self: Arc<Self>,
        p: plan::Plan,
        spec: PutSpec,
        identity: strata_meta::Identity,
        pushes: Vec<Push>,
        mut failed: Vec<(u64, Failure)>,
        staged: Option<strata_store::Staged>,
        digest: Digest,
        size: u64,
    ) -> Result<ObjectRecord, ReplicationError> {
        let me = self.cluster.id;
        let timeout = self.config.sync_timeout;
        // Copies owed beyond the synchronous ones are queued, before the
        // write is acknowledged, by one synchronous target as it records the
        // version: this node if it is one, else the first remote.
        let mut owed_now: Vec<u64> = p.asynchronous.clone();
        owed_now.extend(p.targets.iter().chain(&p.ideal).filter(|t| !p.sync.contains(t) && !p.asynchronous.contains(t)));
        owed_now.sort_unstable();
        owed_now.dedup();
        let keeper = if staged.is_some() { Some(me) } else { pushes.iter().find(|p| p.tx.is_some() && !p.stalled).map(|p| p.node) };
        // The trailer tells each target what it should have received.
        let trailer = wire::trailer_frame(&Trailer { digest, size, owed: Vec::new() });
        let keeper_trailer = wire::trailer_frame(&Trailer { digest, size, owed: owed_now.clone() });
        let mut outcomes: FuturesUnordered<Outcome> = FuturesUnordered::new();
        for p in pushes {
            let Push { node, tx, task, stalled } = p;
            if stalled {
                task.abort();
                failed.push((node, (format!("took no data for {timeout:?}"), false)));
                continue;
            }
            if let Some(tx) = tx {
                let t = if keeper == Some(node) { keeper_trailer.clone() } else { trailer.clone() };
                let _ = tokio::time::timeout(timeout, tx.send(t)).await;
            }
            let clock = self.objects.meta().clone();
            outcomes.push(Box::pin(async move {
                let abort = task.abort_handle();
                let r = match tokio::time::timeout(timeout, task).await {
                    Ok(Ok(Ok(ack))) => {
                        clock.observe(ack.clock);
                        Ok(())
                    }
                    Ok(Ok(Err(e))) => Err((e.to_string(), e.is_refusal())),
                    Ok(Err(e)) => Err((e.to_string(), false)),
                    Err(_) => {
                        abort.abort(); // drops the stream to the stuck peer
                        Err((format!("no answer {timeout:?} after the last byte"), false))
                    }
                };
                (node, r)
            }));
        }
        if let Some(st) = staged {
            let (this, spec, owed) = (self.clone(), spec.clone(), owed_now.clone());
            outcomes.push(Box::pin(async move {
                let r = this.objects.commit(vec![(spec.clone(), st)]).await.pop().expect("one result");
                let r = match r {
                    // Committed here: a failure to queue the owed copies is
                    // not a refusal of the write.
                    Ok(rec) => {
                        this.enqueue_on(me, &rec.bucket, &rec.key, &rec.version, &owed).await.map_err(|e| (e.to_string(), false))
                    }
                    Err(e) => Err((e.to_string(), true)),
                };
                (me, r)
            }));
        }

        let need = p.acks as usize;
        let mut durable = Vec::new();
        while durable.len() < need
            && let Some((node, r)) = outcomes.next().await
        {
            match r {
                Ok(()) => durable.push(node),
                Err(e) => failed.push((node, e)),
            }
        }
        let rec = ObjectRecord {
            bucket: spec.bucket.clone(),
            key: spec.key.clone(),
            version: identity.version.clone(),
            stamp: identity.stamp,
            digest: Some(digest),
            size,
            content_type: spec.content_type.clone(),
            attributes: spec.attributes.clone(),
            created_ms: identity.created_ms,
            modified_ms: identity.modified_ms,
            latest: true,
        };
        let (acked, reached) = (durable.len() >= need, durable.len());
        let summary = failed.iter().map(|(n, (e, _))| format!("node {n}: {e}")).collect::<Vec<_>>().join("; ");
        let unsure = failed.iter().any(|(_, (_, sure))| !sure) || !outcomes.is_empty();
        // The rest finishes in the background; every copy still owed is
        // queued on a node that holds the version.
        let this = self.clone();
        let (bucket, key, version) = (rec.bucket.clone(), rec.key.clone(), rec.version.clone());
        tokio::spawn(async move {
            let mut owed: Vec<u64> = failed.iter().map(|(n, _)| *n).collect();
            while let Some((node, r)) = outcomes.next().await {
                match r {
                    Ok(()) => durable.push(node),
                    Err((e, _)) => {
                        warn!(node, %bucket, %key, error = %e, "a synchronous copy failed; queued");
                        owed.push(node);
                    }
                }
            }
            let Some(&holder) = durable.iter().find(|n| **n == me).or(durable.first()) else { return };
            if !keeper.is_some_and(|k| durable.contains(&k)) {
                owed.extend(&owed_now); // the keeper failed: queue them now
            }
            owed.retain(|n| !durable.contains(n));
            owed.sort_unstable();
            owed.dedup();
            if let Err(e) = this.enqueue_on(holder, &bucket, &key, &version, &owed).await {
                warn!(holder, %bucket, %key, error = %e, "could not queue the copies a write still owes");
            }
        });
        if !acked {
            return Err(ReplicationError::NoQuorum { reached, needed: need, version: rec.version, summary, unsure });
        }
        Ok(rec)
    }
}
