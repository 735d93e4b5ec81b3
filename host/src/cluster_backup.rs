//! Backups of a cluster. The node a client asks takes the target's lock,
//! reads the cluster state (linearizable) and asks every member, itself
//! included, for its part over the peer `Backup` service. Each member
//! sends its own blobs and metadata snapshot to its own `[backup.target]`,
//! which must name the same place on every node (credentials stay on the
//! node that uses them; none travel between nodes). The manifest, written
//! last, holds every member's part and the cluster state a restored
//! cluster adopts.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::cluster::network::{MAX_MESSAGE, pb};
use crate::cluster::node::Cluster;
use crate::config::TargetSpec;
use crate::objects::Objects;
use crate::remote::backup::{self, Progress};
use crate::remote::manifest::ClusterPart;
use crate::remote::{Manifest, NodePart, RemoteError, Target};

/// A member says how far it got at least this often, while it works.
const BEAT: Duration = Duration::from_secs(5);
/// A member silent for this long is taken for gone: the backup fails.
const SILENCE: Duration = Duration::from_secs(60);

/// What the coordinator asks of a member: its part of a backup to `url`.
#[derive(Serialize, Deserialize)]
struct PartRequest {
    url: String,
    /// The coordinator's compression. Replicas share blobs at the target,
    /// stored once and checked by size, so every node must encode alike.
    zstd_level: Option<i32>,
}

/// Blobs and plaintext bytes: done and to do.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct Counts([u64; 4]);

impl From<&Progress> for Counts {
    fn from(p: &Progress) -> Self {
        Counts([p.blobs_done, p.blobs_total, p.bytes_done, p.bytes_total])
    }
}

#[derive(Serialize, Deserialize)]
enum PartMsg {
    Progress(Counts),
    Done(Box<NodePart>),
}

/// Backs up the whole cluster to `t`: every member's part, then the
/// manifest. Fails, writing no manifest, if any member cannot send its
/// part: a backup that lacks a node would not restore the cluster.
pub async fn create(
    cluster: &Arc<Cluster>,
    objects: &Arc<Objects>,
    t: &Target,
    progress: &watch::Sender<Progress>,
) -> Result<Manifest, RemoteError> {
    let who = format!("cluster node {}", cluster.id);
    backup::run(t, &who, backup::fingerprint(objects), || async move {
        let state = cluster.read().await.map_err(|e| RemoteError::Cluster(format!("cannot read the cluster state: {e}")))?;
        let members = cluster.members();
        let counts = Mutex::new(vec![Counts::default(); members.len()]);
        let report = |i: usize, c: Counts| {
            let mut all = counts.lock().expect("counts");
            all[i] = c;
            let sum = all.iter().fold([0u64; 4], |mut s, c| {
                s.iter_mut().zip(c.0).for_each(|(s, n)| *s += n);
                s
            });
            progress.send_replace(Progress {
                phase: "blobs",
                blobs_done: sum[0],
                blobs_total: sum[1],
                bytes_done: sum[2],
                bytes_total: sum[3],
            });
        };
        let parts = members.iter().enumerate().map(|(i, (id, node, _))| {
            let report = &report;
            async move {
                let mut part = if *id == cluster.id {
                    local_part(objects, t, |c| report(i, c)).await?
                } else {
                    let q = PartRequest { url: t.to_string(), zstd_level: objects.store().zstd_level() };
                    remote_part(cluster, *id, &node.addr, &q, |c| report(i, c)).await?
                };
                part.cluster_node = Some(*id);
                Ok::<_, RemoteError>(part)
            }
        });
        let parts = futures::future::try_join_all(parts).await?;
        let adopted = serde_json::to_value(state.adoptable()).map_err(|e| RemoteError::Io(e.to_string()))?;
        let members = members.iter().map(|(id, n, _)| (*id, n.addr.clone())).collect();
        Ok((parts, Some(ClusterPart { cluster_id: state.cluster_id.clone(), members, state: adopted })))
    })
    .await
}

async fn local_part(objects: &Arc<Objects>, t: &Target, on: impl Fn(Counts)) -> Result<NodePart, RemoteError> {
    let (tx, mut rx) = watch::channel(Progress::default());
    // The coordinator's own part: `backup::run` bound the key already.
    let run = backup::send_part(objects, t, &tx);
    tokio::pin!(run);
    loop {
        tokio::select! {
            r = &mut run => return r,
            Ok(()) = rx.changed() => on(Counts::from(&*rx.borrow_and_update())),
        }
    }
}

