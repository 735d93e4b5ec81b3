//! The coordinator's side of a write, in five steps: plan it
//! ([`Replicator::plan_put`]), open a push to every synchronous target
//! ([`Replicator::open_pushes`]), stream the client's bytes to the local
//! store and to every push at once, hashing as they pass and buffering a
//! few chunks per target ([`pump`]), settle the acknowledgements the plan
//! needs ([`settle`]), and queue every copy still owed
//! ([`Replicator::owe`]).

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
use super::wire::{self, PUSH_DEPTH, Query, Seen, Trailer, VersionHeader};
use super::{Replicator, plan};
use strata_cluster::detector::Health;
use strata_cluster::types::Consistency as ConsistencyLevel;
use strata_meta::{Condition, Identity, ObjectRecord};
use strata_objects::{ObjectError, Objects, PutSpec};
use strata_store::{Digest, Staged};

/// How long a write waits for a node's newest version of its key.
const SEEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

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

/// The client's bytes, once they have all arrived.
struct Pumped {
    digest: Digest,
    size: u64,
    /// The local copy, staged when this node is a synchronous target.
    staged: Option<Staged>,
    /// Attributes the body left at its end (`PutSpec::late`).
    late: strata_meta::Attributes,
}

fn abort(pushes: Vec<Push>) {
    pushes.into_iter().for_each(|p| p.task.abort());
}

