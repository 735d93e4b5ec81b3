//! Put and PutMany.

use bytes::Bytes;
use futures::StreamExt;
use tonic::{Status, Streaming};

use super::error::invalid;
use super::{Limits, object_info, pb, validate};
use crate::meta::Condition;
use std::sync::Arc;

use crate::objects::{ObjectError, Objects, PutSpec};
use crate::replication::Replicator;

fn spec(h: pb::PutHeader, limits: &Limits) -> Result<PutSpec, Status> {
    let bucket = validate::bucket(&h.bucket)?;
    validate::key(&h.key, limits.max_key_length)?;
    if h.if_absent && !h.if_version.is_empty() {
        return Err(invalid("if_absent and if_version cannot both be set"));
    }
    let expected_digest = if h.expected_digest.is_empty() {
        None
    } else {
        Some(h.expected_digest.parse().map_err(|e: String| invalid(format!("expected_digest: {e}")))?)
    };
    Ok(PutSpec {
        bucket,
        key: h.key,
        content_type: if h.content_type.is_empty() { "application/octet-stream".into() } else { h.content_type },
        attributes: validate::attributes(h.attributes)?,
        size: h.size,
        expected_digest,
        condition: if h.if_absent {
            Condition::IfAbsent
        } else if !h.if_version.is_empty() {
            Condition::IfVersion(h.if_version)
        } else {
            Condition::Always
        },
        identity: None,
    })
}

pub async fn handle_put(
    objects: &Objects,
    replicator: Option<&Arc<Replicator>>,
    limits: &Limits,
    mut stream: Streaming<pb::PutRequest>,
) -> Result<pb::PutResponse, Status> {
    let header = match stream.message().await? {
        Some(pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) }) => h,
        Some(_) => return Err(invalid("the first message of a put must be its header")),
        None => return Err(invalid("the put stream is empty: send a header, then chunks")),
    };
    let spec = spec(header, limits)?;
    let chunks = stream.map(|m| match m {
        Ok(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(c)) }) => Ok(c),
        Ok(_) => Err(Status::invalid_argument("a put sends one header, then only chunks")),
        Err(s) => Err(s),
    });
    // A protocol error in the stream is the client's fault, not an abort.
    let mut bad: Option<Status> = None;
    let chunks = chunks.map(|r: Result<Bytes, Status>| {
        if let Err(s) = &r
            && s.code() == tonic::Code::InvalidArgument
        {
            bad = Some(s.clone());
        }
        r.map_err(|s| s.message().to_string())
    });
    let result = match replicator {
        Some(r) => r.put(spec, Box::pin(chunks)).await,
        None => objects.put(spec, Box::pin(chunks)).await.map_err(Status::from),
    };
    if let Some(s) = bad {
        return Err(s);
    }
    let rec = result?;
    Ok(pb::PutResponse { object: Some(object_info(&rec)) })
}

pub async fn handle_put_many(
    objects: &Objects,
    replicator: Option<&Arc<Replicator>>,
    limits: &Limits,
    mut stream: Streaming<pb::PutManyRequest>,
) -> Result<pb::PutManyResponse, Status> {
    let mut results = Vec::new();
    while let Some(msg) = stream.message().await? {
        if msg.items.len() > limits.max_batch_items {
            return Err(invalid(format!(
                "a PutMany message holds {} items; the limit is {}",
                msg.items.len(),
                limits.max_batch_items
            )));
        }
        let mut accepted = Vec::new();
        let mut slots = Vec::new();
        for item in msg.items {
            let header = item.header.unwrap_or_default();
            let key = header.key.clone();
            results.push(pb::ItemResult { key, ..Default::default() });
            match spec(header, limits) {
                Ok(s) => {
                    slots.push(results.len() - 1);
                    accepted.push((s, item.data));
                }
                Err(st) => {
                    let r = results.last_mut().expect("just pushed");
                    r.error = st.message().into();
                    r.code = st.code() as i32;
                }
            }
        }
        match replicator {
            // Each item is its own replicated write, all in flight at once.
            Some(r) => {
                let puts = accepted.into_iter().map(|(spec, data)| {
                    r.put(spec, futures::stream::iter([Ok::<_, std::convert::Infallible>(data)]))
                });
                for (slot, res) in slots.into_iter().zip(futures::future::join_all(puts).await) {
                    fill_status(&mut results[slot], res);
                }
            }
            None => {
                for (slot, r) in slots.into_iter().zip(objects.put_many(accepted).await) {
                    fill(&mut results[slot], r);
                }
            }
        }
    }
    Ok(pb::PutManyResponse { results })
}

pub fn fill(slot: &mut pb::ItemResult, r: Result<crate::meta::ObjectRecord, ObjectError>) {
    fill_status(slot, r.map_err(Status::from))
}

pub fn fill_status(slot: &mut pb::ItemResult, r: Result<crate::meta::ObjectRecord, Status>) {
    match r {
        Ok(rec) => slot.object = Some(object_info(&rec)),
        Err(st) => {
            slot.error = st.message().into();
            slot.code = st.code() as i32;
        }
    }
}