async fn remote_part(cluster: &Cluster, id: u64, addr: &str, q: &PartRequest, on: impl Fn(Counts)) -> Result<NodePart, RemoteError> {
    let fail = |why: String, retry: bool| RemoteError::Member { node: id, addr: addr.to_string(), why, retry };
    let from_status = |s: Status| match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            fail(format!("it cannot be reached ({}); is it up?", s.message()), true)
        }
        _ => fail(s.message().to_string(), false),
    };
    let ch = cluster.network.channel(addr).ok_or_else(|| fail("its address is not host:port".into(), false))?;
    let mut client = pb::backup_client::BackupClient::new(ch).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    let data = serde_json::to_vec(q).map_err(|e| RemoteError::Io(e.to_string()))?;
    let mut req = Request::new(pb::RaftBytes { data });
    cluster.network.secret().attach(&mut req, addr);
    let mut answers = client.part(req).await.map_err(from_status)?.into_inner();
    loop {
        let msg = tokio::time::timeout(SILENCE, answers.message())
            .await
            .map_err(|_| fail(format!("it sent nothing for {SILENCE:?}"), true))?
            .map_err(from_status)?
            .ok_or_else(|| fail("it hung up before sending its part".into(), true))?;
        match serde_json::from_slice(&msg.data).map_err(|e| fail(format!("unreadable answer: {e}"), false))? {
            PartMsg::Progress(c) => on(c),
            PartMsg::Done(part) => return Ok(*part),
        }
    }
}

/// The member's side: sends this node's part to its `[backup.target]`.
pub struct BackupPeer {
    pub cluster: Arc<Cluster>,
    pub objects: Arc<Objects>,
    pub target: Option<TargetSpec>,
    /// One part at a time on a node.
    pub busy: Arc<tokio::sync::Mutex<()>>,
}

type PartStream = Pin<Box<dyn Stream<Item = Result<pb::RaftBytes, Status>> + Send>>;

fn encode(m: &PartMsg) -> Result<pb::RaftBytes, Status> {
    Ok(pb::RaftBytes { data: serde_json::to_vec(m).map_err(|e| Status::internal(e.to_string()))? })
}

#[tonic::async_trait]
impl pb::backup_server::Backup for BackupPeer {
    type PartStream = PartStream;

    async fn part(&self, req: Request<pb::RaftBytes>) -> Result<Response<PartStream>, Status> {
        self.cluster.network.check(&req, &self.cluster.me.addr)?;
        let q: PartRequest =
            serde_json::from_slice(&req.into_inner().data).map_err(|e| Status::invalid_argument(format!("bad part request: {e}")))?;
        let me = self.cluster.id;
        let Some(spec) = &self.target else {
            return Err(Status::failed_precondition(format!(
                "node {me} has no [backup.target]: a cluster backup needs the same [backup.target] on every node"
            )));
        };
        if spec.url != q.url {
            return Err(Status::failed_precondition(format!(
                "node {me} backs up to {}, not {}: a cluster backup needs the same [backup.target] on every node",
                spec.url, q.url
            )));
        }
        let ours = self.objects.store().zstd_level();
        if ours != q.zstd_level {
            let say = |l: Option<i32>| l.map_or("no compression".to_string(), |l| format!("zstd level {l}"));
            return Err(Status::failed_precondition(format!(
                "node {me} stores blobs with {}, the node running the backup with {}: a cluster backup needs the same storage.compression and compression_level on every node",
                say(ours),
                say(q.zstd_level)
            )));
        }
        let t = crate::api::backup::target_of(&q.url, false, Some(spec), &self.objects).map_err(Status::from)?;
        let busy = self
            .busy
            .clone()
            .try_lock_owned()
            .map_err(|_| Status::failed_precondition(format!("node {me} is sending its part of another backup")))?;
        let (tx, rx) = mpsc::channel(8);
        let objects = self.objects.clone();
        tokio::spawn(async move {
            let _busy = busy;
            let (ptx, mut prx) = watch::channel(Progress::default());
            let run = backup::part(&objects, &t, &ptx);
            tokio::pin!(run);
            let mut beat = tokio::time::interval(BEAT);
            let last = loop {
                tokio::select! {
                    r = &mut run => break r,
                    // The coordinator went away: its backup has failed.
                    () = tx.closed() => return,
                    _ = beat.tick() => {
                        let c = Counts::from(&*prx.borrow_and_update());
                        let _ = tx.try_send(encode(&PartMsg::Progress(c)));
                    }
                }
            };
            let last = match last {
                Ok(part) => encode(&PartMsg::Done(Box::new(part))),
                Err(e) => Err(Status::from(crate::api::error::remote(e))),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
