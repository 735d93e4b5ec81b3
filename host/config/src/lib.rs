//! The one configuration tree: defaults, then a TOML file, then `STRATA_`
//! environment variables (`STRATA_STORAGE__MAX_SIZE=10GiB`).
//!
//! Every field here is used by the server; an option that did nothing would
//! be a lie, so there are none. `strata.example.toml` documents each one and
//! a test loads it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The embedded default configuration, also shipped (commented) as
/// `strata.example.toml`.
pub const EXAMPLE_TOML: &str = include_str!("../../../strata.example.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub metadata: MetadataConfig,
    pub wasm: WasmConfig,
    /// Plugins beyond the built-ins: `[[plugins]]` tables.
    pub plugins: Vec<PluginDecl>,
    /// Absent: a single-node server.
    pub cluster: Option<ClusterConfig>,
    /// Used by cluster nodes only.
    pub replication: ReplicationConfig,
    pub backup: BackupConfig,
    /// Object-store tiers cold blobs can move to: `[[tiers]]` tables.
    pub tiers: Vec<TierConfig>,
    /// Which buckets' blobs move to a tier, and when: `[[tier_policies]]`.
    pub tier_policies: Vec<TierPolicyConfig>,
    pub tiering: TieringConfig,
    /// The OCI distribution endpoint; off unless `listen` is set.
    pub registry: RegistryConfig,
    /// Prometheus metrics and health endpoints; off unless `listen` is set.
    pub metrics: MetricsConfig,
    /// Tokens for the gRPC API; absent: off (every call allowed).
    pub auth: Option<AuthConfig>,
    /// TLS on every listener, and mTLS between nodes; absent: plaintext.
    pub tls: Option<TlsConfig>,
    /// The S3 gateway; off unless `listen` is set.
    pub s3: S3Config,
}

/// `[s3]`: the S3 protocol on a listener of its own, over the same
/// buckets and objects as the gRPC API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Where it listens; unset: no gateway.
    pub listen: Option<SocketAddr>,
    /// The region clients sign for and `GetBucketLocation` answers.
    pub region: String,
    /// Access keys (made by `strata s3 key create`); default
    /// `<base_path>/s3-keys.json`. Read again when it changes.
    pub keys_file: Option<PathBuf>,
    /// What a request without a signature may do: none (the default) or read.
    pub anonymous: AnonymousApi,
}

impl Default for S3Config {
    fn default() -> Self {
        Self { listen: None, region: "us-east-1".into(), keys_file: None, anonymous: AnonymousApi::None }
    }
}

/// `[tls]`: every listener (the gRPC API and peer service, metrics, the
/// registry) serves TLS with this certificate. Nodes dial each other with
/// it as their client certificate, and a peer call is refused unless its
/// connection showed a certificate from `ca_file`. The files are read
/// again on SIGHUP or `strata reload`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The cluster CA (PEM): peers' certificates must chain to it, and
    /// this node trusts it when dialing peers. Required with `[cluster]`.
    pub ca_file: Option<PathBuf>,
}

/// `[auth]`: scoped tokens (JWT, HS256) for the gRPC API. With a secret
/// set, every call needs a token whose scopes allow it, unless `anonymous`
/// allows it without one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The key that signs tokens (at least 32 bytes), from a file or the
    /// environment (exactly one); never logged.
    pub token_secret_file: Option<PathBuf>,
    pub token_secret_env: Option<String>,
    /// What a call without a token may do: none (the default) or read.
    pub anonymous: AnonymousApi,
    /// Token ids refused, one per line; read again when the file changes.
    pub revoked_file: Option<PathBuf>,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        self.token_secret_file.is_some() || self.token_secret_env.is_some()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousApi {
    #[default]
    None,
    Read,
}

/// `[metrics]`: `/metrics` (Prometheus text format), `/healthz` and
/// `/readyz` on an HTTP listener of their own, and the health checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where the endpoints listen; unset: no listener (the checks still
    /// run, for gRPC health and `strata health`).
    pub listen: Option<SocketAddr>,
    /// How often the health checks run.
    #[serde(with = "duration")]
    pub check_interval: Duration,
    /// The replication check fails when the oldest copy this node owes
    /// others has waited longer.
    #[serde(with = "duration")]
    pub max_replication_lag: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: None, check_interval: Duration::from_secs(10), max_replication_lag: Duration::from_secs(300) }
    }
}

