//! Checks on everything a client names, and conversions of attribute values.

use std::collections::HashMap;

use serde_json::{Number, Value as Json};

use super::error::{ApiError, invalid};
use super::pb::{self, value::Kind};
use crate::meta::Attributes;

pub const DEFAULT_BUCKET: &str = "default";

/// An empty bucket means the default one.
pub fn bucket(name: &str) -> Result<String, ApiError> {
    if name.is_empty() {
        return Ok(DEFAULT_BUCKET.into());
    }
    bucket_name(name)?;
    Ok(name.into())
}

/// Bucket names: see [`crate::meta::names::bucket_name`].
pub fn bucket_name(name: &str) -> Result<(), ApiError> {
    crate::meta::names::bucket_name(name).map_err(invalid)
}

/// Keys: 1 to `max` bytes of UTF-8 (prost already refused invalid UTF-8),
/// no NUL or other control characters, no `.` or `..` path segment.
/// The longest content type a put may carry (the MIME grammar's names are
/// at most 127 characters each, plus parameters).
pub const MAX_CONTENT_TYPE: usize = 256;

/// A content type: printable ASCII (spaces allowed, for parameters), at
/// most 256 bytes. It is echoed in every listing, so it must stay small.
pub fn content_type(ct: &str) -> Result<(), ApiError> {
    if ct.len() > MAX_CONTENT_TYPE {
        return Err(invalid(format!("content_type is {} bytes long; the limit is {MAX_CONTENT_TYPE}", ct.len())));
    }
    if !ct.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(invalid("content_type takes printable ASCII only (such as `text/plain; charset=utf-8`)"));
    }
    Ok(())
}

/// The longest request id a put may carry.
pub const MAX_REQUEST_ID: usize = 128;

/// A put's request id: empty is none; else up to 128 printable ASCII
/// characters.
pub fn request_id(id: String) -> Result<Option<String>, ApiError> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() > MAX_REQUEST_ID {
        return Err(invalid(format!("request_id is {} bytes long; the limit is {MAX_REQUEST_ID}", id.len())));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("request_id takes printable ASCII without spaces (a UUID, say)"));
    }
    Ok(Some(id))
}

pub fn key(key: &str, max: usize) -> Result<(), ApiError> {
    crate::meta::names::key(key, max).map_err(invalid)
}

pub fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// A version id as the server mints them: 16 hex digits of stamp, '-', the
/// writer's node id.
pub fn version_id(field: &str, v: &str) -> Result<(), ApiError> {
    let well_formed = v.len() <= 128
        && v.split_once('-').is_some_and(|(stamp, node)| {
            stamp.len() == 16
                && stamp.bytes().all(|b| b.is_ascii_hexdigit())
                && !node.is_empty()
                && node.bytes().all(|b| b.is_ascii_graphic())
        });
    if !well_formed {
        return Err(invalid(format!(
            "{field}: {v:?} is not a version id (16 hex digits, '-', a node id, as `strata versions` shows them)"
        )));
    }
    Ok(())
}

/// Attributes of one object, at most `max_bytes` as stored (names plus
/// JSON values), so no object can make a listing page or a search reply
/// too big to send.
pub fn attributes(attrs: HashMap<String, pb::Value>, max_bytes: usize) -> Result<Attributes, ApiError> {
    let mut out = Attributes::new();
    for (k, v) in attrs {
        if k.is_empty() || k.len() > 256 {
            let shown: String = k.chars().take(64).collect();
            return Err(invalid(format!("attribute name {shown:?}... must be 1 to 256 bytes")));
        }
        let json = to_json(v).map_err(|why| invalid(format!("attribute {k:?}: {why}")))?;
        out.insert(k, json);
    }
    let bytes = serde_json::to_string(&out).map_or(usize::MAX, |j| j.len());
    if bytes > max_bytes {
        return Err(invalid(format!(
            "the attributes take {bytes} bytes; the limit is {max_bytes} (server.max_attribute_bytes): \
             keep large data in the object itself"
        )));
    }
    Ok(out)
}

fn to_json(v: pb::Value) -> Result<Json, String> {
    Ok(match v.kind {
        Some(Kind::String(s)) => Json::String(s),
        Some(Kind::Number(n)) => Json::Number(Number::from_f64(n).ok_or("numbers must be finite")?),
        Some(Kind::Boolean(b)) => Json::Bool(b),
        Some(Kind::List(l)) => Json::Array(l.values.into_iter().map(to_json).collect::<Result<_, _>>()?),
        None => return Err("the value is empty".into()),
    })
}

pub fn from_json(v: &Json) -> pb::Value {
    let kind = match v {
        Json::String(s) => Kind::String(s.clone()),
        Json::Number(n) => Kind::Number(n.as_f64().unwrap_or_default()),
        Json::Bool(b) => Kind::Boolean(*b),
        Json::Array(a) => Kind::List(pb::ValueList { values: a.iter().map(from_json).collect() }),
        // Never stored (the API accepts no null or object), but stay total.
        Json::Null => Kind::String(String::new()),
        Json::Object(_) => Kind::String(v.to_string()),
    };
    pb::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(key("a/b/c.txt", 1024).is_ok());
        assert!(key("", 1024).is_err());
        assert!(key("a/../b", 1024).is_err());
        assert!(key("..", 1024).is_err());
        assert!(key("a\0b", 1024).is_err());
        assert!(key(&"x".repeat(1025), 1024).is_err());
        assert!(key("a..b", 1024).is_ok());
    }

    #[test]
    fn buckets() {
        assert!(bucket_name("models").is_ok());
        assert!(bucket_name("Models").is_err());
        assert!(bucket_name("ab").is_err());
        assert!(bucket_name("-ab").is_err());
        assert_eq!(bucket("").unwrap(), "default");
    }
}
