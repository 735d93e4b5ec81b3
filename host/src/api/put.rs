//! Put and PutMany.

use bytes::Bytes;
use futures::StreamExt;
use tonic::{Status, Streaming};

use super::error::{ApiError, invalid};
use super::{Limits, object_info, pb, validate};
use crate::meta::{Condition, ObjectRecord};
use crate::objects::{ObjectError, Objects, PutSpec};
use crate::service::{ObjectService, ServiceError};

fn spec(h: pb::PutHeader, limits: &Limits) -> Result<PutSpec, ApiError> {
    let bucket = validate::bucket(&h.bucket)?;
    validate::key(&h.key, limits.max_key_length)?;
    validate::content_type(&h.content_type)?;
    if h.if_absent && !h.if_version.is_empty() {
        return Err(invalid("if_absent and if_version cannot both be set"));
    }
    if !h.if_version.is_empty() {
        validate::version_id("if_version", &h.if_version)?;
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
        attributes: validate::attributes(h.attributes, limits.max_attribute_bytes)?,
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
        request_id: validate::request_id(h.request_id)?,
        late: None,
    })
}

pub async fn handle_put(
    service: &dyn ObjectService,
    limits: &Limits,
    mut stream: Streaming<pb::PutRequest>,
    who: &super::auth::Caller,
) -> Result<pb::PutResponse, ApiError> {
    let header = match stream.message().await? {
        Some(pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) }) => h,
        Some(_) => return Err(invalid("the first message of a put must be its header")),
        None => return Err(invalid("the put stream is empty: send a header, then chunks")),
    };
    who.allow(super::auth::Need::Write(&header.bucket))?;
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
    let result = service.put(spec, Box::pin(chunks)).await;
    if let Some(s) = bad {
        return Err(s.into());
    }
    let rec = result?;
    metrics::counter!("strata_bytes_received_total").increment(rec.size);
    Ok(pb::PutResponse { object: Some(object_info(&rec)) })
}

/// Reply bytes an item's result may take beyond its key and content type
/// (version, digest, sizes, times, an error message of at most
/// [`MAX_ITEM_ERROR`] bytes, framing).
const ITEM_REPLY_OVERHEAD: usize = 400 + MAX_ITEM_ERROR;
const MAX_ITEM_ERROR: usize = 512;

/// Reads the whole PutMany stream, then stores its items together.
///
/// Nothing is stored before the client has ended its stream cleanly, so a
/// PutMany that is cancelled, reset or past its deadline at any point
/// leaves nothing behind. A stream that would pass a limit (items, bytes
/// held, or a reply too big to send) is refused before anything is stored.
pub async fn handle_put_many(
    service: &dyn ObjectService,
    objects: &Objects,
    limits: &Limits,
    mut stream: Streaming<pb::PutManyRequest>,
    who: &super::auth::Caller,
) -> Result<pb::PutManyResponse, ApiError> {
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    let mut slots = Vec::new();
    let mut reply_bytes = 0usize;
    let mut data_bytes = 0usize;
    let mut held = objects.upload_claim();
    loop {
        let msg = match tokio::time::timeout(objects.idle_timeout(), stream.message()).await {
            Ok(m) => m?,
            Err(_) => return Err(ObjectError::Idle { secs: objects.idle_timeout().as_secs() }.into()),
        };
        let Some(msg) = msg else { break };
        if results.len() + msg.items.len() > limits.max_batch_items {
            return Err(invalid(format!(
                "a PutMany carries at most {} items (server.max_batch_items) across its messages; \
                 nothing was stored: split the batch into several calls",
                limits.max_batch_items
            )));
        }
        for item in msg.items {
            let header = item.header.unwrap_or_default();
            who.allow(super::auth::Need::Write(&header.bucket))?;
            reply_bytes += 2 * header.key.len() + header.content_type.len() + ITEM_REPLY_OVERHEAD;
            data_bytes += item.data.len();
            if reply_bytes > limits.max_reply_bytes {
                return Err(ApiError::Status(Status::resource_exhausted(format!(
                    "this PutMany's reply would pass the message limit after {} items; nothing was stored: \
                     split the batch into several calls",
                    results.len()
                ))));
            }
            if data_bytes > objects.upload_budget_bytes() {
                return Err(ApiError::Status(Status::resource_exhausted(format!(
                    "a PutMany carries at most {} bytes of data (server.upload_buffer); nothing was stored: \
                     split the batch or put large objects one by one",
                    objects.upload_budget_bytes()
                ))));
            }
            let key = header.key.clone();
            results.push(pb::ItemResult { key, ..Default::default() });
            match spec(header, limits) {
                Ok(s) => {
                    slots.push(results.len() - 1);
                    accepted.push((s, item.data));
                }
                Err(st) => fill_status(results.last_mut().expect("just pushed"), Err(st)),
            }
        }
        // What this call holds counts against the server's upload budget.
        objects.grow(&mut held, data_bytes).await?;
    }
    for (slot, r) in slots.into_iter().zip(service.put_many(accepted).await) {
        fill(&mut results[slot], r);
    }
    Ok(pb::PutManyResponse { results })
}

pub fn fill(slot: &mut pb::ItemResult, r: Result<ObjectRecord, ServiceError>) {
    fill_status(slot, r.map_err(ApiError::from))
}

/// One item's outcome. The attributes are not echoed (the client sent
/// them), which keeps a large batch's reply within its limit.
pub fn fill_status(slot: &mut pb::ItemResult, r: Result<ObjectRecord, ApiError>) {
    match r {
        Ok(rec) => {
            let mut info = object_info(&rec);
            info.attributes.clear();
            slot.object = Some(info);
        }
        Err(e) => {
            let st = Status::from(e);
            let mut msg = st.message().to_string();
            if msg.len() > MAX_ITEM_ERROR {
                let mut cut = MAX_ITEM_ERROR - 3;
                while !msg.is_char_boundary(cut) {
                    cut -= 1;
                }
                msg.truncate(cut);
                msg.push_str("...");
            }
            slot.error = msg;
            slot.code = st.code() as i32;
        }
    }
}
