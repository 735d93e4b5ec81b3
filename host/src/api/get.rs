//! Get (streamed, with an optional byte range) and Stat.

use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::error::{self, ApiError};
use super::{GetStream, Limits, object_info, pb, validate};
use crate::service::ObjectService;
use crate::store::Range;

pub async fn handle_get(service: &dyn ObjectService, limits: &Limits, req: pb::GetRequest) -> Result<GetStream, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    validate::key(&req.key, limits.max_key_length)?;
    let range = Range { offset: req.offset, len: (req.length > 0).then_some(req.length) };
    let version = validate::version(&req.version);
    let (rec, rx) = service.get(&bucket, &req.key, version, range).await?;
    let head = pb::GetResponse { part: Some(pb::get_response::Part::Info(object_info(&rec))) };
    let body = chunked(rx, limits.max_chunk);
    Ok(Box::pin(futures::stream::once(async { Ok(head) }).chain(body)))
}

/// A get's bytes as response chunks of at most `max` bytes; a read error
/// ends the stream with its status.
pub fn chunked(
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, crate::objects::ObjectError>>,
    max: usize,
) -> impl futures::Stream<Item = Result<pb::GetResponse, Status>> + Send + 'static {
    ReceiverStream::new(rx).flat_map(move |item| {
        let out: Vec<Result<pb::GetResponse, Status>> = match item {
            Ok(mut data) => {
                metrics::counter!("strata_bytes_sent_total").increment(data.len() as u64);
                // Frames are 1 MiB; split further if the message limit is smaller.
                let mut parts = Vec::new();
                while data.len() > max {
                    parts.push(data.split_to(max));
                }
                parts.push(data);
                parts
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| Ok(pb::GetResponse { part: Some(pb::get_response::Part::Chunk(p)) }))
                    .collect()
            }
            Err(e) => vec![Err(error::object(e))],
        };
        futures::stream::iter(out)
    })
}

pub async fn handle_stat(service: &dyn ObjectService, limits: &Limits, req: pb::StatRequest) -> Result<pb::ObjectInfo, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    validate::key(&req.key, limits.max_key_length)?;
    let (rec, replicas) = service.stat(&bucket, &req.key, validate::version(&req.version)).await?;
    let replicas = replicas.into_iter().map(|r| pb::ReplicaInfo { node_id: r.node, address: r.address, state: r.state.into() }).collect();
    Ok(pb::ObjectInfo { replicas, ..object_info(&rec) })
}
