//! The local blob store: content-addressed files on disk.
//!
//! A blob is named by the SHA-256 of its plaintext and stored once however
//! many keys refer to it. Writing is two steps so that the layer above can
//! commit metadata in the same breath as the blob:
//!
//! 1. [`BlobWriter`] streams bytes into a temp file, hashing as it goes
//!    ([`LocalStore::stage`]);
//! 2. [`LocalStore::publish`] renames staged files into place and makes the
//!    renames durable, many at a time (group commit).
//!
//! A blob file counts only once the metadata store has a row for it: a file
//! left by a crash between the two steps is never served, and GC removes it.
//!
//! # Layout
//! - [`format`]: the frames, header and footer of one file.
//! - [`writer`], [`reader`]: streaming in and out, verifying on the way out.
//! - [`local`]: paths, the directory lock, publishing, quarantine, scans.

pub mod failpoints;
pub mod format;
pub mod local;
pub mod reader;
pub mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use format::{Codec, Key};
pub use local::LocalStore;
pub use reader::{BlobReader, Source};
pub use writer::{BlobWriter, Staged};

/// SHA-256 of a blob's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Into a stack buffer by table (`hex::encode` builds its string a
        // char at a time, which showed in profiles of listings).
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).expect("64 hex digits for 32 bytes");
        f.write_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let raw = hex::decode(s).map_err(|_| format!("{s:?} is not a hex SHA-256 digest"))?;
        raw.try_into().map(Digest).map_err(|_| format!("{s:?} is not 64 hex characters"))
    }
}

impl Digest {
    /// The name of a composite: the bytes of `parts` (digest and size) in
    /// order. It is a SHA-256 over the list with its first byte flipped, so
    /// no content hashes to it: a put of the list itself cannot dedup onto
    /// the composite.
    pub fn composite(parts: &[(Digest, u64)]) -> Digest {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(b"strata composite v1\0");
        for (d, size) in parts {
            h.update(d.0);
            h.update(size.to_le_bytes());
        }
        let mut out: [u8; 32] = h.finalize().into();
        out[0] ^= 0xff;
        Digest(out)
    }
}

/// In messages between nodes: the hex string.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("blob {digest} is missing from disk")]
    Missing { digest: Digest },
    #[error("blob {digest} is corrupt: {why}")]
    Corrupt { digest: Digest, why: String },
    #[error("blob {digest} is encrypted but no encryption key is configured")]
    NoKey { digest: Digest },
    #[error("blob {digest} was encrypted with key {blob_key}, but the configured key is {configured_key}")]
    WrongKey { digest: Digest, blob_key: String, configured_key: String },
    #[error("storage quota exceeded: {used} of {max} bytes used, this write needs more")]
    QuotaExceeded { used: u64, max: u64 },
    #[error("{what}: expected {expected}, got {actual}")]
    Mismatch { what: &'static str, expected: String, actual: String },
    #[error("range starts at {offset} but the object has {size} bytes")]
    BadRange { offset: u64, size: u64 },
    #[error("data directory {path} is in use by another strata server (lock held on {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("no space left on the disk of {}: free space (delete objects, then let GC run) or add disk", path.display())]
    NoSpace { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the write was cancelled")]
    Cancelled,
    /// A tier (an object store) holding the blob cannot be reached.
    #[error("tier {tier:?} is unavailable: {why}")]
    TierUnavailable { tier: String, why: String },
}

impl StoreError {
    /// The blob's bytes are damaged or gone: a case for quarantine.
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. } | StoreError::Missing { .. })
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| {
            // A tier's reader says why it failed through io::Error.
            if let Some(StoreError::TierUnavailable { tier, why }) = source.get_ref().and_then(|e| e.downcast_ref::<StoreError>()) {
                return StoreError::TierUnavailable { tier: tier.clone(), why: why.clone() };
            }
            if is_out_of_space(&source) {
                return StoreError::NoSpace { path };
            }
            StoreError::Io { path, source }
        }
    }

    /// A copy for each caller of a failed batch.
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::NoSpace { path } => StoreError::NoSpace { path: path.clone() },
            StoreError::QuotaExceeded { used, max } => StoreError::QuotaExceeded { used: *used, max: *max },
            StoreError::Io { path, source } => {
                StoreError::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            e => StoreError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) },
        }
    }
}

/// ENOSPC, or EDQUOT (a user's disk quota), which a writer treats alike.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded || e.raw_os_error() == Some(libc::ENOSPC)
}

/// A temp file removed when dropped: a transfer cut off leaves nothing.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A byte range of a blob; `len == None` reads to the end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Range {
    pub offset: u64,
    pub len: Option<u64>,
}

impl Range {
    pub const ALL: Range = Range { offset: 0, len: None };

    pub fn is_all(&self) -> bool {
        self.offset == 0 && self.len.is_none()
    }
}
