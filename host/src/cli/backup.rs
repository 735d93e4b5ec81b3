//! `strata backup`: `create` asks the server (it holds the data directory);
//! `ls`, `verify`, `restore` and `prune` work on the target directly, with
//! the config file for the default target, the key and the data directory.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::watch;

use super::client::{self, status};
use crate::api::pb;
use crate::config::{Config, MetaBackend, TargetSpec};
use crate::remote::backup::Progress;
use crate::remote::prune::Keep;
use crate::remote::{Target, manifest, prune, restore, verify};
use crate::store::{Codec, LocalStore};

/// Where a command reads and writes: a URL, or the config's
/// `[backup.target]`.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// Object-store URL (s3://bucket/prefix, gs://, az://, file:///dir);
    /// default: [backup.target] of the config.
    url: Option<String>,
    /// A provider option for URL, `name=value` (endpoint, region,
    /// allow_http, ...); repeatable. Credentials are best left to the
    /// environment (AWS_ACCESS_KEY_ID, ...).
    #[arg(long = "option", value_name = "NAME=VALUE")]
    options: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Back up the server at --addr to its [backup.target]: a consistent
    /// metadata snapshot plus every blob the target lacks (so each backup
    /// after the first sends only what changed).
    Create {
        #[arg(long)]
        json: bool,
    },
    /// The finished backups at a target, oldest first.
    Ls {
        #[command(flatten)]
        target: TargetArgs,
        /// The config whose [backup.target] is the default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check that every blob a backup needs is at the target and sound
    /// (downloaded and read through, with the config's key when encrypted).
    /// Exit status 1 when something is missing or damaged.
    Verify {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The backup to check (default: the newest).
        #[arg(long)]
        id: Option<String>,
        /// Check every backup at the target.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Only check that each blob is present, with the size the backup wrote.
        #[arg(long)]
        quick: bool,
        /// Remove the damaged blobs found from the target, so the next
        /// backup of a node that still holds them sends them again.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into the empty data directory of the config (the
    /// server must not be running on it).
    Restore {
        #[command(flatten)]
        target: TargetArgs,
        /// The config of the node to restore: its data directory (which
        /// must be empty) and its encryption key.
        #[arg(long, short)]
        config: PathBuf,
        /// The backup to restore (default: the newest).
        #[arg(long)]
        id: Option<String>,
        /// Which node of a multi-node backup.
        #[arg(long)]
        node: Option<String>,
    },
    /// Remove old backups and the blobs only they needed.
    Prune {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Keep the newest N.
        #[arg(long, default_value_t = 0)]
        keep_last: usize,
        /// Keep the newest of each of the last N days (UTC).
        #[arg(long, default_value_t = 0)]
        keep_daily: usize,
        /// Keep the newest of each of the last N weeks.
        #[arg(long, default_value_t = 0)]
        keep_weekly: usize,
        /// Only say what would go.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(addr: &str, cmd: BackupCmd) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create { json } => create(addr, json).await,
        BackupCmd::Ls { target, config, json } => {
            let config = Config::load(config.as_deref())?;
            let t = open(&target, &config)?;
            ls(&t, json).await
        }
        BackupCmd::Verify { target, config, id, all, quick, repair, json } => {
            let config = Config::load(config.as_deref())?;
            let t = open(&target, &config)?;
            let key = crate::server::load_key(&config)?;
            let backups = if all { manifest::list(&t).await? } else { vec![manifest::pick(&t, id.as_deref()).await?] };
            let (tx, rx) = watch::channel(Progress::default());
            let scratch = std::env::temp_dir().join(format!("strata-verify-{}", std::process::id()));
            let bar = follow(rx);
            let r = verify::verify(&t, &backups, key.as_ref(), quick, &scratch, &tx).await;
            bar.abort();
            let _ = std::fs::remove_dir_all(&scratch);
            let r = r?;
            let ids: Vec<_> = backups.iter().map(|m| m.id.clone()).collect();
            let left_out: usize = backups.iter().flat_map(|m| &m.nodes).map(|n| n.damaged.len()).sum();
            if left_out > 0 {
                eprintln!("note: {left_out} blob(s) were damaged on the node when backed up and are not in the backup(s)");
            }
            if json {
                let corrupt: Vec<_> = r.corrupt.iter().map(|(d, why)| json!({"digest": d.to_string(), "error": why})).collect();
                let missing: Vec<_> = r.missing.iter().map(|d| d.to_string()).collect();
                println!("{}", json!({"backups": ids, "blobs": r.blobs, "bytes": r.bytes, "missing": missing, "corrupt": corrupt}));
            } else {
                for d in &r.missing {
                    println!("missing  {d}");
                }
                for (d, why) in &r.corrupt {
                    println!("damaged  {d}: {why}");
                }
                let how = if quick { "present with the right size" } else { "sound" };
                println!(
                    "{}: {} blobs {how} ({}), {} missing, {} damaged",
                    ids.join(", "),
                    r.blobs,
                    bytesize::ByteSize(r.bytes),
                    r.missing.len(),
                    r.corrupt.len()
                );
            }
            if repair && !r.corrupt.is_empty() {
                let damaged: Vec<_> = r.corrupt.iter().map(|(d, _)| *d).collect();
                let n = verify::remove_damaged(&t, &damaged).await?;
                eprintln!(
                    "removed {n} damaged blob(s) from {t}: the next backup of a node that still holds them sends them again (until then, restoring a backup that needs them fails)"
                );
            }
            if !r.is_clean() {
                std::process::exit(1);
            }
            Ok(())
        }
        BackupCmd::Restore { target, config, id, node } => {
            let config = Config::load(Some(&config))?;
            let t = open(&target, &config)?;
            restore_cmd(&t, &config, id.as_deref(), node.as_deref()).await
        }
        BackupCmd::Prune { target, config, keep_last, keep_daily, keep_weekly, dry_run } => {
            let config = Config::load(config.as_deref())?;
            let t = open(&target, &config)?;
            let r = prune::prune(&t, Keep { last: keep_last, daily: keep_daily, weekly: keep_weekly }, dry_run).await?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for id in &r.removed {
                println!("{verb} backup {id}");
            }
            println!(
                "kept {} backups; {verb} {} backups and {} blobs ({})",
                r.kept.len(),
                r.removed.len(),
                r.blobs_removed,
                bytesize::ByteSize(r.bytes_freed)
            );
            Ok(())
        }
    }
}

fn parse_options(opts: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    opts.iter()
        .map(|o| {
            let (k, v) = o.split_once('=').ok_or_else(|| anyhow!("--option {o:?}: expected NAME=VALUE"))?;
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// The target of a command: its URL, else the config's.
fn open(args: &TargetArgs, config: &Config) -> anyhow::Result<Target> {
    let spec = match (&args.url, &config.backup.target) {
        (Some(url), Some(c)) if *url == c.url && args.options.is_empty() => c.clone(),
        (Some(url), _) => TargetSpec { options: parse_options(&args.options)?, ..TargetSpec::new(url.clone()) },
        (None, Some(c)) => c.clone(),
        (None, None) => bail!("say where: a URL (s3://bucket/prefix, file:///dir, ...) or a config with [backup.target] (--config)"),
    };
    Ok(Target::open_durable(&spec)?)
}

async fn create(addr: &str, json: bool) -> anyhow::Result<()> {
    let mut c = client::connect(addr).await?;
    let req = pb::BackupCreateRequest::default();
    let mut stream = c.backup_create(req).await.map_err(status)?.into_inner();
    let bar = bar();
    let mut done = None;
    while let Some(p) = stream.message().await.map_err(status)? {
        show(&bar, &p.phase, p.bytes_done, p.bytes_total);
        if p.done.is_some() {
            done = p.done;
        }
    }
    bar.finish_and_clear();
    let info = done.ok_or_else(|| anyhow!("the server ended the backup without an answer"))?;
    if json {
        println!(
            "{}",
            json!({"id": info.id, "url": info.url, "nodes": info.nodes, "objects": info.objects, "versions": info.versions, "blobs": info.blobs,
                   "uploaded_blobs": info.uploaded_blobs, "uploaded_bytes": info.uploaded_bytes, "damaged": info.damaged})
        );
    } else {
        println!(
            "backup {} at {}: {} node(s), {} objects, {} versions, {} blobs; sent {} blobs ({})",
            info.id,
            info.url,
            info.nodes,
            info.objects,
            info.versions,
            info.blobs,
            info.uploaded_blobs,
            bytesize::ByteSize(info.uploaded_bytes)
        );
    }
    if !info.damaged.is_empty() {
        eprintln!(
            "warning: {} damaged blob(s) on the server were left out: {} (see `strata fsck`)",
            info.damaged.len(),
            info.damaged.join(", ")
        );
    }
    Ok(())
}

async fn ls(t: &Target, json: bool) -> anyhow::Result<()> {
    // An unreadable manifest is shown, not fatal: the others still list.
    let mut list = Vec::new();
    let mut bad = Vec::new();
    for id in manifest::ids(t).await? {
        match manifest::read(t, &id).await {
            Ok(m) => list.push(m),
            Err(crate::remote::RemoteError::NoBackup { .. }) => {}
            Err(e) => bad.push((id, e.to_string())),
        }
    }
    if json {
        let mut rows: Vec<_> = list
            .iter()
            .map(|m| {
                let (ub, uy) = m.uploaded();
                json!({"id": m.id, "created_ms": m.created_ms, "finished_ms": m.finished_ms, "strata": m.strata,
                       "encrypted": m.key_fingerprint.is_some(),
                       "cluster": m.cluster.as_ref().map(|c| c.cluster_id.clone()),
                       "nodes": m.nodes.iter().map(|n| json!({"node": n.node, "cluster_node": n.cluster_node, "objects": n.objects, "versions": n.versions,
                            "blobs": n.blobs.len(), "live_bytes": n.live_bytes, "damaged": n.damaged.len()})).collect::<Vec<_>>(),
                       "uploaded_blobs": ub, "uploaded_bytes": uy})
            })
            .collect();
        rows.extend(bad.iter().map(|(id, why)| json!({"id": id, "error": why})));
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if list.is_empty() && bad.is_empty() {
        println!("no backups at {t}");
        return Ok(());
    }
    println!("{:<26} {:>5} {:>10} {:>10} {:>10} {:>12} {:>8}", "ID", "NODES", "OBJECTS", "VERSIONS", "LIVE", "SENT", "DAMAGED");
    for m in &list {
        let (_, sent) = m.uploaded();
        println!(
            "{:<26} {:>5} {:>10} {:>10} {:>10} {:>12} {:>8}",
            m.id,
            m.nodes.len(),
            m.nodes.iter().map(|n| n.objects).sum::<u64>(),
            m.nodes.iter().map(|n| n.versions).sum::<u64>(),
            bytesize::ByteSize(m.nodes.iter().map(|n| n.live_bytes).sum::<u64>()).to_string(),
            bytesize::ByteSize(sent).to_string(),
            m.nodes.iter().map(|n| n.damaged.len()).sum::<usize>()
        );
    }
    for (id, why) in &bad {
        println!("{id:<26} unreadable: {why}");
    }
    Ok(())
}

async fn restore_cmd(t: &Target, config: &Config, id: Option<&str>, node: Option<&str>) -> anyhow::Result<()> {
    if config.metadata.backend != MetaBackend::Sqlite {
        bail!("metadata.backend is memory: there is no database to restore into");
    }
    let m = manifest::pick(t, id).await?;
    // A cluster node's config may name the part by its node id.
    let configured = config.cluster.as_ref().and_then(|c| c.node_id).map(|n| n.to_string());
    let node = node.or(configured.as_deref().filter(|_| m.cluster.is_some()));
    let part = restore::node_part(&m, node)?;
    let adopt = match (&m.cluster, part.cluster_node) {
        (Some(c), Some(id)) => {
            let Some(cc) = &config.cluster else {
                bail!("backup {} is of a cluster: restore node {id} with a config that has a [cluster] section", m.id)
            };
            if let Some(n) = cc.node_id.filter(|n| *n != id) {
                bail!("cluster.node_id is {n}, but this is node {id}'s part: set cluster.node_id to {id}, or remove it")
            }
            let state: crate::cluster::state::Adopted =
                serde_json::from_value(c.state.clone()).with_context(|| format!("backup {}: the cluster state is unreadable", m.id))?;
            Some((id, state))
        }
        _ => None,
    };
    let key = crate::server::load_key(config)?;
    match (&m.key_fingerprint, &key) {
        (Some(f), None) => bail!("backup {} is encrypted (key {f}): configure storage.encryption with that key", m.id),
        (Some(f), Some(k)) if *f != k.fingerprint_hex() => {
            bail!("backup {} was sealed with key {f}, the configured key is {}", m.id, k.fingerprint_hex())
        }
        (None, Some(_)) => eprintln!(
            "warning: backup {} is not encrypted: its blobs are restored as they are (plaintext on disk); new writes are encrypted",
            m.id
        ),
        _ => {}
    }
    if !part.damaged.is_empty() {
        eprintln!(
            "warning: {} blob(s) were damaged on the node when it was backed up and are not in the backup; their versions read as DATA_LOSS",
            part.damaged.len()
        );
    }
    let base = config.storage.base_path.clone();
    let store = tokio::task::spawn_blocking(move || LocalStore::open(&base, Codec { zstd_level: None, key }, 0, true))
        .await?
        .with_context(|| format!("opening {}", config.storage.base_path.display()))?;
    let store = Arc::new(store);
    // The node keeps its cluster id; `cluster init` on it adopts the
    // cluster's state. Prepared first, and undone if the restore fails.
    let raft_dir = config.storage.base_path.join("cluster");
    if let Some((id, state)) = &adopt {
        restore::check_empty(&store, &config.meta_dir())?;
        crate::cluster::node::prepare_restore(&raft_dir, *id, state).await?;
    }
    let (tx, rx) = watch::channel(Progress::default());
    let bar = follow(rx);
    let r = restore::restore_node(t, part, &store, &config.meta_dir(), &tx).await;
    bar.abort();
    if r.is_err() && adopt.is_some() {
        for f in ["raft.db", "raft.db-wal", "raft.db-shm"] {
            let _ = std::fs::remove_file(raft_dir.join(f));
        }
    }
    let r = r?;
    println!(
        "restored backup {} (node {}) into {}: {} objects, {} versions, {} blobs ({})",
        m.id,
        r.node,
        config.storage.base_path.display(),
        r.objects,
        r.versions,
        r.blobs,
        bytesize::ByteSize(r.bytes)
    );
    if let Some((id, _)) = adopt {
        println!(
            "this is node {id} of cluster {}: restore every node, start them, then `strata cluster init` on one and `strata cluster join` the others to it",
            m.cluster.as_ref().map_or("", |c| c.cluster_id.as_str())
        );
    }
    Ok(())
}

fn bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg:10} {bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
        pb.set_style(style);
    }
    pb
}

fn show(bar: &ProgressBar, phase: &str, done: u64, total: u64) {
    bar.set_message(phase.to_string());
    bar.set_length(total);
    bar.set_position(done);
}

/// A progress bar that follows `rx` until aborted.
fn follow(mut rx: watch::Receiver<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = bar();
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            show(&bar, p.phase, p.bytes_done, p.bytes_total);
        }
        bar.finish_and_clear();
    })
}
