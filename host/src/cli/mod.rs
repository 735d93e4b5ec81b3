//! The `strata` command: `serve` runs a server; every other subcommand is a
//! gRPC client of one.

mod backup;
mod bench;
mod bench_auth;
mod bench_cluster;
mod bench_namespace;
mod bench_plugins;
mod bench_registry;
mod bench_remote;
mod bench_replication;
mod bench_s3;
mod bench_search;
pub(super) mod cert;
pub mod client;
mod cmd;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "strata", version, about = "Content-addressed storage server and client")]
pub struct Cli {
    /// Server to talk to.
    #[arg(long, global = true, env = "STRATA_ADDR", default_value = "http://127.0.0.1:7400")]
    pub addr: String,
    /// Accept a cluster answer that may lack keys held only by unreachable
    /// nodes (ls, versions, bucket ls, search): warn and exit 0. Without it
    /// such an answer is printed, then the command fails.
    #[arg(long, global = true)]
    pub allow_partial: bool,
    /// A token for servers with `[auth]` (see `strata token create`).
    #[arg(long, global = true, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed the server's, for an https:// --addr.
    #[arg(long, global = true, env = "STRATA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Log lines as text (for people) or JSON (one object per line, for machines).
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a server (embedded defaults unless --config is given).
    Serve {
        /// TOML file merged over the defaults; STRATA_* variables override both.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a stopped server's store offline: metadata integrity, every
    /// blob, orphan files, reference counts, totals. Exit status: 0 clean,
    /// 1 problems found and all repaired, 4 problems left, 8 the check
    /// itself failed.
    Fsck {
        /// The server's config file (the same one `serve` uses).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Fix what is safe: mark damaged blobs corrupt, quarantine their
        /// files and orphan files, recompute reference counts and totals.
        /// Never removes a version.
        #[arg(long)]
        repair: bool,
    },
    /// Store a file (or stdin) under KEY.
    Put {
        key: String,
        /// File to upload; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Attribute `name=value`; numbers, true/false and [..] arrays are typed, the rest are strings.
        #[arg(long = "meta", short = 'm', value_name = "NAME=VALUE")]
        meta: Vec<String>,
        #[arg(long)]
        content_type: Option<String>,
        /// Fail if the key already has a live object.
        #[arg(long)]
        if_absent: bool,
        /// Fail unless the key's live object is this version.
        #[arg(long)]
        if_version: Option<String>,
        /// An id that makes a retry safe: a put with an id the bucket saw in
        /// the last 24 hours stores nothing and prints the first put's version.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Store many small files in one batch, each under its file name.
    PutMany {
        files: Vec<PathBuf>,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Prefix for the keys.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Fetch an object to a file or stdout.
    Get {
        key: String,
        /// Output file; `-` or nothing writes stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// Byte range `START-END` (inclusive) or `START-`.
        #[arg(long)]
        range: Option<String>,
    },
    /// Delete objects (a delete marker when versioning), or one version for good.
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Remove this version permanently (one key only).
        #[arg(long)]
        version: Option<String>,
    },
    /// List objects.
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Stop after this many objects (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show an object's metadata.
    Stat {
        key: String,
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make an old version live again (a new version sharing its content).
    Restore {
        key: String,
        /// The version to bring back (see `strata versions KEY`).
        version: String,
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every version of a key, newest first.
    Versions {
        key: String,
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Manage buckets.
    Bucket {
        #[command(subcommand)]
        cmd: BucketCmd,
    },
    /// Server totals, cache and per-operation figures.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Find objects by metadata: `strata search 'category = "research" and size > 500MiB'`.
    ///
    /// Fields: key, size, content_type, created, modified (ms since the epoch),
    /// digest, or any attribute by dotted path. Operators: = != > >= < <=,
    /// in (a, b), prefix, contains (list attributes), exists, match (words).
    /// Combine with and, or and parentheses.
    Search {
        /// The query; everything in the bucket when absent.
        query: Option<String>,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Sort field; a leading `-` sorts descending (`--sort -size`).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        /// Objects per page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Also print how the answer was found.
        #[arg(long)]
        explain: bool,
        /// Ignore indexes and scan (answers are the same; to compare).
        #[arg(long)]
        no_index: bool,
        #[arg(long)]
        json: bool,
    },
    /// Search indexes: create, list, drop.
    Index {
        #[command(subcommand)]
        cmd: IndexCmd,
    },
    /// The cluster this server belongs to.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Distributed locks with a lease and a fencing token.
    Lock {
        #[command(subcommand)]
        cmd: LockCmd,
    },
    /// The server's health checks (space, a write probe, plugins; on a cluster the membership,
    /// peers and replication; indexes) and whether it is ready to serve. Exit status 1 when not.
    Health {
        #[arg(long)]
        json: bool,
    },
    /// Read the TLS certificates, the token secret and revoked list, and the plugin files again
    /// (as SIGHUP does). What fails to load keeps the old; exit status 1 then.
    Reload {
        #[arg(long)]
        json: bool,
    },
    /// The S3 gateway's access keys (offline, in the config's [s3] keys_file).
    S3 {
        #[command(subcommand)]
        cmd: S3Cmd,
    },
    /// Make a cluster CA and node certificates for [tls], for people without a PKI.
    Cert {
        #[command(subcommand)]
        cmd: CertCmd,
    },
    /// Scoped tokens for servers with `[auth]`: create (signed here with the config's secret), revoke.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Models in the OCI registry, found by what is inside them.
    Models {
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Object-store tiers for cold blobs: ls, status, move, recall.
    Tier {
        #[command(subcommand)]
        cmd: TierCmd,
    },
    /// Backups to an object store: create, ls, verify, restore, prune.
    Backup {
        #[command(subcommand)]
        cmd: backup::BackupCmd,
    },
    /// Loaded WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        cmd: PluginCmd,
    },
    /// Measure this machine and a strata server on it; prints figures and ratios.
    Bench(bench::BenchArgs),
    /// Measure plugin call costs, instantiation and server start-up.
    BenchPlugins(bench_plugins::BenchPluginsArgs),
    /// Load objects with attributes into a server and time searches.
    BenchSearch(bench_search::BenchSearchArgs),
    /// Start three local cluster nodes and time commits, locks and failover.
    BenchCluster(bench_cluster::BenchClusterArgs),
    /// Start three cluster nodes and one single node with the same keys and
    /// time listing, search, and conditional against unconditional puts.
    BenchNamespace(bench_namespace::BenchNamespaceArgs),
    /// Tiers and backups against the object store's own puts and gets: tier
    /// moves, cold whole and ranged reads, a backup against `cp -a` of the
    /// data directory, an incremental backup after 1% changed.
    BenchRemote(bench_remote::BenchRemoteArgs),
    /// The OCI registry against the gRPC API: a large layer pushed (one
    /// request, and chunked) against a plain put, and pulled in 16 ranges
    /// at once against a plain get of the same blob.
    BenchRegistry(bench_registry::BenchRegistryArgs),
    /// What TLS and token checks cost: 4 KiB puts and a large get, plaintext, with tokens, with TLS, with both.
    BenchAuth(bench_auth::BenchAuthArgs),
    /// The S3 gateway against the gRPC API: a large put and get, and 4 KiB puts and gets from many
    /// clients, with a compiled S3 client (object_store).
    BenchS3(bench_s3::BenchS3Args),
    /// Start local cluster nodes and time replicated puts and gets, small
    /// replicated puts, and repair to a new node.
    BenchReplication(bench_replication::BenchReplicationArgs),
}

/// A bucket's replication policy.
#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// Replication-strategy plugin (eager, quorum, lazy, geographic, ...).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Node-selector plugin (rendezvous, least-loaded, zone-aware, ...).
    #[arg(long)]
    pub selector: Option<String>,
    /// Copies of each object.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Fewer healthy targets than this refuses a write.
    #[arg(long)]
    pub min_replicas: Option<u32>,
    /// strong or eventual.
    #[arg(long)]
    pub consistency: Option<String>,
    /// A plugin parameter, `name=value`; repeatable.
    #[arg(long = "param")]
    pub params: Vec<String>,
}

impl PolicyArgs {
    pub fn is_empty(&self) -> bool {
        self.strategy.is_none()
            && self.selector.is_none()
            && self.replicas.is_none()
            && self.min_replicas.is_none()
            && self.consistency.is_none()
            && self.params.is_empty()
    }
}

#[derive(Subcommand, Debug)]
pub enum BucketCmd {
    /// On a cluster the flags set the bucket's replication policy; unset
    /// ones take the server's [replication] defaults.
    Create {
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    Ls {
        #[arg(long)]
        json: bool,
    },
    Rm {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Make this node a one-node cluster that others then join.
    Init,
    /// Add this node to the cluster of the node at ADDR (host:port).
    Join {
        #[arg(value_name = "ADDR")]
        node: String,
    },
    /// Every node of the cluster, as this node sees it.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Take this node out of the cluster (it stops being a member for good).
    Leave,
    /// Remove another node, e.g. a dead one; its id is never used again.
    Remove {
        #[arg(value_name = "NODE_ID")]
        id: u64,
    },
    /// Check every version this node leads against its policy now: restore
    /// lost replicas, copy to new placements, drop surplus copies.
    Repair {
        /// Only count what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// The same pass as `repair`, named for its other use: after nodes
    /// join or leave, move data to the new placement.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a bucket's replication policy, or set it (unset flags take the
    /// server's [replication] defaults).
    Replication {
        bucket: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum S3Cmd {
    /// Access keys for S3 clients.
    Key {
        #[command(subcommand)]
        cmd: S3KeyCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum S3KeyCmd {
    /// A new access key for one bucket (or `*`); prints its id and secret once.
    Create {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        read: bool,
        #[arg(long)]
        write: bool,
        #[arg(long)]
        json: bool,
    },
    /// The access keys (ids, buckets and rights; never the secrets).
    Ls {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Remove an access key: requests signed with it are refused from then on.
    Rm {
        #[arg(long, short)]
        config: Option<PathBuf>,
        access_key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// A new cluster CA: DIR/ca.crt (every node's [tls] ca_file) and DIR/ca.key.
    Ca {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// How long the CA is valid (1 to 36500).
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// A node certificate signed by the CA in --ca: OUT/NAME.crt and OUT/NAME.key
    /// ([tls] cert_file and key_file). It serves as server and as client (mTLS between nodes).
    Node {
        /// The directory holding ca.crt and ca.key.
        #[arg(long, default_value = "certs")]
        ca: PathBuf,
        #[arg(long)]
        name: String,
        /// A DNS name or IP address clients and peers dial the node by; repeat for several.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// How long it is valid (1 to 36500).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Sign a token with the secret the config's [auth] names; prints it.
    Create {
        /// The server's config (its [auth] secret signs the token).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// admin, locks, bucket:<name>:read or bucket:<name>:write (<name> may be *); repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// How long it is valid (e.g. 1h, 30d).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Its id, for revocation (default: a random one).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Refuse a token from now on: adds its id to the config's [auth] revoked_file (servers read
    /// it again when it changes).
    Revoke {
        #[arg(long, short)]
        config: Option<PathBuf>,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Import an Ollama models directory (`~/.ollama/models`: manifests/<host>/<namespace>/<model>/<tag>
    /// and blobs/sha256-<hex>): each manifest becomes <namespace>/<model>:<tag> (the name in lowercase),
    /// byte-exact; blobs the server has, in any repository, are not sent again. A bad manifest is
    /// reported and left out; the rest are imported.
    Import {
        dir: std::path::PathBuf,
        /// Only these models ([HOST/]NAME[:TAG], as `ollama` names them).
        models: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write models into an Ollama models directory Ollama runs from: manifests byte-exact, blobs
    /// checked against their digests (ones already there and whole are kept).
    Export {
        dir: std::path::PathBuf,
        /// Only these models (NAME or NAME:TAG); all when none.
        models: Vec<String>,
        /// The host directory under manifests/ (default: the one a model was imported from, else
        /// registry.ollama.ai).
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Tagged models (repository:tag), with size and what their layers hold.
    Ls {
        /// Repositories whose names start with this.
        prefix: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One model: its manifest, layers and recorded attributes.
    Show {
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Another name for a model (in any repository; the layers stay one copy).
    Tag {
        source: String,
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove models (tags); a manifest no other tag names goes too, and with it the layers
    /// nothing else references. NAME@sha256:... removes that manifest and every tag naming it.
    Rm {
        #[arg(required = true)]
        models: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Tagged models whose layers match a query over their GGUF or
    /// safetensors headers: `strata models search 'gguf.architecture =
    /// "llama" and gguf.file_type = "Q4_K_M"'` (fields: gguf.architecture,
    /// gguf.file_type, gguf.parameter_count, gguf.context_length, ...,
    /// safetensors.parameter_count, safetensors.dtype, ...).
    Search {
        query: String,
        /// The registry's bucket.
        #[arg(long, short, default_value = "oci")]
        bucket: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TierCmd {
    /// The tiers and where they are (`local` is the local disk).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Blobs and bytes on each tier, and the local cache of cold blobs.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Move a version's blob to a tier now, whatever the policies say.
    Move {
        key: String,
        #[arg(long)]
        tier: String,
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        version: Option<String>,
    },
    /// The tier policies; on a cluster, set a bucket's (every node moves its
    /// own copies to its own tier of that name) or remove it. A single-node
    /// server takes its policies from [[tier_policies]] in its config.
    Policy {
        /// The bucket whose policy to set or remove; none: list them.
        bucket: Option<String>,
        #[arg(long, requires = "bucket")]
        tier: Option<String>,
        /// The version is at least this old (30d, 12h).
        #[arg(long, value_parser = humantime::parse_duration)]
        after: Option<std::time::Duration>,
        /// Its blob was not read for this long.
        #[arg(long, value_parser = humantime::parse_duration)]
        idle: Option<std::time::Duration>,
        /// Its blob holds at least this many bytes (1MiB).
        #[arg(long, value_parser = crate::config::parse_size)]
        min_size: Option<u64>,
        /// Remove the bucket's policy.
        #[arg(long, requires = "bucket", conflicts_with_all = ["tier", "after", "idle", "min_size"])]
        remove: bool,
        #[arg(long)]
        json: bool,
    },
    /// Bring a version's blob back to the local disk.
    Recall {
        key: String,
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum LockCmd {
    /// Take a lock; prints its fencing token.
    Acquire {
        name: String,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Wait this long for the lock (0s: try once).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// Who holds it; default: host, process id and a random part.
        #[arg(long)]
        holder: Option<String>,
    },
    /// Extend the lease of the grant TOKEN.
    Renew {
        name: String,
        token: u64,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Give up the grant TOKEN.
    Release { name: String, token: u64 },
    /// Live locks with their holders and lease left.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Run COMMAND while holding the lock, renewing its lease; the command
    /// is stopped if the lease is lost. Exits with the command's status.
    ///
    /// `strata lock run nightly-gc --ttl 10s -- ./gc.sh`
    Run {
        name: String,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How long to wait for the lock.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum IndexCmd {
    /// Index fields of a bucket's objects with an index-type plugin; the
    /// existing objects are backfilled in the background.
    ///
    /// `strata index create by-size --field size --type btree`
    Create {
        name: String,
        /// A field: key, size, content_type, created, modified, digest, or an
        /// attribute name. Repeat for a multi-field index.
        #[arg(long = "field", short = 'f', required = true)]
        fields: Vec<String>,
        /// Index-type plugin: btree, hash, fulltext, tags, or a loaded one.
        #[arg(long = "type", short = 't', default_value = "btree")]
        kind: String,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Wait for the backfill, showing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// List indexes with their state and backfill progress.
    Ls {
        #[arg(long, short)]
        bucket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Drop an index; searches stop using it at once.
    Rm {
        name: String,
        #[arg(long, short)]
        bucket: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// List loaded plugins with kind, version and call figures.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Dry run: where a node selector would put KEY among the given nodes,
    /// and the write plan of a replication strategy.
    Place {
        key: String,
        #[arg(long, short)]
        bucket: Option<String>,
        /// Node-selector plugin.
        #[arg(long, default_value = "rendezvous")]
        selector: String,
        /// Replication-strategy plugin; no write plan when absent.
        #[arg(long)]
        strategy: Option<String>,
        #[arg(long, default_value_t = 3)]
        replicas: u32,
        /// A node: `id=n1,region=eu,zone=a,capacity=1TiB,available=600GiB,load=0.2`
        /// (only id is required). Repeat for each node. On a cluster node,
        /// none means the cluster's members, with their health and load.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Id of the coordinating node (default: the first).
        #[arg(long)]
        coordinator: Option<String>,
        /// A policy parameter, `name=value`; repeatable.
        #[arg(long = "param")]
        params: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command; the error is printed by `main` as one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    client::set_token(cli.token.clone());
    client::set_ca_cert(cli.ca_cert.clone());
    match cli.cmd {
        Cmd::Serve { config } => serve(config).await,
        Cmd::Fsck { config, repair } => fsck(config, repair).await,
        Cmd::Backup { cmd } => backup::run(&cli.addr, cmd).await,
        Cmd::Token { cmd } => token(cmd),
        Cmd::Cert { cmd } => cert::run(cmd),
        Cmd::S3 { cmd: S3Cmd::Key { cmd } } => s3_key(cmd),
        Cmd::Bench(args) => bench::run(args).await,
        Cmd::BenchPlugins(args) => bench_plugins::run(args).await,
        Cmd::BenchSearch(args) => bench_search::run(args).await,
        Cmd::BenchCluster(args) => bench_cluster::run(args).await,
        Cmd::BenchNamespace(args) => bench_namespace::run(args).await,
        Cmd::BenchReplication(args) => bench_replication::run(args).await,
        Cmd::BenchRemote(args) => bench_remote::run(args).await,
        Cmd::BenchRegistry(args) => bench_registry::run(args).await,
        Cmd::BenchAuth(args) => bench_auth::run(args).await,
        Cmd::BenchS3(args) => bench_s3::run(args).await,
        cmd => client::run(&cli.addr, cmd, cli.allow_partial).await,
    }
}

/// Exit statuses of `fsck`, as e2fsck's.
const FSCK_REPAIRED: i32 = 1;
const FSCK_PROBLEMS_LEFT: i32 = 4;
const FSCK_FAILED: i32 = 8;

async fn fsck(config: Option<PathBuf>, repair: bool) -> anyhow::Result<()> {
    let run = async {
        let config = crate::config::Config::load(config.as_deref())?;
        // fsck runs the full integrity_check itself, and reports it.
        let objects = crate::server::open_objects(&config, false).await?;
        let report = objects.fsck(repair).await?;
        objects.meta().close().await;
        anyhow::Ok(report)
    };
    let report = match run.await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata fsck: {e:#}");
            std::process::exit(FSCK_FAILED);
        }
    };
    print!("{}", report.render());
    let code = match (report.data_problems(), report.fixable_problems()) {
        (0, 0) => return Ok(()),
        (0, _) if repair => FSCK_REPAIRED,
        _ => FSCK_PROBLEMS_LEFT,
    };
    std::process::exit(code);
}

/// `strata s3 key`: offline, in the config's key file.
fn s3_key(cmd: S3KeyCmd) -> anyhow::Result<()> {
    use crate::s3::keys::{Key, KeyFile};
    use rand::Rng as _;
    let file_of = |config: Option<PathBuf>| -> anyhow::Result<PathBuf> {
        let config = crate::config::Config::load(config.as_deref())?;
        let file = config.s3_keys_file();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot make {}: {e}", dir.display()))?;
        }
        Ok(file)
    };
    match cmd {
        S3KeyCmd::Create { config, bucket, read, write, json } => {
            if bucket != "*" {
                crate::meta::names::bucket_name(&bucket).map_err(|e| anyhow::anyhow!("--bucket: {e}"))?;
            }
            if !read && !write {
                anyhow::bail!("give --read, --write or both: a key that may do nothing is of no use");
            }
            let file = file_of(config)?;
            let mut keys = KeyFile::read(&file).map_err(anyhow::Error::msg)?;
            const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let mut rng = rand::rng();
            let access_key: String = "SK".chars().chain((0..18).map(|_| UPPER[rng.random_range(0..UPPER.len())] as char)).collect();
            let secret_key: String = (0..40).map(|_| SECRET[rng.random_range(0..SECRET.len())] as char).collect();
            keys.keys.push(Key { access_key: access_key.clone(), secret_key: secret_key.clone(), bucket: bucket.clone(), read, write });
            keys.write(&file).map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"access_key": access_key, "secret_key": secret_key, "bucket": bucket, "read": read, "write": write})
                );
            } else {
                println!(
                    "access key {access_key}\nsecret key {secret_key}\n(bucket {bucket}, {}; the secret is shown only now)",
                    match (read, write) {
                        (true, true) => "read and write",
                        (true, false) => "read",
                        _ => "write",
                    }
                );
            }
        }
        S3KeyCmd::Ls { config } => {
            let keys = KeyFile::read(&file_of(config)?).map_err(anyhow::Error::msg)?;
            for k in keys.keys {
                println!("{} {} {}{}", k.access_key, k.bucket, if k.read { "read " } else { "" }, if k.write { "write" } else { "" });
            }
        }
        S3KeyCmd::Rm { config, access_key } => {
            let file = file_of(config)?;
            let mut keys = KeyFile::read(&file).map_err(anyhow::Error::msg)?;
            let before = keys.keys.len();
            keys.keys.retain(|k| k.access_key != access_key);
            if keys.keys.len() == before {
                anyhow::bail!("no access key {access_key} in {}", file.display());
            }
            keys.write(&file).map_err(anyhow::Error::msg)?;
            println!("access key {access_key} removed");
        }
    }
    Ok(())
}

/// `strata token`: offline, with the config's secret.
fn token(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create { config, scopes, ttl, id, json } => {
            let config = crate::config::Config::load(config.as_deref())?;
            let auth = config.auth.ok_or_else(|| anyhow::anyhow!("the config has no [auth] section: tokens are off"))?;
            let key = crate::api::auth::secret(&auth).map_err(|e| anyhow::anyhow!(e))?;
            let (token, claims) = crate::api::auth::create(&key, &scopes, ttl, id).map_err(|e| anyhow::anyhow!(e))?;
            if json {
                println!("{}", serde_json::json!({"token": token, "id": claims.jti, "scope": claims.scope, "expires": claims.exp}));
            } else {
                println!("{token}");
                eprintln!(
                    "token {} ({}), valid until {}",
                    claims.jti,
                    claims.scope,
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims.exp))
                );
            }
            Ok(())
        }
        TokenCmd::Revoke { config, id } => {
            let config = crate::config::Config::load(config.as_deref())?;
            let file = config
                .auth
                .and_then(|a| a.revoked_file)
                .ok_or_else(|| anyhow::anyhow!("the config's [auth] has no revoked_file to add the id to"))?;
            crate::api::auth::check_id(&id).map_err(|e| anyhow::anyhow!(e))?;
            // The list must be one the servers can read, or the revocation
            // would not take: refuse rather than claim it.
            let mut text = match std::fs::read(&file) {
                Ok(b) => String::from_utf8(b)
                    .map_err(|_| anyhow::anyhow!("{} is not text, so servers cannot read it: fix or replace it first", file.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
            };
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{id}\n"));
            // A new file renamed over the old: a server never reads half of it.
            let tmp = file.with_extension("new");
            std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &file).map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", file.display()))?;
            println!("token {id} is revoked (servers read {} again when it changes)", file.display());
            Ok(())
        }
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = crate::config::Config::load(config.as_deref())?;
    let server = crate::server::Server::open(config).await?;
    // Scripts and tests read these two lines.
    println!("strata listening on {}", server.addr);
    println!("strata storing data in {}", server.data_dir.display());
    if let Some(a) = server.metrics_addr() {
        println!("strata metrics listening on {a}");
    }
    if let Some(a) = server.registry_addr() {
        println!("strata registry listening on {a}");
    }
    if let Some(a) = server.s3_addr() {
        println!("strata s3 listening on {a}");
    }
    server.serve(crate::server::shutdown_signal()).await
}
