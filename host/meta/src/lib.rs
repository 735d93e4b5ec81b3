//! The metadata store: buckets, object versions, blob reference counts.
//!
//! [`MetaStore`] is the only door to SQLite: its methods take and return
//! plain Rust types and no sqlx type leaks out. SQL lives in [`sql`]. Writes
//! go through one connection, so they are serialised without SQLITE_BUSY
//! retries; reads use a small pool beside it (WAL lets them run while a
//! write commits).
//!
//! Listing is a range over `objects (bucket, key)` and every lookup is by
//! primary key or index, so the cost of a call does not grow with the
//! number of objects.

mod batch;
pub use batch::Committed;
mod bind;
mod cache;
mod clock;
mod composite;
pub mod entropy;
#[cfg(test)]
mod entropy_tests;
pub mod fsck;
mod index;
#[cfg(test)]
mod index_tests;
pub mod lineage;
pub mod names;
mod queue;
#[cfg(test)]
mod replica_tests;
mod scan;
pub mod snapshot;
mod sql;
pub mod tiers;
mod view;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use cache::CacheStats;
use cache::MetaCache;
use clock::Clock;
pub use index::{CandidateIds, CandidateKeys, Candidates, IndexDef, MAX_COMPOUND, TermMaker, TermMatch};
pub use queue::{QueueEntry, QueueStats};
pub use scan::{Position, SortField, SortValue};
pub use view::View;

use strata_config::IndexingMode;
use strata_store::Digest;

/// User attributes: a JSON object of strings, numbers, booleans and arrays.
pub type Attributes = Map<String, Value>;

/// One version of one key, as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRecord {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub stamp: u64,
    /// `None` for a delete marker.
    pub digest: Option<Digest>,
    pub size: u64,
    pub content_type: String,
    pub attributes: Attributes,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub latest: bool,
}

impl ObjectRecord {
    pub fn is_delete_marker(&self) -> bool {
        self.digest.is_none()
    }

    /// An upper bound on the bytes this record takes in a reply, so pages
    /// can stop before a message limit (attributes count twice: a protobuf
    /// value's framing can outweigh its JSON).
    pub fn reply_bytes(&self) -> usize {
        let attrs = serde_json::to_string(&self.attributes).map_or(0, |a| a.len());
        self.bucket.len() + self.key.len() + self.version.len() + self.content_type.len() + 2 * attrs + 160
    }
}

/// How long a put's request id is remembered: a retry within it returns
/// the first put's version.
pub const REQUEST_ID_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// When a put may go ahead.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Condition {
    #[default]
    Always,
    /// Only if the key has no live object.
    IfAbsent,
    /// Only if the key's live object is this version.
    IfVersion(String),
    /// A conditional write decided across a cluster, fenced by its lock
    /// token: recorded only if no higher token has been shown for the key
    /// here (see [`MetaStore::fence`]).
    Fenced(u64),
}

impl Condition {
    /// Why the condition fails when the key's live version is `live`, if
    /// it does (`Fenced` is judged by its token, not here).
    pub fn refusal(&self, live: Option<&str>) -> Option<String> {
        match (self, live) {
            (Condition::IfAbsent, Some(v)) => Some(format!("it exists (version {v})")),
            (Condition::IfVersion(want), Some(v)) if v != want => Some(format!("current version is {v}, not {want}")),
            (Condition::IfVersion(want), None) => Some(format!("it has no live version, not {want}")),
            _ => None,
        }
    }
}

/// A put whose blob is durable on disk, ready to be recorded.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub bucket: String,
    pub key: String,
    pub digest: Digest,
    pub size: u64,
    pub stored_size: u64,
    pub content_type: String,
    pub attributes: Attributes,
    pub condition: Condition,
    /// The blob was just written (so any old row's state is stale): the
    /// first accepted item of the digest refreshes the row.
    pub fresh_blob: bool,
    /// The stored bytes of a small blob, kept in the metadata store.
    pub inline: Option<bytes::Bytes>,
    /// Set when the version was minted elsewhere (or before its bytes
    /// arrived): it is recorded as given, not stamped anew.
    pub identity: Option<Identity>,
    /// The client's id for this put: a put whose id the bucket has on
    /// record stores nothing and answers with the first put's version.
    pub request_id: Option<String>,
}

/// A version and where it is placed.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub id: i64,
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub size: u64,
    pub replicas: Vec<u64>,
}

/// A version's identity, fixed by the node that coordinated the write and
/// the same on every replica.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// `{stamp:016x}-{node}`: ordering these strings orders (stamp, node).
    pub version: String,
    pub stamp: u64,
    pub node: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// Cluster ids of the nodes meant to hold the version.
    pub replicas: Vec<u64>,
    /// The versions this one supersedes (see [`lineage`]): what its
    /// coordinator saw (the newest and every head), or every head a
    /// resolution resolved. `None` where
    /// unknown (a single node's writes).
    #[serde(default)]
    pub parents: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub name: String,
    pub created_ms: i64,
    pub object_count: u64,
}

