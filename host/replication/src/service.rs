//! The server side of `strata.peer.v1.Replica`: versions pushed here are
//! staged, checked against the sender's trailer and recorded with the
//! sender's identity; lookups and fetches read the local stores.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Replicator;
use super::siblings::MOST_HEADS;
use super::wire::{self, Enqueue, Fetch, Found, Holding, Lookup, PushAck, Query, Trailer, VersionHeader, to_status};
use strata_cluster::network::pb;
use strata_meta::{Condition, MetaError};
use strata_objects::{ObjectError, PutSpec};
use strata_store::Range;

pub struct ReplicaService {
    pub replicator: Arc<Replicator>,
}

impl ReplicaService {
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let c = &self.replicator.cluster;
        c.network.check(req, &c.me.addr)
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<pb::RaftBytes>, Status> {
    Ok(Response::new(pb::RaftBytes { data: serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))? }))
}

fn spec(h: &VersionHeader) -> PutSpec {
    PutSpec {
        bucket: h.bucket.clone(),
        key: h.key.clone(),
        content_type: h.content_type.clone(),
        attributes: h.attributes.clone(),
        size: h.size,
        expected_digest: h.digest,
        condition: h.fence.map_or(Condition::Always, Condition::Fenced),
        identity: Some(h.identity.clone()),
        request_id: h.request_id.clone(),
        late: None,
    }
}

type FetchStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ReplicaFrame, Status>> + Send>>;

#[tonic::async_trait]
impl pb::replica_server::Replica for ReplicaService {
    async fn push(&self, req: Request<Streaming<pb::ReplicaFrame>>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let mut frames = req.into_inner();
        let first = frames.message().await?.ok_or_else(|| Status::invalid_argument("empty push"))?;
        let h: VersionHeader = wire::decode(&first.header).map_err(to_status)?;
        strata_meta::names::bucket_name(&h.bucket).map_err(Status::invalid_argument)?;
        let objects = &self.replicator.objects;
        objects.meta().ensure_bucket(&h.bucket).await.map_err(to_status)?;
        let spec = spec(&h);
        let meta = objects.meta();
        if h.marker {
            meta.record_marker(&h.bucket, &h.key, &h.identity).await.map_err(to_status)?;
            return encode(&PushAck { deduplicated: false, clock: meta.clock() });
        }
        if h.relist {
            match meta.set_replicas(&h.bucket, &h.key, &h.identity.version, &h.identity.replicas).await {
                Ok(()) => return encode(&PushAck { deduplicated: false, clock: meta.clock() }),
                Err(e) => return Err(to_status(ObjectError::from(e))),
            }
        }
        if h.forget {
            return match meta.delete(&h.bucket, &h.key, Some(&h.identity.version)).await {
                Ok(_) | Err(MetaError::NoSuchVersion { .. } | MetaError::NotFound { .. }) => {
                    encode(&PushAck { deduplicated: false, clock: meta.clock() })
                }
                Err(e) => Err(to_status(ObjectError::from(e))),
            };
        }
        if h.no_data {
            let (Some(d), Some(size)) = (h.digest, h.size) else {
                return Err(Status::invalid_argument("a push without data names its digest and size"));
            };
            return match objects.put_known(spec, d, size).await.map_err(to_status)? {
                Some(_) => encode(&PushAck { deduplicated: true, clock: meta.clock() }),
                None => Err(Status::failed_precondition(format!("blob {d} is not held here: send the bytes"))),
            };
        }
        // Data frames until the trailer; a stream that ends without one was
        // cut off.
        let trailer: Arc<std::sync::Mutex<Option<Trailer>>> = Default::default();
        let seen = trailer.clone();
        let chunks = frames
            .map(move |f| -> Result<Option<Bytes>, String> {
                let f = f.map_err(|s| s.message().to_string())?;
                if !f.trailer.is_empty() {
                    let t: Trailer = serde_json::from_slice(&f.trailer).map_err(|e| format!("bad trailer: {e}"))?;
                    *seen.lock().expect("trailer") = Some(t);
                    return Ok(None);
                }
                Ok(Some(f.data))
            })
            .take_while(|r| std::future::ready(!matches!(r, Ok(None))))
            .map(|r| r.map(|b| b.unwrap_or_default()));
        let staged = objects.stage(&spec, Box::pin(chunks)).await.map_err(to_status)?;
        let Some(t) = trailer.lock().expect("trailer").take() else {
            return Err(Status::aborted("the push was cut off before its trailer"));
        };
        if t.digest != staged.digest || t.size != staged.size {
            return Err(Status::data_loss(format!(
                "received {} bytes with digest {}, the sender sent {} bytes with digest {}",
                staged.size, staged.digest, t.size, t.digest
            )));
        }
        let mut spec = spec;
        spec.attributes.extend(t.late);
        let rec = objects.commit(vec![(spec, staged)]).await.pop().expect("one result").map_err(to_status)?;
        if !t.owed.is_empty() {
            meta.enqueue(&rec.bucket, &rec.key, &rec.version, &t.owed).await.map_err(to_status)?;
            self.replicator.wake();
        }
        encode(&PushAck { deduplicated: false, clock: meta.clock() })
    }