impl Replicator {
    /// Stores a client's object on the nodes its policy names; a
    /// conditional put is decided across the cluster first
    /// ([`super::conditional`]).
    pub async fn put<S, E>(self: &Arc<Self>, spec: PutSpec, chunks: S) -> Result<ObjectRecord, ReplicationError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        self.put_knowing(spec, chunks, None).await
    }

    /// A put, with what it supersedes when the caller asked already (a
    /// batch asks for all its keys at once); a conditional put learns that
    /// from its own fenced read.
    async fn put_knowing<S, E>(
        self: &Arc<Self>,
        spec: PutSpec,
        chunks: S,
        parents: Option<Vec<String>>,
    ) -> Result<ObjectRecord, ReplicationError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        match spec.condition {
            Condition::IfAbsent | Condition::IfVersion(_) => self.put_decided(spec, chunks).await,
            Condition::Always | Condition::Fenced(_) => self.put_plain(spec, chunks, parents).await,
        }
    }

    /// The write itself, its condition (if any) already decided. `parents`
    /// is what the write supersedes, when the caller knows (see
    /// [`Replicator::newest_seen`]); without it the reachable nodes are asked
    /// while the write is planned.
    pub(super) async fn put_plain<S, E>(
        self: &Arc<Self>,
        mut spec: PutSpec,
        chunks: S,
        parents: Option<Vec<String>>,
    ) -> Result<ObjectRecord, ReplicationError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        let seen = async {
            match parents {
                Some(p) => p,
                None => self.newest_seen(&spec.bucket, std::slice::from_ref(&spec.key)).await.pop().unwrap_or_default(),
            }
        };
        let (planned, parents) = tokio::join!(self.plan_put(&spec), seen);
        let (p, members) = planned?;
        if let Some(first) = self.replay(&spec, &p, &members).await? {
            return Ok(first); // a retry: the first attempt's version
        }
        let mut placement = p.targets.clone();
        placement.extend(p.ideal.iter().filter(|n| !p.targets.contains(n)));
        // Minted after the newest version was seen (its clock observed), so
        // it orders after its parent.
        let mut identity = self.objects.meta().mint(placement);
        identity.parents = Some(parents);
        spec.identity = Some(identity.clone());
        let (mut pushes, failed) = self.open_pushes(&p, &members, &VersionHeader::of(&spec, &identity)).await;
        let local = p.sync.contains(&self.cluster.id);
        let stage = local.then(|| self.objects.clone());
        let mut pumped = match pump(&spec, chunks, &mut pushes, stage, self.config.sync_timeout).await {
            Ok(v) => v,
            Err(e) => {
                abort(pushes);
                return Err(e.not_stored());
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
        if let Some(first) = self.replay(&spec, &p, &members).await? {
            abort(pushes);
            return Ok(first);
        }
        pumped.late = spec.settle_late();
        // From here the write runs to its end even if the client goes away:
        // a version must not be committed on some replicas and abandoned on
        // others because the handler was dropped between two steps.
        let this = self.clone();
        let done = tokio::spawn(async move { this.finish(p, spec, identity, pushes, failed, pumped).await });
        done.await.map_err(|e| ReplicationError::Internal(format!("the write's task failed: {e}")))?
    }

    /// Whether this write may go ahead, and where it goes.
    pub(super) async fn plan_put(&self, spec: &PutSpec) -> Result<(plan::Plan, Vec<plan::Member>), ReplicationError> {
        self.require_bucket(&spec.bucket).await?;
        let policy = self.policy(&spec.bucket).await;
        let (members, _) = plan::members(&self.cluster);
        if policy.consistency == ConsistencyLevel::Strong {
            plan::refuse_minority(&members, "with strong consistency the minority side takes no writes")?;
        }
        let size = spec.size.unwrap_or(0);
        let async_ok = self.config.enable_async_replication;
        let p = plan::plan(&self.plugins, &self.cluster, &policy, &spec.bucket, &spec.key, size, async_ok).await?;
        Ok((p, members))
    }

    /// What writes of `keys` made now supersede: each key's newest version
    /// (a marker included) and every head that this node and the members
    /// seen healthy know of, asked once per node for all the keys, briefly.
    /// A node that does not answer in time is taken to know nothing newer;
    /// the write is then concurrent with what it missed.
    pub(super) async fn newest_seen(&self, bucket: &str, keys: &[String]) -> Vec<Vec<String>> {
        let q = Query::Seen { bucket: bucket.into(), keys: keys.to_vec() };
        let (members, _) = plan::members(&self.cluster);
        let me = self.cluster.id;
        let timeout = self.short_timeout().min(SEEN_TIMEOUT);
        let asks = members.iter().filter(|m| m.id != me && m.health == Health::Healthy).map(|m| {
            let q = &q;
            async move { wire::query::<Seen>(&self.cluster.network, &m.addr, q, timeout).await.ok() }
        });
        let (local, remote) = tokio::join!(self.seen_here(bucket, keys), futures::future::join_all(asks));
        let mut seen = vec![Vec::new(); keys.len()];
        for answer in local.ok().into_iter().chain(remote.into_iter().flatten()) {
            self.objects.meta().observe(answer.clock);
            for (slot, versions) in seen.iter_mut().zip(answer.versions) {
                slot.extend(versions);
            }
        }
        for slot in &mut seen {
            slot.sort_unstable();
            slot.dedup();
        }
        seen
    }

    /// This node's answer to `Query::Seen`.
    pub async fn seen_here(&self, bucket: &str, keys: &[String]) -> Result<Seen, ObjectError> {
        let meta = self.objects.meta();
        Ok(Seen { versions: meta.seen(bucket, keys).await?, clock: meta.clock() })
    }

    /// Many puts at once (a batch call): the unconditional ones learn what
    /// they supersede with one question per node for all their keys.
    pub async fn put_many(self: &Arc<Self>, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ReplicationError>> {
        let mut by_bucket: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (spec, _) in items.iter().filter(|(s, _)| matches!(s.condition, Condition::Always | Condition::Fenced(_))) {
            by_bucket.entry(spec.bucket.clone()).or_default().push(spec.key.clone());
        }
        let mut seen: std::collections::HashMap<(String, String), Vec<String>> = Default::default();
        for (bucket, keys) in by_bucket {
            let answers = self.newest_seen(&bucket, &keys).await;
            for (key, versions) in keys.into_iter().zip(answers) {
                seen.insert((bucket.clone(), key), versions);
            }
        }
        let puts = items.into_iter().map(|(spec, data)| {
            let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(data)]);
            let parents = seen.get(&(spec.bucket.clone(), spec.key.clone())).cloned();
            self.put_knowing(spec, body, parents)
        });
        futures::future::join_all(puts).await
    }

    /// The first attempt's version, when this put retries one.
    pub(super) async fn replay(
        &self,
        spec: &PutSpec,
        p: &plan::Plan,
        members: &[plan::Member],
    ) -> Result<Option<ObjectRecord>, ReplicationError> {
        match &spec.request_id {
            Some(rid) => self.replayed(spec, rid, p, members).await,
            None => Ok(None),
        }
    }

    /// A push, header sent, to every synchronous target but this node; the
    /// targets that are not members have failed already.
    async fn open_pushes(&self, p: &plan::Plan, members: &[plan::Member], header: &VersionHeader) -> (Vec<Push>, Vec<(u64, Failure)>) {
        let mut pushes = Vec::new();
        let mut failed = Vec::new();
        for &t in p.sync.iter().filter(|t| **t != self.cluster.id) {
            let Some(m) = members.iter().find(|m| m.id == t) else {
                failed.push((t, ("not a member".into(), true)));
                continue;
            };
            let (tx, task) = wire::open_push(&self.cluster.network, &m.addr);
            let tx = tx.send(wire::header_frame(header)).await.is_ok().then_some(tx);
            pushes.push(Push { node: t, tx, task, stalled: false });
        }
        (pushes, failed)
    }

    /// Sends the trailers, commits the local copy, waits for the plan's
    /// acknowledgements and queues every copy still owed.
    async fn finish(
        self: Arc<Self>,
        p: plan::Plan,
        spec: PutSpec,
        identity: Identity,
        pushes: Vec<Push>,
        mut failed: Vec<(u64, Failure)>,
        pumped: Pumped,
    ) -> Result<ObjectRecord, ReplicationError> {
        let me = self.cluster.id;
        // Copies owed beyond the synchronous ones are queued, before the
        // write is acknowledged, by one synchronous target as it records the
        // version: this node if it is one, else the first remote.
        let mut owed_now: Vec<u64> = p.asynchronous.clone();
        owed_now.extend(p.targets.iter().chain(&p.ideal).filter(|t| !p.sync.contains(t) && !p.asynchronous.contains(t)));
        owed_now.sort_unstable();
        owed_now.dedup();
        let keeper = if pumped.staged.is_some() { Some(me) } else { pushes.iter().find(|p| p.tx.is_some() && !p.stalled).map(|p| p.node) };
        let Pumped { digest, size, staged, late } = pumped;
        let mut outcomes = self.send_trailers(pushes, &mut failed, keeper, Trailer { digest, size, owed: owed_now.clone(), late }).await;
        if let Some(st) = staged {
            outcomes.push(self.commit_here(spec.clone(), st, owed_now.clone()));
        }
        let need = p.acks as usize;
        let durable = settle(&mut outcomes, need, &mut failed).await;
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
        let reached = durable.len();
        let summary = failed.iter().map(|(n, (e, _))| format!("node {n}: {e}")).collect::<Vec<_>>().join("; ");
        let unsure = failed.iter().any(|(_, (_, sure))| !sure) || !outcomes.is_empty();
        self.owe(&rec, outcomes, durable, failed, keeper, owed_now);
        if reached < need {
            return Err(ReplicationError::NoQuorum { reached, needed: need, version: rec.version, summary, unsure });
        }
        Ok(rec)
    }

    /// Ends every push with its trailer (the keeper's names the copies
    /// owed); each outcome says whether that target recorded the version.
    async fn send_trailers(
        &self,
        pushes: Vec<Push>,
        failed: &mut Vec<(u64, Failure)>,
        keeper: Option<u64>,
        keeper_trailer: Trailer,
    ) -> FuturesUnordered<Outcome> {
        let timeout = self.config.sync_timeout;
        // The trailer tells each target what it should have received.
        let trailer = wire::trailer_frame(&Trailer { owed: Vec::new(), ..keeper_trailer.clone() });
        let keeper_trailer = wire::trailer_frame(&keeper_trailer);
        let outcomes: FuturesUnordered<Outcome> = FuturesUnordered::new();
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
        outcomes
    }

    /// Commits the local copy and queues the copies it owes.
    fn commit_here(self: &Arc<Self>, spec: PutSpec, st: Staged, owed: Vec<u64>) -> Outcome {
        let (this, me) = (self.clone(), self.cluster.id);
        Box::pin(async move {
            let r = this.objects.commit(vec![(spec, st)]).await.pop().expect("one result");
            let r = match r {
                // Committed here: a failure to queue the owed copies is
                // not a refusal of the write.
                Ok(rec) => {
                    this.enqueue_on(me, &rec.bucket, &rec.key, &rec.version, &owed).await.map_err(|e| (local_failure(e.kind(), &e), false))
                }
                Err(e) => Err((local_failure(e.kind(), &e), true)),
            };
            (me, r)
        })
    }

    /// The rest finishes in the background; every copy still owed is
    /// queued on a node that holds the version.
    fn owe(
        self: &Arc<Self>,
        rec: &ObjectRecord,
        mut outcomes: FuturesUnordered<Outcome>,
        mut durable: Vec<u64>,
        failed: Vec<(u64, Failure)>,
        keeper: Option<u64>,
        owed_now: Vec<u64>,
    ) {
        let (this, me) = (self.clone(), self.cluster.id);
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
    }
}