/// `[[tiers]]`: a named object store for cold blobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Lowercase letters, digits and `-`; `local` is the local disk.
    pub name: String,
    pub target: TargetSpec,
}

/// `[[tier_policies]]`: move a bucket's blobs to a tier once every limit
/// that is set holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierPolicyConfig {
    pub bucket: String,
    pub tier: String,
    /// The version is at least this old.
    #[serde(default, with = "opt_duration")]
    pub after: Option<Duration>,
    /// The blob has not been read for this long.
    #[serde(default, with = "opt_duration")]
    pub idle: Option<Duration>,
    /// The blob holds at least this many bytes.
    #[serde(default)]
    pub min_size: Size,
}

/// `[tiering]`: the mover and the cache of cold blobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TieringConfig {
    /// How often the policies are applied.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Bytes a second the mover copies at most (0: as fast as it can).
    pub rate: Size,
    /// Local copies of cold blobs read back, kept up to this many bytes.
    pub cache_size: Size,
}

impl Default for TieringConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(60), rate: Size(0), cache_size: Size(1 << 30) }
    }
}

/// How to reach an object store (`s3://bucket/prefix`, `gs://`, `az://`,
/// `file:///dir`, `memory://`).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub url: String,
    /// Provider options by their `object_store` names (`endpoint`,
    /// `region`, `allow_http`, `access_key_id`, ...). Never logged.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// A TOML file of more options (`key = "value"` lines), read at open:
    /// keeps secrets out of this file.
    #[serde(default)]
    pub options_file: Option<PathBuf>,
    /// Transfers in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Objects larger than this go up in parts of this size.
    #[serde(default = "default_part_size")]
    pub part_size: Size,
}

fn default_concurrency() -> usize {
    8
}

fn default_part_size() -> Size {
    Size(8 << 20)
}

impl TargetSpec {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), concurrency: default_concurrency(), part_size: default_part_size(), ..Self::default() }
    }
}

/// Options may hold secrets: only their names are shown.
impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSpec")
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("options_file", &self.options_file)
            .field("concurrency", &self.concurrency)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// What a client without credentials may do at the registry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// Nothing: every request needs a user.
    #[default]
    None,
    /// Read manifests, blobs and tags.
    Pull,
    /// Read and write everything.
    Push,
}

/// `[registry]`: the OCI distribution endpoint (container images,
/// artifacts, models), on a listener of its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Where it listens; unset: no registry.
    pub listen: Option<SocketAddr>,
    /// The bucket repositories live in.
    pub bucket: String,
    pub anonymous: Anonymous,
    /// Larger manifests are refused.
    pub max_manifest_size: Size,
    /// Users who authenticate with HTTP Basic auth: `[[registry.users]]`.
    pub users: Vec<RegistryUser>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { listen: None, bucket: "oci".into(), anonymous: Anonymous::None, max_manifest_size: Size(4 << 20), users: Vec::new() }
    }
}

/// A registry user: a password from a file or the environment (exactly
/// one), the repositories it may use and whether it may push there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryUser {
    pub name: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Repository names, or prefixes ending in `/*`; `*` is every one.
    #[serde(default = "every_repository")]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub push: bool,
}

fn every_repository() -> Vec<String> {
    vec!["*".into()]
}

/// `[backup]`: where `strata backup` writes by default, and a schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The default target of `strata backup` commands and the schedule.
    pub target: Option<TargetSpec>,
    /// Back up this often (needs `target`); unset: only on demand.
    #[serde(default, with = "opt_duration")]
    pub every: Option<Duration>,
    /// After each scheduled backup, keep the newest N ...
    pub keep_last: usize,
    /// ... and the newest of each of the last N days ...
    pub keep_daily: usize,
    /// ... and of each of the last N weeks; the rest is pruned. All zero:
    /// nothing is pruned.
    pub keep_weekly: usize,
}

/// Whether a read must see the newest acknowledged version.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// Reads ask every reachable node and serve the newest version.
    #[default]
    Strong,
    /// Reads take the nearest copy.
    Eventual,
}