/// Running totals.
#[derive(Clone, Debug, Default)]
pub struct MetaStats {
    pub objects: u64,
    pub live_bytes: u64,
    pub versions: u64,
    pub version_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub stored_bytes: u64,
    /// The part of `stored_bytes` on object-store tiers.
    pub tier_bytes: u64,
    pub corrupt_blobs: u64,
    pub cache: CacheStats,
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq)]
pub enum Deleted {
    /// Versioning left this marker.
    Marker(String),
    /// The version (or unversioned object) is gone for good.
    Removed,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("bucket {bucket:?} already exists")]
    BucketExists { bucket: String },
    #[error("bucket {bucket:?} still holds objects; delete them first")]
    BucketNotEmpty { bucket: String },
    #[error("bucket {bucket:?} cannot be deleted: key-only requests use it")]
    DefaultBucket { bucket: String },
    #[error("no object {key:?} in bucket {bucket:?}")]
    NotFound { bucket: String, key: String },
    #[error("object {key:?} in bucket {bucket:?} has no version {version:?}")]
    NoSuchVersion { bucket: String, key: String, version: String },
    #[error("condition failed for {key:?}: {why}")]
    ConditionFailed { key: String, why: String },
    #[error("request id {request_id:?} was used for key {key:?} in this bucket; give each put its own id")]
    RequestReused { request_id: String, key: String },
    #[error("request id {request_id:?} made version {version:?} of {key:?}, which has since been removed")]
    RequestGone { request_id: String, key: String, version: String },
    /// A put whose request id is on record: the answer is this version
    /// (resolved to its record once the batch commits).
    #[error("replayed as version {version:?}")]
    Replayed { version: String },
    #[error("version {version:?} of {key:?} has corrupt content and cannot be restored")]
    CorruptVersion { key: String, version: String },
    #[error("bucket {bucket:?} already has an index named {name:?}")]
    IndexExists { bucket: String, name: String },
    #[error("bucket {bucket:?} has no index named {name:?}")]
    NoSuchIndex { bucket: String, name: String },
    /// SQLite could not grow the database or its WAL (`SQLITE_FULL`).
    #[error("no space left for the metadata database{}: free space (delete objects, then let GC run) or raise the disk", in_dir(path))]
    Full { path: std::path::PathBuf },
    #[error(
        "the metadata database {} is damaged ({problems}); stop here and run `strata fsck` to see what is affected, \
         restore it from a backup, or start with metadata.check_at_start = false to serve it as it is",
        path.display()
    )]
    Damaged { path: std::path::PathBuf, problems: String },
    #[error("metadata database error: {0}")]
    Db(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// ` in DIR`, or nothing when the error was not located.
fn in_dir(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() { String::new() } else { format!(" in {}", path.display()) }
}

impl MetaError {
    /// A copy to hand to every caller of a failed batch (the source error
    /// itself is not `Clone`).
    pub fn duplicate(&self) -> MetaError {
        match self {
            MetaError::Full { path } => MetaError::Full { path: path.clone() },
            e => MetaError::Db(e.to_string().into()),
        }
    }
}

/// SQLite's primary result codes this store tells apart.
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_NOTADB: i64 = 26;

/// The primary result code of a SQLite error (extended codes are on, so the
/// low byte), if it is one.
fn sqlite_code(e: &sqlx::Error) -> Option<i64> {
    let sqlx::Error::Database(d) = e else { return None };
    d.code()?.parse::<i64>().ok().map(|c| c & 0xff)
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        if sqlite_code(&e) == Some(SQLITE_FULL) {
            // The path is filled in by the store, which knows it.
            return MetaError::Full { path: std::path::PathBuf::new() };
        }
        MetaError::Db(Box::new(e))
    }
}

impl From<sqlx::migrate::MigrateError> for MetaError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        MetaError::Db(Box::new(e))
    }
}

/// How to open the store.
#[derive(Clone, Debug)]
pub struct MetaOptions {
    /// Directory of `strata.db`; `None` for in-memory.
    pub dir: Option<std::path::PathBuf>,
    pub sync_writes: bool,
    pub cache_size: usize,
    pub versioning: bool,
    pub max_versions: u32,
    /// Versions other than the live one are removed once this old; zero
    /// keeps them.
    pub max_version_age: Duration,
    pub indexing: IndexingMode,
    /// Run `PRAGMA quick_check` before serving.
    pub check: bool,
}

impl MetaOptions {
    /// An in-memory store with history on (two versions a key), no
    /// indexing and no check: what tests start from.
    pub fn in_memory() -> Self {
        MetaOptions {
            dir: None,
            sync_writes: false,
            cache_size: 100,
            versioning: true,
            max_versions: 2,
            max_version_age: Duration::ZERO,
            indexing: IndexingMode::Disabled,
            check: false,
        }
    }
}