/// Streams the client's bytes to every push and (with `stage`) into a
/// staged local copy, checking them against the client's promises.
async fn pump<S, E>(
    spec: &PutSpec,
    mut chunks: S,
    pushes: &mut [Push],
    stage: Option<Arc<Objects>>,
    timeout: std::time::Duration,
) -> Result<Pumped, ReplicationError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Display,
{
    let (ltx, lrx) = mpsc::channel::<Result<Bytes, String>>(PUSH_DEPTH);
    let local = stage.is_some();
    let limit = spec.size;
    let send = async {
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
    let staging = async {
        match &stage {
            Some(objects) => Some(objects.stage(spec, ReceiverStream::new(lrx)).await),
            None => None,
        }
    };
    let (sent, staged) = tokio::join!(send, staging);
    let (size, hashed) = sent?;
    match staged {
        Some(st) => {
            let st = st?;
            Ok(Pumped { digest: st.digest, size: st.size, staged: Some(st), late: Default::default() })
        }
        None => {
            let digest = hashed.expect("hashed when not stored here");
            spec.check_promises(digest, size).map_err(ObjectError::from)?;
            Ok(Pumped { digest, size, staged: None, late: Default::default() })
        }
    }
}

/// Waits until `need` targets recorded the version (or every outcome is
/// in); the failures join `failed`.
async fn settle(outcomes: &mut FuturesUnordered<Outcome>, need: usize, failed: &mut Vec<(u64, Failure)>) -> Vec<u64> {
    let mut durable = Vec::new();
    while durable.len() < need
        && let Some((node, r)) = outcomes.next().await
    {
        match r {
            Ok(()) => durable.push(node),
            Err(e) => failed.push((node, e)),
        }
    }
    durable
}

/// How this node's own failure reads in the client's summary: an internal
/// fault (with its paths and OS errors) stays in this node's log.
fn local_failure(kind: strata_objects::Kind, e: &dyn Display) -> String {
    if kind == strata_objects::Kind::Internal {
        tracing::error!(error = %e, "committing a replicated write here failed");
        "internal error; this node's log has the details".into()
    } else {
        e.to_string()
    }
}