/// `[replication]`: defaults for buckets without a policy of their own in
/// the cluster state, and the pace of copying.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Replication-strategy plugin.
    pub default_strategy: String,
    /// Node-selector plugin.
    pub default_selector: String,
    /// Copies of each object.
    pub replication_factor: u32,
    /// Fewer healthy targets than this refuses a write.
    pub min_replicas: u32,
    /// The most copies a bucket policy may ask for.
    pub max_replicas: u32,
    pub consistency_level: ConsistencyLevel,
    /// A replica that takes no data for this long, or does not confirm a
    /// write this long after its last byte, has failed.
    #[serde(with = "duration")]
    pub sync_timeout: Duration,
    /// Queued copies in flight at once.
    pub max_concurrent_syncs: usize,
    /// Times a failed queued copy's delay doubles.
    pub retry_attempts: u32,
    /// Delay before a failed queued copy is tried again.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// When false, a plan's asynchronous targets are written synchronously.
    pub enable_async_replication: bool,
    /// How often each node checks the versions it leads against their
    /// policy (after membership or health changes).
    #[serde(with = "duration")]
    pub health_check_interval: Duration,
    /// A node down this long is replaced: its versions are copied to new
    /// targets. Shorter outages are waited out (the owed copies are queued).
    #[serde(with = "duration")]
    pub repair_delay: Duration,
    /// How often each node compares what it holds with each peer and
    /// queues the copies a peer is missing.
    #[serde(with = "duration")]
    pub anti_entropy_interval: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            default_strategy: "quorum".into(),
            default_selector: "rendezvous".into(),
            replication_factor: 3,
            min_replicas: 1,
            max_replicas: 16,
            consistency_level: ConsistencyLevel::Strong,
            sync_timeout: Duration::from_secs(10),
            max_concurrent_syncs: 8,
            retry_attempts: 8,
            retry_delay: Duration::from_secs(1),
            enable_async_replication: true,
            health_check_interval: Duration::from_secs(30),
            repair_delay: Duration::from_secs(600),
            anti_entropy_interval: Duration::from_secs(600),
        }
    }
}