pub struct MetaStore {
    /// Where `strata.db` lives (`None`: in memory), named in errors.
    dir: Option<std::path::PathBuf>,
    write: SqlitePool,
    read: SqlitePool,
    cache: MetaCache,
    clock: Clock,
    node_id: String,
    versioning: bool,
    /// Buckets set to keep versions or not (S3's PutBucketVersioning),
    /// whatever `versioning` says; read by every write.
    per_bucket: std::sync::RwLock<Arc<std::collections::HashMap<String, sql::BucketVersioning>>>,
    max_versions: u32,
    max_version_age: Duration,
    indexing: IndexingMode,
    /// Set once plugins are loaded; until then indexes wait.
    terms: OnceLock<Arc<dyn TermMaker>>,
    /// Wakes the index worker (an index was made or dropped).
    index_wake: tokio::sync::Notify,
    /// An index was dropped since the last sweep.
    index_dropped: std::sync::atomic::AtomicBool,
    /// Per index, the batch its catch-up last got through when a bigger one
    /// failed (a plugin past its deadline on many large objects).
    index_batches: std::sync::Mutex<HashMap<i64, u32>>,
    /// Keys found with siblings as versions were recorded.
    conflicts: lineage::Conflicts,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl MetaStore {
    pub async fn open(opts: MetaOptions) -> Result<Arc<Self>, MetaError> {
        let (write, read) = match &opts.dir {
            Some(dir) => open_file(dir, opts.sync_writes).await?,
            None => {
                // One connection serves everything: a private in-memory database.
                let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
                let pool = single_connection(options).await?;
                (pool.clone(), pool)
            }
        };
        if opts.check
            && let Some(dir) = &opts.dir
        {
            check_integrity(&write, dir).await?;
        }
        sqlx::migrate!("./migrations").run(&write).await?;
        let node_id = sql::node_id(&write).await?;
        let last = sql::last_stamp(&write).await?;
        let per_bucket = sql::bucket_versioning(&write).await?;
        Ok(Arc::new(Self {
            dir: opts.dir.clone(),
            write,
            read,
            cache: MetaCache::new(opts.cache_size),
            clock: Clock::new(last),
            node_id,
            versioning: opts.versioning,
            per_bucket: std::sync::RwLock::new(Arc::new(per_bucket)),
            max_versions: opts.max_versions,
            max_version_age: opts.max_version_age,
            indexing: opts.indexing,
            terms: OnceLock::new(),
            index_wake: tokio::sync::Notify::new(),
            index_dropped: Default::default(),
            index_batches: Default::default(),
            conflicts: Default::default(),
        }))
    }

    /// Names the database's directory in an out-of-space error.
    fn locate(&self, e: MetaError) -> MetaError {
        match e {
            MetaError::Full { .. } => MetaError::Full { path: self.dir.clone().unwrap_or_else(|| "memory".into()) },
            e => e,
        }
    }

    fn policy(&self) -> sql::Policy<'_> {
        sql::Policy {
            versioning: self.versioning,
            per_bucket: self.per_bucket.read().expect("per-bucket versioning").clone(),
            max_versions: self.max_versions,
            node: &self.node_id,
            clock: &self.clock,
            conflicts: &self.conflicts,
        }
    }

    /// This node's persistent id.
    /// The directory of `strata.db`; `None` in memory.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This node's clock, as peers learn it (their next writes order after
    /// everything this node has seen).
    pub fn clock(&self) -> u64 {
        self.clock.peek()
    }

    /// Moves this node's clock past a peer's.
    pub fn observe(&self, stamp: u64) {
        self.clock.observe(stamp)
    }

    /// A new version identity stamped by this node's clock.
    pub fn mint(&self, replicas: Vec<u64>) -> Identity {
        let stamp = self.clock.now();
        let now = clock::now_ms();
        Identity {
            version: format!("{stamp:016x}-{}", self.node_id),
            stamp,
            node: self.node_id.clone(),
            created_ms: now,
            modified_ms: now,
            replicas,
            parents: None,
        }
    }

    /// Versions after row `after`, in row order, with their placements:
    /// what placement and anti-entropy passes walk. Delete markers only
    /// with `markers`.
    pub async fn placed_after(&self, after: i64, limit: u32, markers: bool) -> Result<Vec<Placed>, MetaError> {
        sql::placed_after(&self.read, after, limit, markers).await
    }

    /// The anti-entropy digests of the versions held here that are placed
    /// on `peer`; none until every row has its mark (see
    /// [`Self::backfill_entropy`]).
    pub async fn entropy_digests(&self, peer: u64) -> Result<Option<Vec<entropy::PartDigest>>, MetaError> {
        if !entropy::ready(&self.read).await? {
            return Ok(None);
        }
        Ok(Some(entropy::digests(&self.read, peer).await?))
    }

    /// Versions of one anti-entropy partition after row `after`, in row
    /// order, delete markers included.
    pub async fn placed_in_partition(&self, part: u16, after: i64, limit: u32) -> Result<Vec<Placed>, MetaError> {
        entropy::placed_in(&self.read, part, after, limit).await
    }

