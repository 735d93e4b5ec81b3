//! Strata on object stores: tiers of cold blobs, and backups of a node's
//! metadata and blobs to any `object_store` URL, verified and restored.
//!
//! # Layout at a target
//! ```text
//! <prefix>/blobs/ab/<digest>        one blob, in Strata's frame format (as on disk:
//!                                   compressed and encrypted when the node is)
//! <prefix>/backups/<id>/manifest.json  what backup <id> needs; written last
//! <prefix>/lock                     held by a backup or prune in progress
//! <prefix>/lock-takeovers/<t>-<ms>  one per stale lock taken over (tiny, kept)
//! ```
//! A metadata snapshot is stored as a blob too, so it is deduplicated,
//! checksummed and encrypted like any other. Content addressing makes every
//! backup incremental: a blob already at the target is not sent again.
//!
//! # Modules
//! - [`target`]: a URL and options, opened.
//! - [`transfer`]: files up and down, create-only.
//! - [`manifest`]: what a backup holds; listing backups.
//! - [`lock`]: one writer per target.
//! - [`backup`], [`restore`], [`verify`], [`prune`]: the four operations.
//! - [`tier`]: a tier of cold blobs on an object store, read by ranges.

pub mod backup;
pub mod lock;
pub mod manifest;
pub mod prune;
pub mod restore;
pub mod target;
pub mod tier;
pub mod transfer;
pub mod verify;

use std::path::PathBuf;

pub use manifest::{BlobRef, Manifest, NodePart};
pub use object_store;
pub use target::{Target, TargetSpec};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    #[error("{url}: {why}")]
    BadTarget { url: String, why: String },
    #[error("{target} is unavailable: {source}")]
    Unavailable {
        target: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{target} has no backup {id:?} (see `strata backup ls`)")]
    NoBackup { target: String, id: String },
    #[error("{target} holds no backup yet")]
    NoBackups { target: String },
    #[error("{target}: backup {id} is unreadable: {why}")]
    BadManifest { target: String, id: String, why: String },
    #[error("{target} is locked by {holder} (renewed {age_s} s ago; a lock not renewed for {stale_s} s is taken over)")]
    Locked { target: String, holder: String, age_s: u64, stale_s: u64 },
    #[error("{target}: this run's lock went stale and was taken over by {holder}; nothing was committed: run it again")]
    LockLost { target: String, holder: String },
    #[error("{} is not empty: restore needs an empty data directory (a new one, or move this one away)", path.display())]
    NotEmpty { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("restore failed, nothing was made visible: {count} blob(s) could not be restored, first {first}")]
    RestoreFailed { count: usize, first: String },
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),
    #[error(transparent)]
    Meta(#[from] strata_meta::MetaError),
    #[error(transparent)]
    Object(#[from] strata_objects::ObjectError),
    #[error("{0}")]
    Io(String),
    /// A member of the cluster could not send its part of a backup.
    #[error("node {node} ({addr}) could not send its part: {why}")]
    Member { node: u64, addr: String, why: String, retry: bool },
    /// The cluster could not be asked (no quorum, no leader).
    #[error("{0}")]
    Cluster(String),
}

impl RemoteError {
    /// Wraps an object-store failure at `target`.
    pub fn at(target: &Target) -> impl FnOnce(object_store::Error) -> RemoteError + '_ {
        move |source| RemoteError::Unavailable { target: target.to_string(), source }
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A task's panic or cancellation, as an error.
pub(crate) fn joined(e: tokio::task::JoinError) -> RemoteError {
    RemoteError::Io(format!("a worker task failed: {e}"))
}

pub(crate) use strata_store::TempFile;