/// `[cluster]`: this node's place in a cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Raft node id; generated and kept in `<base_path>/cluster` when absent.
    pub node_id: Option<u64>,
    /// Address peers and clients reach this node at; defaults to `server.listen`.
    pub advertise: Option<String>,
    pub region: String,
    pub zone: String,
    /// Bytes offered for data; defaults to the data disk's size.
    pub capacity: Option<Size>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Nodes to join through at start (`host:port`).
    pub seeds: Vec<String>,
    /// File holding the shared cluster secret.
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the shared cluster secret.
    pub secret_env: Option<String>,
    /// How often nodes send heartbeats.
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// A node silent this long is suspect.
    #[serde(with = "duration")]
    pub suspect_after: Duration,
    /// A node silent this long is down.
    #[serde(with = "duration")]
    pub down_after: Duration,
    /// Raft log entries between snapshots; older entries are then purged.
    pub snapshot_every: u64,
    /// Source address of outgoing node-to-node connections (multi-homed
    /// hosts); the system picks one when absent.
    pub source_address: Option<std::net::IpAddr>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            advertise: None,
            region: "default".into(),
            zone: "default".into(),
            capacity: None,
            labels: Default::default(),
            seeds: Vec::new(),
            secret_file: None,
            secret_env: None,
            heartbeat_interval: Duration::from_millis(250),
            suspect_after: Duration::from_secs(2),
            down_after: Duration::from_secs(6),
            snapshot_every: 5000,
            source_address: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the gRPC listener. Loopback unless you mean otherwise.
    pub listen: SocketAddr,
    /// Largest single gRPC message accepted or sent (a chunk, a batch).
    pub max_message_size: Size,
    /// Most items in one PutMany or DeleteMany call.
    pub max_batch_items: usize,
    /// Longest key, in bytes.
    pub max_key_length: usize,
    /// How long a graceful shutdown waits for calls in flight.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Most bytes of one object's attributes (names and JSON values).
    pub max_attribute_bytes: Size,
    /// Upload bytes held in memory across all puts; past it, puts wait.
    pub upload_buffer: Size,
    /// A put or push whose next chunk takes longer than this fails and
    /// stores nothing.
    #[serde(with = "duration")]
    pub stream_idle_timeout: Duration,
    /// Most client and peer connections open at once; past it new ones
    /// wait to be accepted. Each may hold 8 MiB of unread request bytes.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            max_message_size: Size(16 << 20),
            max_batch_items: 10_000,
            max_key_length: 1024,
            shutdown_grace: Duration::from_secs(10),
            max_attribute_bytes: Size(8 << 10),
            upload_buffer: Size(256 << 20),
            stream_idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// File holding the 32-byte key as 64 hex characters.
    pub key_file: Option<PathBuf>,
    /// Name of an environment variable holding the key as 64 hex characters.
    pub key_env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where blobs (and, by default, metadata) live.
    pub base_path: PathBuf,
    /// Quota on the bytes blob files take on disk; 0 means none.
    pub max_size: Size,
    pub compression: Compression,
    /// zstd level, 1 (fast) to 19 (small).
    pub compression_level: i32,
    /// Authenticated encryption at rest (XChaCha20-Poly1305); off when absent.
    pub encryption: Option<EncryptionConfig>,
    /// Memory for an LRU cache of small verified blobs served from RAM; 0 turns it off.
    pub max_cache_size: Size,
    /// Unreferenced blobs and stray temp files older than this are removed by GC.
    #[serde(with = "duration")]
    pub cleanup_age: Duration,
    /// How often GC runs; 0s turns it off.
    #[serde(with = "duration")]
    pub gc_interval: Duration,
    /// How often every blob is re-read and verified; 0s turns it off.
    #[serde(with = "duration")]
    pub scrub_interval: Duration,
    /// fsync blobs and metadata before acknowledging a write.
    pub sync_writes: bool,
    /// Free space writes leave on the data and metadata disks, so deletes
    /// and GC can still commit when the disk is otherwise full.
    pub min_free_space: Size,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            base_path: PathBuf::from("./strata-data"),
            max_size: Size(0),
            compression: Compression::None,
            compression_level: 3,
            encryption: None,
            max_cache_size: Size(64 << 20),
            cleanup_age: Duration::from_secs(168 * 3600),
            gc_interval: Duration::from_secs(3600),
            scrub_interval: Duration::from_secs(24 * 3600),
            sync_writes: true,
            min_free_space: Size(256 << 20),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetaBackend {
    /// A SQLite file under `data_dir`.
    Sqlite,
    /// In-memory SQLite: metadata is lost at exit. For tests and scratch use.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    pub backend: MetaBackend,
    /// Directory of the SQLite file; defaults to `<base_path>/meta`.
    pub data_dir: Option<PathBuf>,
    /// Entries in the LRU cache of object metadata; 0 turns it off.
    pub cache_size: usize,
    /// Keep every version of a key; a delete leaves a marker.
    pub enable_versioning: bool,
    /// Most versions kept per key (oldest go first); 0 keeps all.
    pub max_versions: u32,
    /// Versions other than the live one older than this are removed (checked
    /// every `compact_interval`); 0s keeps them.
    #[serde(with = "duration")]
    pub max_version_age: Duration,
    /// How often index terms of gone versions are swept and the database
    /// is checkpointed and optimised; 0s turns it off.
    #[serde(with = "duration")]
    pub compact_interval: Duration,
    /// How search indexes keep up with writes.
    pub indexing_mode: IndexingMode,
    /// How often the index worker catches indexes up (lazy mode, backfills,
    /// and retries after a plugin failure).
    #[serde(with = "duration")]
    pub sync_interval: Duration,
    /// Serve the Search call.
    pub enable_search: bool,
    /// Run `PRAGMA quick_check` at start and refuse to serve a damaged
    /// database.
    pub check_at_start: bool,
}

/// When index terms are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IndexingMode {
    /// In the write's own transaction: searches see a write at once.
    Eager,
    /// By a background worker every `sync_interval`: writes pay nothing, and
    /// searches scan what the indexes have not reached yet.
    Lazy,
    /// Indexes are neither kept nor used; searches scan.
    Disabled,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            backend: MetaBackend::Sqlite,
            data_dir: None,
            cache_size: 10_000,
            enable_versioning: true,
            max_versions: 0,
            max_version_age: Duration::ZERO,
            compact_interval: Duration::from_secs(3600),
            indexing_mode: IndexingMode::Eager,
            sync_interval: Duration::from_secs(1),
            enable_search: true,
            check_at_start: true,
        }
    }
}

/// The plugin runtime: limits every plugin call runs under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WasmConfig {
    /// Compiled components are kept here so a restart does not recompile;
    /// defaults to `<base_path>/plugin-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Longest one plugin call (or an instance's start-up) may run before the
    /// host stops it.
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// Most linear memory one plugin instance may grow to.
    pub memory_limit: Size,
    /// Most instances of one plugin alive at once: calls run concurrently up
    /// to this, then wait for a free instance.
    pub max_instances: usize,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self { cache_dir: None, call_timeout: Duration::from_millis(100), memory_limit: Size(64 << 20), max_instances: 8 }
    }
}