    /// Marks rows written before anti-entropy digests were kept, `step` per
    /// transaction, until none is left; returns how many it marked.
    pub async fn backfill_entropy(&self, step: u32) -> Result<u64, MetaError> {
        let mut total = 0;
        loop {
            match entropy::backfill(&self.write, step).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Puts right version rows whose partition cannot be (see
    /// [`entropy::heal`]); returns how many it fixed.
    pub async fn heal_entropy(&self) -> Result<u64, MetaError> {
        entropy::heal(&self.write).await
    }

    /// Checks one partition's rows and digests and puts them right (see
    /// [`entropy::rebuild`]).
    pub async fn rebuild_entropy_partition(&self, part: u16) -> Result<entropy::Rebuilt, MetaError> {
        entropy::rebuild(&self.write, part).await
    }

    /// Versions whose blob is quarantined here (found by a read or scrub).
    pub async fn damaged(&self, limit: u32) -> Result<Vec<Placed>, MetaError> {
        sql::damaged(&self.read, limit).await
    }

    pub async fn set_replicas(&self, bucket: &str, key: &str, version: &str, replicas: &[u64]) -> Result<(), MetaError> {
        sql::set_replicas(&self.write, bucket, key, version, replicas).await
    }

    /// Whether copies of the version are still queued here.
    pub async fn queued(&self, bucket: &str, key: &str, version: &str) -> Result<bool, MetaError> {
        queue::queued(&self.write, bucket, key, version).await
    }

    /// The heads of a key (see [`lineage`]), newest first, at most `limit`:
    /// two or more are siblings to resolve.
    pub async fn heads(&self, bucket: &str, key: &str, limit: u32) -> Result<Vec<lineage::Head>, MetaError> {
        lineage::heads(&self.read, bucket, key, limit).await
    }

    /// For each key, what a write of it made now supersedes here: its
    /// newest version and its heads.
    pub async fn seen(&self, bucket: &str, keys: &[String]) -> Result<Vec<Vec<String>>, MetaError> {
        lineage::seen(&self.read, bucket, keys).await
    }

    /// Waits until recorded versions left keys with siblings, then takes
    /// those keys (each once, however many versions found it).
    pub async fn take_conflicts(&self) -> Vec<(String, String)> {
        self.conflicts.next().await
    }

    /// Keys with siblings here (two heads or more), at most `limit`.
    pub async fn conflicted(&self, limit: u32) -> Result<Vec<(String, String)>, MetaError> {
        lineage::conflicted(&self.read, limit).await
    }

    /// Siblings a resolution kept the newest of stop being heads here.
    pub async fn settle_heads(&self, bucket: &str, key: &str, versions: &[String]) -> Result<(), MetaError> {
        lineage::settle(&self.write, bucket, key, versions).await
    }

    /// The versions a version supersedes, as recorded with it.
    pub async fn parents(&self, bucket: &str, key: &str, version: &str) -> Result<Option<Vec<String>>, MetaError> {
        lineage::parents(&self.read, bucket, key, version).await
    }

    /// The nodes a version was placed on (empty on a single node).
    pub async fn replicas(&self, bucket: &str, key: &str, version: &str) -> Result<Vec<u64>, MetaError> {
        sql::replicas(&self.read, bucket, key, version).await
    }

    // ---- replication queue ----

    /// Owes a copy of the version to each of `nodes`.
    pub async fn enqueue(&self, bucket: &str, key: &str, version: &str, nodes: &[u64]) -> Result<(), MetaError> {
        queue::enqueue(&self.write, bucket, key, version, nodes).await
    }

    pub async fn queue_due(&self, limit: u32) -> Result<Vec<QueueEntry>, MetaError> {
        queue::due(&self.write, limit).await
    }

    pub async fn queue_done(&self, ids: &[i64]) -> Result<(), MetaError> {
        queue::done(&self.write, ids).await
    }

    /// Owes many copies at once: (bucket, key, version, node).
    pub async fn enqueue_many(&self, rows: &[(String, String, String, u64)]) -> Result<(), MetaError> {
        queue::enqueue_many(&self.write, rows).await
    }

    /// Records many versions' placements in one transaction.
    pub async fn set_replicas_many(&self, rows: &[(String, String, String, Vec<u64>)]) -> Result<(), MetaError> {
        sql::set_replicas_many(&self.write, rows).await
    }

    pub async fn queue_retry(&self, id: i64, delay_ms: i64, error: &str) -> Result<(), MetaError> {
        queue::retry(&self.write, id, delay_ms, error).await
    }

    pub async fn queue_stats(&self) -> Result<QueueStats, MetaError> {
        queue::stats(&self.read).await
    }

    pub async fn queue_next_due(&self) -> Result<Option<i64>, MetaError> {
        queue::next_due(&self.write).await
    }

    /// Creates the bucket unless it exists: a replica may arrive before
    /// the bucket was made on this node.
    pub async fn ensure_bucket(&self, name: &str) -> Result<(), MetaError> {
        match sql::create_bucket(&self.write, name).await {
            Ok(_) | Err(MetaError::BucketExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- buckets ----

    pub async fn create_bucket(&self, name: &str) -> Result<Bucket, MetaError> {
        sql::create_bucket(&self.write, name).await
    }

    pub async fn list_buckets(&self) -> Result<Vec<Bucket>, MetaError> {
        sql::list_buckets(&self.read).await
    }

    pub async fn bucket_exists(&self, name: &str) -> Result<bool, MetaError> {
        sql::bucket_exists(&self.read, name).await
    }

    /// Deletes a bucket that has no live objects, with whatever history
    /// (old versions, delete markers) remains in it.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), MetaError> {
        if name == "default" {
            return Err(MetaError::DefaultBucket { bucket: name.into() });
        }
        let r = sql::delete_bucket(&self.write, name).await;
        self.cache.clear();
        if r.is_ok() {
            // A bucket made again later starts from the server's default.
            let mut map = self.per_bucket.write().expect("per-bucket versioning");
            Arc::make_mut(&mut map).remove(name);
        }
        r
    }

    // ---- objects ----

    /// The live version of a key, or the given version.
    pub async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectRecord, MetaError> {
        let found = match version {
            Some(v) => sql::get_version(&self.read, bucket, key, v).await?,
            None => match self.cache.get(bucket, key) {
                Ok(hit) => hit,
                Err(ticket) => {
                    let rec = sql::get_latest(&self.read, bucket, key).await?;
                    self.cache.fill(ticket, bucket, key, rec.clone());
                    rec
                }
            },
        };
        match (found, version) {
            (Some(rec), _) => Ok(rec),
            (None, Some(v)) => Err(MetaError::NoSuchVersion { bucket: bucket.into(), key: key.into(), version: v.into() }),
            (None, None) => {
                if !self.bucket_exists(bucket).await? {
                    return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
                }
                Err(MetaError::NotFound { bucket: bucket.into(), key: key.into() })
            }
        }
    }

    /// Live objects in key order, after `after`, with keys starting `prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ObjectRecord>, MetaError> {
        if !self.bucket_exists(bucket).await? {
            return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
        }
        sql::list(&self.read, bucket, prefix, after, limit).await
    }

    /// Each key's newest version, delete markers included, in key order
    /// (see [`sql::newest_after`]); a bucket this node never heard of has
    /// none.
    pub async fn newest_after(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ObjectRecord>, MetaError> {
        sql::newest_after(&self.read, bucket, prefix, after, limit).await
    }

    /// A consistent view for one search (see [`View`]).
    pub async fn view(&self) -> Result<View, MetaError> {
        Ok(View::new(self.read.begin().await?))
    }

    /// Every version of a key, newest first.
    pub async fn list_versions(&self, bucket: &str, key: &str) -> Result<Vec<ObjectRecord>, MetaError> {
        let v = sql::list_versions(&self.read, bucket, key).await?;
        if v.is_empty() {
            if !self.bucket_exists(bucket).await? {
                return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
            }
            return Err(MetaError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        Ok(v)
    }

    /// Records puts whose blobs are durable, in one transaction. Each item
    /// gets its own result (a failed condition fails only its item).
    pub async fn commit_puts(&self, items: &[NewVersion]) -> Result<Vec<Result<ObjectRecord, MetaError>>, MetaError> {
        Ok(self.commit_batch(items).await?.results)
    }

    /// [`Self::commit_puts`], telling also which blob rows the batch wrote.
    pub async fn commit_batch(&self, items: &[NewVersion]) -> Result<batch::Committed, MetaError> {
        let eager = match self.indexing {
            IndexingMode::Eager => self.terms.get().map(|t| &**t),
            _ => None,
        };
        let mut committed = batch::commit_puts(&self.write, &self.policy(), items, eager).await.map_err(|e| self.locate(e))?;
        let out = &mut committed.results;
        for item in items {
            self.cache.invalidate(&item.bucket, &item.key);
        }
        // A retried put answers with the first put's version.
        for (r, item) in out.iter_mut().zip(items) {
            if let Err(MetaError::Replayed { version }) = r {
                let version = std::mem::take(version);
                *r = self.first_version(&item.bucket, &item.key, item.request_id.as_deref().unwrap_or_default(), version).await;
            }
        }
        Ok(committed)
    }

    /// Makes a copy of an old version the live one: a new version with the
    /// old one's content (by reference, no bytes copied) and attributes.
    pub async fn restore(&self, bucket: &str, key: &str, version: &str) -> Result<ObjectRecord, MetaError> {
        let old = self.get(bucket, key, Some(version)).await?;
        let Some(digest) = old.digest else {
            return Err(MetaError::ConditionFailed {
                key: key.into(),
                why: format!("version {version} is a delete marker; restore a version with content"),
            });
        };
        if sql::blob_is_corrupt(&self.write, &digest).await? {
            return Err(MetaError::CorruptVersion { key: key.into(), version: version.into() });
        }
        let item = NewVersion {
            bucket: bucket.into(),
            key: key.into(),
            digest,
            size: old.size,
            // The blob is on record, so its row is not written again.
            stored_size: 0,
            content_type: old.content_type,
            attributes: old.attributes,
            condition: Condition::Always,
            fresh_blob: false,
            inline: None,
            identity: None,
            request_id: None,
        };
        self.commit_puts(std::slice::from_ref(&item)).await?.pop().expect("one result per item")
    }

    /// Deletes the live object (leaving a marker when versioning), or one
    /// version for good.
    pub async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, MetaError> {
        // Invalidate even if this future is dropped mid-commit: the commit
        // may still land.
        let _guard = Invalidate { cache: &self.cache, bucket, key };
        sql::delete(&self.write, &self.policy(), bucket, key, version).await.map_err(|e| self.locate(e))
    }

    /// Shows a conditional writer's fencing token for a key: refused
    /// (`ConditionFailed`) if a higher one was shown here, else it becomes
    /// the key's token, and writes fenced by lower ones are refused.
    pub async fn fence(&self, bucket: &str, key: &str, token: u64) -> Result<(), MetaError> {
        let mut conn = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        batch::raise_fence(&mut tx, bucket, key, token).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The key's newest version, a delete marker included (what a replica
    /// says it holds of a key).
    pub async fn newest(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, MetaError> {
        sql::get_newest(&self.read, bucket, key).await
    }

    /// The key and version a put request made, if its id is on record.
    pub async fn request(&self, bucket: &str, request_id: &str) -> Result<Option<(String, String)>, MetaError> {
        sql::request(&self.read, bucket, request_id).await
    }

    /// The version a put to `key` with this request id made, if the id is
    /// on record: a retry's answer. The id used for another key is refused.
    pub async fn replay(&self, bucket: &str, key: &str, request_id: &str) -> Result<Option<ObjectRecord>, MetaError> {
        let Some((first_key, version)) = self.request(bucket, request_id).await? else { return Ok(None) };
        if first_key != key {
            return Err(MetaError::RequestReused { request_id: request_id.into(), key: first_key });
        }
        self.first_version(bucket, key, request_id, version).await.map(Some)
    }

    /// The record of the version a request made, or why it is gone.
    async fn first_version(&self, bucket: &str, key: &str, request_id: &str, version: String) -> Result<ObjectRecord, MetaError> {
        match self.get(bucket, key, Some(&version)).await {
            Err(MetaError::NoSuchVersion { .. } | MetaError::NotFound { .. }) => {
                Err(MetaError::RequestGone { request_id: request_id.into(), key: key.into(), version })
            }
            other => other,
        }
    }

    /// Whether old versions are kept by default.
    pub fn versioning(&self) -> bool {
        self.versioning
    }

    /// Whether `bucket` keeps old versions.
    pub fn versioning_of(&self, bucket: &str) -> bool {
        match self.per_bucket.read().expect("per-bucket versioning").get(bucket) {
            Some(sql::BucketVersioning::Enabled) => true,
            Some(sql::BucketVersioning::SuspendedSince(_)) => false,
            None => self.versioning,
        }
    }

    /// Makes `bucket` keep old versions, or suspends that (versions kept
    /// so far stay), whatever the server's default.
    pub async fn set_versioning(&self, bucket: &str, on: bool) -> Result<(), MetaError> {
        let setting = if on { sql::BucketVersioning::Enabled } else { sql::BucketVersioning::SuspendedSince(self.clock.now()) };
        let column = match setting {
            sql::BucketVersioning::Enabled => -1,
            sql::BucketVersioning::SuspendedSince(s) => s as i64,
        };
        let done = sqlx::query("UPDATE buckets SET versioning = ? WHERE name = ?").bind(column).bind(bucket).execute(&self.write).await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
        }
        let mut map = self.per_bucket.write().expect("per-bucket versioning");
        Arc::make_mut(&mut map).insert(bucket.into(), setting);
        Ok(())
    }

    /// Records a delete marker minted by another node (or before it was
    /// sent there); it hides the live version only if it is the newest.
    pub async fn record_marker(&self, bucket: &str, key: &str, id: &Identity) -> Result<(), MetaError> {
        let _guard = Invalidate { cache: &self.cache, bucket, key };
        sql::record_marker(&self.write, &self.policy(), bucket, key, id).await.map_err(|e| self.locate(e))
    }

    // ---- blobs ----

    /// Which of these digests have a sound blob on record.
    pub async fn known_blobs(&self, digests: &[Digest]) -> Result<HashSet<Digest>, MetaError> {
        sql::known_blobs(&self.write, digests).await
    }

    /// Which of these digests have any row at all (sound or not).
    pub async fn blob_rows(&self, digests: &[Digest]) -> Result<HashSet<Digest>, MetaError> {
        sql::blob_rows(&self.read, digests).await
    }

    /// Blobs no version has pointed to since before `before_ms`.
    pub async fn unreferenced_blobs(&self, before_ms: i64, limit: u32) -> Result<Vec<Digest>, MetaError> {
        sql::unreferenced_blobs(&self.read, before_ms, limit).await
    }

    /// Forgets the blobs among `digests` that are still unreferenced;
    /// returns each with the bytes its file took.
    pub async fn drop_blobs(&self, digests: &[Digest]) -> Result<Vec<(Digest, u64, String)>, MetaError> {
        sql::drop_blobs(&self.write, digests).await
    }

    /// The stored bytes of an inline (small) blob.
    pub async fn inline_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, MetaError> {
        sql::inline_blob(&self.read, digest).await
    }

    /// Whether the blob is on record as corrupt (quarantined).
    pub async fn blob_is_corrupt(&self, digest: &Digest) -> Result<bool, MetaError> {
        sql::blob_is_corrupt(&self.write, digest).await
    }

    pub async fn mark_corrupt(&self, digest: &Digest) -> Result<(), MetaError> {
        sql::set_blob_state(&self.write, digest, "corrupt").await
    }

    pub async fn mark_verified(&self, digest: &Digest) -> Result<(), MetaError> {
        sql::mark_verified(&self.write, digest).await
    }

    /// Sound local blobs (digest, plaintext size) in digest order after
    /// `after`, for the scrubber (cold blobs are checked when read).
    pub async fn blobs_after(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>, MetaError> {
        sql::blobs_after(&self.read, after, limit).await
    }

    pub async fn stats(&self) -> Result<MetaStats, MetaError> {
        let mut s = sql::stats(&self.read).await?;
        s.cache = self.cache.stats();
        Ok(s)
    }

    /// Removes versions past `max_version_age`, sweeps index terms left by
    /// gone versions and dropped indexes, checkpoints the WAL and refreshes
    /// the planner's statistics.
    pub async fn compact(&self) -> Result<(), MetaError> {
        if !self.max_version_age.is_zero() {
            let cutoff = clock::now_ms() - self.max_version_age.as_millis() as i64;
            let expired = sql::expire_versions(&self.write, cutoff).await?;
            if expired > 0 {
                tracing::info!(expired, "versions past max_version_age removed");
            }
        }
        let forgotten = sql::expire_requests(&self.write, clock::now_ms() - REQUEST_ID_TTL.as_millis() as i64).await?;
        if forgotten > 0 {
            tracing::debug!(forgotten, "request ids past a day removed");
        }
        let swept = index::sweep(&self.write).await?;
        if swept > 0 {
            tracing::debug!(swept, "stale index terms removed");
        }
        sql::compact(&self.write).await
    }

    // ---- search indexes ----

    pub fn indexing(&self) -> IndexingMode {
        self.indexing
    }

    /// Lets indexes compute terms; until this is called they wait.
    pub fn set_term_maker(&self, maker: Arc<dyn TermMaker>) {
        if self.terms.set(maker).is_ok() {
            self.index_wake.notify_one();
        }
    }

    /// Defines an index; it backfills in the background and serves searches
    /// once done.
    pub async fn create_index(&self, bucket: &str, name: &str, fields: &[String], kind: &str) -> Result<IndexDef, MetaError> {
        let def = index::create(&self.write, bucket, name, fields, kind, clock::now_ms()).await?;
        self.index_wake.notify_one();
        Ok(def)
    }

    pub async fn list_indexes(&self) -> Result<Vec<IndexDef>, MetaError> {
        index::list(&self.read).await
    }

    /// Drops an index at once; its terms are swept in the background.
    pub async fn drop_index(&self, bucket: &str, name: &str) -> Result<(), MetaError> {
        index::drop(&self.write, bucket, name).await?;
        self.index_dropped.store(true, std::sync::atomic::Ordering::Relaxed);
        self.index_wake.notify_one();
        Ok(())
    }

    /// The newest version id: how far indexes have to go.
    pub async fn head(&self) -> Result<i64, MetaError> {
        index::head(&self.read).await
    }

    /// Resolves when the index worker has something to do.
    pub async fn index_work(&self) {
        self.index_wake.notified().await
    }

    /// Brings every index up to the newest version, `batch` versions per
    /// transaction so writes interleave. Returns the versions read.
    pub async fn catch_up_indexes(&self, batch: u32) -> Result<u64, MetaError> {
        let Some(maker) = self.terms.get() else { return Ok(0) };
        let mut read = 0;
        let head = index::head(&self.read).await?;
        // An index already at the newest version needs no write transaction.
        for d in index::list(&self.write).await?.into_iter().filter(|d| d.watermark < head) {
            let remembered = self.index_batches.lock().unwrap_or_else(|p| p.into_inner()).get(&d.id).copied();
            let mut size = remembered.unwrap_or(batch).clamp(1, batch);
            loop {
                let mut conn = self.write.acquire().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let Some(now) = index::get_on(&mut tx, d.id).await? else { break };
                let step = index::catch_up(&mut tx, &**maker, &now, size).await?;
                tx.commit().await?;
                read += step.read;
                if step.failed {
                    // A batch the plugin could not finish (its deadline, its
                    // memory) may pass in halves; an object that fails alone
                    // keeps the index behind (and says why) until it changes.
                    self.index_batches.lock().unwrap_or_else(|p| p.into_inner()).insert(d.id, (size / 2).max(1));
                    if size == 1 {
                        break;
                    }
                    size /= 2;
                    continue;
                }
                if size < batch {
                    // Through: the batch grows back.
                    size = (size * 2).min(batch);
                    self.index_batches.lock().unwrap_or_else(|p| p.into_inner()).insert(d.id, size);
                }
                if step.current {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(read)
    }

    /// Whether an index was dropped since the last call.
    pub fn take_dropped(&self) -> bool {
        self.index_dropped.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes terms of gone versions and dropped indexes.
    pub async fn sweep_index_terms(&self) -> Result<u64, MetaError> {
        index::sweep(&self.write).await
    }

    /// Closes the store, folding the WAL into the database file first so a
    /// clean shutdown leaves one self-contained `strata.db`. (SQLite does this
    /// when the last connection closes, but only if that connection may
    /// write: so the readers go first.)
    pub async fn close(&self) {
        self.read.close().await;
        if self.dir.is_some()
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.write).await
        {
            tracing::warn!(error = %e, "checkpointing the metadata WAL at shutdown failed; it is replayed at the next start");
        }
        self.write.close().await;
    }
}

/// Drops a key from the cache when it goes out of scope, however the
/// write around it ended.
struct Invalidate<'a> {
    cache: &'a MetaCache,
    bucket: &'a str,
    key: &'a str,
}

impl Drop for Invalidate<'_> {
    fn drop(&mut self) {
        self.cache.invalidate(self.bucket, self.key);
    }
}

/// Page cache of the write connection, in KiB (negative: SQLite's unit).
const WRITE_CACHE_KIB: &str = "-131072";
/// Page cache of each of the four read connections, in KiB.
const READ_CACHE_KIB: &str = "-32768";
/// Reads of the first 4 GiB of the file go through a shared memory map
/// instead of a system call per page missing from a connection's cache.
const MMAP_BYTES: &str = "4294967296";
/// Rows a query may have produced ahead of its reader (a page of a
/// listing or a search, a batch's live versions fit).
const ROW_CHANNEL: usize = 4096;

/// `PRAGMA quick_check`: the b-trees are well formed and every page is
/// accounted for (not that indexes match their tables, which needs a full
/// `integrity_check`, far slower).
async fn check_integrity(pool: &SqlitePool, dir: &Path) -> Result<(), MetaError> {
    let started = std::time::Instant::now();
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(20)").fetch_all(pool).await.map_err(|e| damaged_or(e, dir))?;
    tracing::info!(ms = started.elapsed().as_millis() as u64, "metadata quick_check done");
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(MetaError::Damaged { path: dir.join("strata.db"), problems: rows.join("; ") })
}

/// SQLITE_CORRUPT and SQLITE_NOTADB say the file is damaged; anything else
/// is another failure.
fn damaged_or(e: sqlx::Error, dir: &Path) -> MetaError {
    if matches!(sqlite_code(&e), Some(SQLITE_CORRUPT | SQLITE_NOTADB))
        && let sqlx::Error::Database(d) = &e
    {
        return MetaError::Damaged { path: dir.join("strata.db"), problems: d.message().to_string() };
    }
    e.into()
}

/// Keeps the write connection only if no transaction outlived its use.
///
/// When a statement or COMMIT fails (a full disk), SQLite may already have
/// rolled the transaction back, so sqlx's ROLLBACK fails and sqlx still
/// counts a transaction open: every later `begin` would then be a
/// SAVEPOINT inside it, acknowledged yet never committed. Closing the
/// connection (which rolls back whatever is open) and letting the pool open
/// a fresh one makes the next write start clean.
async fn release_clean(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    // A round trip: the rollback queued by a dropped transaction runs first.
    drop(conn.lock_handle().await?);
    if conn.is_in_transaction() {
        tracing::warn!("a metadata transaction outlived its write (after an error); reopening the connection");
        return Ok(false);
    }
    Ok(true)
}

/// A pool of exactly one connection that lives as long as the pool: for
/// an in-memory database, or a store that serializes its writes anyway.
pub async fn single_connection(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(|conn, _| Box::pin(stable_plans(conn)))
        .connect_with(options)
        .await
}

/// Turns on SQLite's query planner stability guarantee: plans never depend
/// on bound values. Without it a statement whose `LIMIT ?` (or bound range)
/// the planner looked at is marked stale whenever that parameter is bound
/// again, so every page of a listing or a search parsed and planned its SQL
/// anew: 7 % of the server's time listing pages of 1,000 keys. No plan here
/// needs the values (the database keeps no `sqlite_stat4` samples).
async fn stable_plans(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    use libsqlite3_sys::{SQLITE_DBCONFIG_ENABLE_QPSG, SQLITE_OK, sqlite3_db_config};
    use std::ffi::c_int;
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the open connection the lock holds for this call;
    // the option takes an int and an optional out-pointer, here null.
    let rc = unsafe { sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_QPSG, 1 as c_int, std::ptr::null_mut::<c_int>()) };
    if rc != SQLITE_OK {
        return Err(sqlx::Error::Configuration(format!("SQLite refused the planner stability setting (code {rc})").into()));
    }
    Ok(())
}

async fn open_file(dir: &Path, sync_writes: bool) -> Result<(SqlitePool, SqlitePool), MetaError> {
    std::fs::create_dir_all(dir).map_err(|e| MetaError::Db(Box::new(e)))?;
    let options = SqliteConnectOptions::new()
        .filename(dir.join("strata.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if sync_writes { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        // Rows cross from SQLite's thread in a bounded channel: at sqlx's 50
        // a page of 1,000 keys made the two threads wake each other for
        // nearly every row once the channel was full.
        .row_buffer_size(ROW_CHANNEL);
    // Page caches sized for index lookups at millions of objects: a term
    // insert or a candidate read touches pages all over the file, and
    // SQLite's default (2 MB) makes each a system call.
    // No ping before each acquire (here and for reads): a SQLite connection
    // is a file, not a socket that drops, and a ping is one more hop to its
    // thread per query.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .after_release(|conn, _| Box::pin(release_clean(conn)))
        .after_connect(|conn, _| Box::pin(stable_plans(conn)))
        .connect_with(options.clone().pragma("cache_size", WRITE_CACHE_KIB).pragma("mmap_size", MMAP_BYTES))
        .await
        .map_err(|e| damaged_or(e, dir))?;
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(stable_plans(conn)))
        .connect_with(options.read_only(true).pragma("cache_size", READ_CACHE_KIB).pragma("mmap_size", MMAP_BYTES))
        .await?;
    Ok((write, read))
}