    async fn lookup(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let q: Lookup = wire::decode(&req.into_inner().data).map_err(to_status)?;
        encode(&self.replicator.holding(&q).await.map_err(to_status)?)
    }

    type FetchStream = FetchStream;

    async fn fetch(&self, req: Request<pb::RaftBytes>) -> Result<Response<FetchStream>, Status> {
        self.check(&req)?;
        let q: Fetch = wire::decode(&req.into_inner().data).map_err(to_status)?;
        let range = Range { offset: q.offset, len: q.len };
        let (_, rx) = self.replicator.objects.get(&q.bucket, &q.key, Some(&q.version), range).await.map_err(to_status)?;
        let s = ReceiverStream::new(rx).map(|r| r.map(wire::data_frame).map_err(to_status));
        Ok(Response::new(Box::pin(s)))
    }

    async fn digests(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let peer: u64 = wire::decode(&req.into_inner().data).map_err(to_status)?;
        encode(&self.replicator.digests_for(peer).await.map_err(to_status)?)
    }

    async fn partition(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let q: super::entropy::PartitionPage = wire::decode(&req.into_inner().data).map_err(to_status)?;
        if q.part >= super::entropy::PARTITIONS {
            return Err(Status::invalid_argument(format!("partition {} is out of range", q.part)));
        }
        encode(&self.replicator.partition_names(&q).await.map_err(to_status)?)
    }

    async fn query(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let q: Query = wire::decode(&req.into_inner().data).map_err(to_status)?;
        let r = &self.replicator;
        match q {
            Query::List { bucket, prefix, after, limit } => {
                encode(&r.answer_list(&bucket, &prefix, after.as_deref(), limit).await.map_err(to_status)?)
            }
            Query::Versions { bucket, key } => encode(&r.answer_versions(&bucket, &key).await.map_err(to_status)?),
            Query::Indexes { bucket } => encode(&r.local_indexes(bucket.as_deref()).await.map_err(to_status)?),
            Query::Search { search, indexes } => encode(&r.search_here(&search, indexes).await.map_err(to_status)?),
            Query::Newest { bucket, keys } => encode(&r.newest_here(&bucket, &keys).await.map_err(to_status)?),
            Query::Seen { bucket, keys } => encode(&r.seen_here(&bucket, &keys).await.map_err(to_status)?),
        }
    }

    async fn enqueue(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let q: Enqueue = wire::decode(&req.into_inner().data).map_err(to_status)?;
        let meta = self.replicator.objects.meta();
        // Only a holder queues copies: the worker sends from here.
        meta.get(&q.bucket, &q.key, Some(&q.version)).await.map_err(to_status)?;
        meta.enqueue(&q.bucket, &q.key, &q.version, &q.nodes).await.map_err(to_status)?;
        self.replicator.wake();
        encode(&())
    }
}

/// What this node holds of a key, for a lookup.
pub async fn holding(r: &Replicator, q: &Lookup) -> Result<Holding, ObjectError> {
    let meta = r.objects.meta();
    if let Some(token) = q.fence {
        meta.ensure_bucket(&q.bucket).await?;
        meta.fence(&q.bucket, &q.key, token).await?;
    }
    let mut version = q.version.clone();
    let mut request_key = None;
    if let Some(rid) = &q.request_id {
        let Some((key, v)) = meta.request(&q.bucket, rid).await.map_err(ObjectError::from)? else {
            return Ok(Holding { clock: meta.clock(), ..Default::default() });
        };
        if key != q.key {
            return Ok(Holding { clock: meta.clock(), request_key: Some(key), ..Default::default() });
        }
        version = Some(v);
        request_key = Some(key);
    }
    let rec = match &version {
        Some(v) => meta.get(&q.bucket, &q.key, Some(v)).await,
        None => meta
            .newest(&q.bucket, &q.key)
            .await
            .map(|r| r.ok_or_else(|| MetaError::NotFound { bucket: q.bucket.clone(), key: q.key.clone() }))
            .and_then(|r| r),
    };
    let found = match rec {
        Ok(rec) => {
            let sound = match rec.digest {
                Some(d) => !meta.blob_is_corrupt(&d).await.map_err(ObjectError::from)?,
                None => true,
            };
            let replicas = meta.replicas(&q.bucket, &q.key, &rec.version).await?;
            Some(Found {
                version: rec.version,
                stamp: rec.stamp,
                digest: rec.digest,
                size: rec.size,
                content_type: rec.content_type,
                attributes: rec.attributes,
                created_ms: rec.created_ms,
                modified_ms: rec.modified_ms,
                replicas,
                sound,
            })
        }
        Err(MetaError::NotFound { .. } | MetaError::NoSuchVersion { .. } | MetaError::NoSuchBucket { .. }) => None,
        Err(e) => return Err(ObjectError::from(e)),
    };
    let has_digest = match q.digest {
        Some(d) => meta.known_blobs(&[d]).await.map_err(ObjectError::from)?.contains(&d),
        None => false,
    };
    let heads = match q.heads && version.is_none() {
        true => meta.heads(&q.bucket, &q.key, MOST_HEADS).await?.into_iter().map(|h| h.record.version).collect(),
        false => Vec::new(),
    };
    Ok(Holding { found, has_digest, clock: meta.clock(), request_key, heads })
}