/// `[[plugins]] kind`: which WIT world the component implements (the
/// plugin host's own type is `strata_plugin::Kind`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    NodeSelector,
    ReplicationStrategy,
    IndexType,
}

/// One `[[plugins]]` table: a component from a file, or a built-in under
/// another name with its own config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginDecl {
    /// The name buckets and indexes refer to it by.
    pub name: String,
    pub kind: PluginKind,
    /// A built-in plugin (`strata plugin ls` names them).
    pub builtin: Option<String>,
    /// A component file (`.wasm`).
    pub path: Option<PathBuf>,
    /// Handed to the plugin's `init`, flattened to dotted keys.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Overrides `wasm.call_timeout` for this plugin.
    #[serde(default, with = "opt_duration")]
    pub call_timeout: Option<Duration>,
    /// Overrides `wasm.memory_limit` for this plugin.
    pub memory_limit: Option<Size>,
}

impl Config {
    /// Defaults, then `file` if given, then `STRATA_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only `STRATA_SECTION__KEY` names are config; `STRATA_ENCRYPTION_KEY` and
        // the like are left for `key_env` to name.
        figment = figment.merge(Env::prefixed("STRATA_").filter(|k| k.as_str().contains("__")).split("__"));
        let config: Config = figment.extract().map_err(|e| ConfigError::Invalid(one_line(&e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        if !(1..=19).contains(&self.storage.compression_level) {
            return bad("storage.compression_level", "must be between 1 and 19");
        }
        if self.server.max_message_size.0 < 64 << 10 {
            return bad("server.max_message_size", "must be at least 64KiB");
        }
        if self.server.max_key_length == 0 || self.server.max_key_length > 4096 {
            return bad("server.max_key_length", "must be between 1 and 4096");
        }
        if self.server.max_batch_items == 0 {
            return bad("server.max_batch_items", "must be at least 1");
        }
        if self.server.max_attribute_bytes.0 == 0 || self.server.max_attribute_bytes.0 > self.server.max_message_size.0 / 4 {
            return bad("server.max_attribute_bytes", "must be between 1 byte and a quarter of server.max_message_size");
        }
        if self.server.upload_buffer.0 < 1 << 20 {
            return bad("server.upload_buffer", "must be at least 1MiB");
        }
        if self.storage.min_free_space.0 < 4 << 20 {
            // Deletes and GC append to SQLite's WAL, which grows by up to
            // 4 MiB between checkpoints; a smaller reserve can wedge a full disk.
            return bad("storage.min_free_space", "must be at least 4MiB (deletes and GC need room in SQLite's WAL on a full disk)");
        }
        if self.server.max_connections == 0 {
            return bad("server.max_connections", "must be at least 1");
        }
        if self.server.stream_idle_timeout.is_zero() {
            return bad("server.stream_idle_timeout", "must be more than 0s");
        }
        if self.metadata.sync_interval.is_zero() {
            return bad("metadata.sync_interval", "must be more than 0s");
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.tiers {
            let ok = !t.name.is_empty() && t.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok || t.name == "local" {
                return bad("tiers.name", &format!("{:?}: use lowercase letters, digits and '-' (and not \"local\")", t.name));
            }
            if !names.insert(t.name.as_str()) {
                return bad("tiers.name", &format!("{:?} is used twice", t.name));
            }
        }
        // Tiers and the backup target each own their prefix: GC and prune
        // remove what their own records do not name.
        let mut urls: Vec<(String, String)> = self.tiers.iter().map(|t| (format!("tier {:?}", t.name), t.target.url.clone())).collect();
        urls.extend(self.backup.target.iter().map(|t| ("backup.target".to_string(), t.url.clone())));
        for (i, (a, ua)) in urls.iter().enumerate() {
            for (b, ub) in &urls[i + 1..] {
                let (x, y) = (format!("{}/", ua.trim_end_matches('/')), format!("{}/", ub.trim_end_matches('/')));
                if x.starts_with(&y) || y.starts_with(&x) {
                    return bad("tiers", &format!("{a} ({ua}) and {b} ({ub}) overlap: give each a prefix of its own"));
                }
            }
        }
        let mut buckets = std::collections::HashSet::new();
        for p in &self.tier_policies {
            if !names.contains(p.tier.as_str()) {
                return bad("tier_policies.tier", &format!("{:?} is not a [[tiers]] name", p.tier));
            }
            if p.after.is_none() && p.idle.is_none() && p.min_size.0 == 0 {
                return bad("tier_policies", &format!("the policy of bucket {:?} needs after, idle or min_size", p.bucket));
            }
            if !buckets.insert(p.bucket.as_str()) {
                return bad("tier_policies.bucket", &format!("{:?} has two policies; give it one", p.bucket));
            }
        }
        if !self.tier_policies.is_empty() && self.cluster.is_some() {
            // Every node must apply the same policies.
            return bad("tier_policies", "on a cluster node tier policies live in the cluster state: set them with `strata tier policy`");
        }
        if let Some(r) = self.registry.listen {
            if self.registry.anonymous == Anonymous::None && self.registry.users.is_empty() {
                return bad("registry", "no one could use it: add [[registry.users]], or set anonymous = \"pull\" or \"push\"");
            }
            if r.port() != 0 && r == self.server.listen {
                return bad("registry.listen", "must differ from server.listen");
            }
            if self.registry.bucket.is_empty() {
                return bad("registry.bucket", "must name a bucket");
            }
        }
        if let Some(m) = self.metrics.listen
            && m.port() != 0
            && (m == self.server.listen || Some(m) == self.registry.listen)
        {
            return bad("metrics.listen", "must differ from server.listen and registry.listen");
        }
        if self.s3.region.is_empty() || !self.s3.region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return bad("s3.region", "use lowercase letters, digits and '-' (e.g. us-east-1)");
        }
        if let Some(t) = &self.tls {
            if t.cert_file.as_os_str().is_empty() || t.key_file.as_os_str().is_empty() {
                return bad("tls", "set cert_file and key_file (leave [tls] out for plaintext)");
            }
            if self.cluster.is_some() && t.ca_file.is_none() {
                return bad("tls.ca_file", "a cluster node needs the cluster CA to check its peers (make one with `strata cert ca`)");
            }
        }
        if let Some(a) = &self.auth
            && a.token_secret_file.is_some() == a.token_secret_env.is_some()
        {
            return bad("auth", "set exactly one of token_secret_file and token_secret_env (leave [auth] out for no tokens)");
        }
        if self.metrics.check_interval < Duration::from_secs(1) {
            return bad("metrics.check_interval", "must be at least 1s");
        }
        for u in &self.registry.users {
            if u.name.is_empty() || u.name.contains(':') {
                return bad("registry.users.name", "must be non-empty and hold no ':'");
            }
            if u.password_file.is_some() == u.password_env.is_some() {
                return bad("registry.users", &format!("user {:?}: set exactly one of password_file and password_env", u.name));
            }
        }
        if self.tiering.interval.is_zero() {
            return bad("tiering.interval", "must be more than 0s");
        }
        if self.backup.every.is_some_and(|d| d < Duration::from_secs(1)) {
            return bad("backup.every", "must be at least 1s (leave it out for no schedule)");
        }
        if self.backup.every.is_some() && self.backup.target.is_none() {
            return bad("backup.every", "needs backup.target (a url to back up to)");
        }
        if self.wasm.max_instances == 0 {
            return bad("wasm.max_instances", "must be at least 1");
        }
        if self.wasm.call_timeout.is_zero() {
            return bad("wasm.call_timeout", "must be more than 0s");
        }
        if self.wasm.memory_limit.0 < 1 << 20 {
            return bad("wasm.memory_limit", "must be at least 1MiB");
        }
        for (i, p) in self.plugins.iter().enumerate() {
            let at = format!("plugins[{i}] ({})", p.name);
            if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return bad(&at, "name must be letters, digits, '-' or '_'");
            }
            if p.builtin.is_some() == p.path.is_some() {
                return bad(&at, "set exactly one of `builtin` and `path`");
            }
            if self.plugins[..i].iter().any(|q| q.name == p.name) {
                return bad(&at, "a plugin of this name is declared twice");
            }
            if p.call_timeout.is_some_and(|t| t.is_zero()) {
                return bad(&at, "call_timeout must be more than 0s");
            }
            if p.memory_limit.is_some_and(|m| m.0 < 1 << 20) {
                return bad(&at, "memory_limit must be at least 1MiB");
            }
        }
        if let Some(c) = &self.cluster {
            if c.secret_file.is_some() == c.secret_env.is_some() {
                return bad("cluster", "set exactly one of secret_file and secret_env");
            }
            if c.snapshot_every == 0 {
                return bad("cluster.snapshot_every", "must be at least 1");
            }
            if c.node_id == Some(0) {
                return bad("cluster.node_id", "must be more than 0");
            }
            // Ids are kept in SQLite's 64-bit signed integers (placements,
            // anti-entropy digests).
            if c.node_id.is_some_and(|id| id > i64::MAX as u64) {
                return bad("cluster.node_id", &format!("must be at most {}", i64::MAX));
            }
            if c.heartbeat_interval.is_zero() || c.suspect_after <= c.heartbeat_interval || c.down_after <= c.suspect_after {
                return bad("cluster", "want 0 < heartbeat_interval < suspect_after < down_after");
            }
        }
        let r = &self.replication;
        if r.max_replicas == 0 || r.max_replicas > 16 {
            return bad("replication.max_replicas", "must be between 1 and 16");
        }
        if r.min_replicas == 0 || r.min_replicas > r.replication_factor || r.replication_factor > r.max_replicas {
            return bad("replication", "want 1 <= min_replicas <= replication_factor <= max_replicas");
        }
        if r.sync_timeout.is_zero() || r.retry_delay.is_zero() || r.health_check_interval.is_zero() || r.anti_entropy_interval.is_zero() {
            return bad("replication", "sync_timeout, retry_delay, health_check_interval and anti_entropy_interval must be more than 0s");
        }
        if r.max_concurrent_syncs == 0 {
            return bad("replication.max_concurrent_syncs", "must be at least 1");
        }
        if r.retry_attempts > 20 {
            return bad("replication.retry_attempts", "at most 20 (the delay doubles each time)");
        }
        if let Some(enc) = &self.storage.encryption
            && enc.key_file.is_none()
            && enc.key_env.is_none()
        {
            return bad("storage.encryption", "set key_file or key_env");
        }
        Ok(())
    }

    /// Where compiled plugins are cached.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.wasm.cache_dir.clone().unwrap_or_else(|| self.storage.base_path.join("plugin-cache"))
    }

    /// Where the SQLite file lives.
    /// Where the S3 gateway's access keys live.
    pub fn s3_keys_file(&self) -> PathBuf {
        self.s3.keys_file.clone().unwrap_or_else(|| self.storage.base_path.join("s3-keys.json"))
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.metadata.data_dir.clone().unwrap_or_else(|| self.storage.base_path.join("meta"))
    }
}

/// Figment errors can chain; the first says what matters, on one line.
fn one_line(e: &figment::Error) -> String {
    let first = e.clone().into_iter().next().unwrap_or_else(|| e.clone());
    let key = first.path.join(".");
    let mut msg = if key.is_empty() { first.kind.to_string() } else { format!("{key}: {}", first.kind) };
    if let Some(source) = &first.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        msg.push_str(&format!(" (in {source})"));
    }
    msg.replace('\n', " ")
}

/// A byte count written as `1048576`, `"512MiB"` or `"10 GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 1048576, \"512MiB\" or \"10GB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `"512MiB"`, `"10 GB"`, `"4096"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("invalid size {s:?}: use a number of bytes or e.g. \"512MiB\", \"10GB\""))
}

/// Durations as humantime strings: `"168h"`, `"30s"`, `"0s"`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?} ({e}): use e.g. \"30s\", \"15m\", \"168h\"")))
    }
}

/// An optional duration, as [`duration`] writes them.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::duration")] Duration);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_the_default() {
        let parsed: Config = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(EXAMPLE_TOML)).extract().unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn a_node_id_must_fit_sqlites_integers() {
        let with = |id| Config {
            cluster: Some(ClusterConfig { node_id: Some(id), secret_env: Some("S".into()), ..Default::default() }),
            ..Default::default()
        };
        assert!(with(i64::MAX as u64).validate().is_ok());
        let err = with(i64::MAX as u64 + 1).validate().unwrap_err().to_string();
        assert!(err.contains("cluster.node_id"), "{err}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("2 MiB").unwrap(), 2 << 20);
        assert!(parse_size("lots").is_err());
    }
}
