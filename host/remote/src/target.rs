//! An object-store URL and its options, opened once.
//!
//! `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
//! `file:///abs/dir` and `memory://name`. Cloud credentials come from the
//! options, a TOML file of options (so secrets stay out of the main config),
//! or the environment the provider's own tools read (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`). Option values are never logged or shown: [`Target`]'s
//! `Display` is the URL alone.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

use crate::RemoteError;
pub use strata_config::TargetSpec;

/// An opened object store and the prefix Strata's objects live under.
#[derive(Clone)]
pub struct Target {
    pub store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    pub concurrency: usize,
    pub part_size: usize,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.url)
    }
}

impl Target {
    /// Opens a target for backups: one that outlives this process.
    pub fn open_durable(spec: &TargetSpec) -> Result<Self, RemoteError> {
        if spec.url.starts_with("memory:") {
            return Err(RemoteError::BadTarget {
                url: spec.url.clone(),
                why: "memory:// holds nothing past this process: back up to a durable store".into(),
            });
        }
        Self::open(spec)
    }

    /// The local directory of a `file://` target.
    pub fn local_dir(&self) -> Option<&FsPath> {
        self.url.strip_prefix("file://").map(FsPath::new)
    }

    /// Whether a `file://` target and one of `dirs` contain one another
    /// (a server's data directory must not be written by its own tiers or
    /// backups, nor hold them).
    pub fn overlaps(&self, dirs: &[&FsPath]) -> bool {
        let Some(dir) = self.local_dir().and_then(|d| std::fs::canonicalize(d).ok()) else { return false };
        dirs.iter().filter_map(|p| std::fs::canonicalize(p).ok()).any(|p| dir.starts_with(&p) || p.starts_with(&dir))
    }

    pub fn open(spec: &TargetSpec) -> Result<Self, RemoteError> {
        let bad = |why: String| RemoteError::BadTarget { url: spec.url.clone(), why };
        if spec.concurrency == 0 {
            return Err(bad("concurrency must be at least 1".into()));
        }
        if spec.part_size.0 < 5 << 20 {
            return Err(bad("part_size must be at least 5 MiB (the S3 minimum)".into()));
        }
        let mut options = spec.options.clone();
        if let Some(file) = &spec.options_file {
            let text = std::fs::read_to_string(file).map_err(|e| bad(format!("reading options_file {}: {e}", file.display())))?;
            let table: BTreeMap<String, String> =
                toml::from_str(&text).map_err(|e| bad(format!("options_file {} is not a TOML table of strings: {e}", file.display())))?;
            options.extend(table);
        }
        let (scheme, rest) = spec.url.split_once("://").ok_or_else(|| bad("expected SCHEME://... (s3, gs, az, file, memory)".into()))?;
        let unknown = |key: &str| bad(format!("unknown option {key:?} for {scheme}://"));
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match scheme {
            "s3" | "s3a" => {
                let http = options.get("endpoint").or(options.get("aws_endpoint")).is_some_and(|e| e.starts_with("http://"));
                let allowed = options.get("allow_http").or(options.get("aws_allow_http")).is_some_and(|v| v == "true");
                if http && !allowed {
                    return Err(bad("the endpoint is http://: set the option allow_http = \"true\" (or use https)".into()));
                }
                let b = configure(AmazonS3Builder::from_env().with_url(&spec.url), &options, AmazonS3Builder::with_config, unknown)?;
                (Arc::new(b.build().map_err(|e| bad(e.to_string()))?), path_after_host(rest))
            }
            "gs" => {
                let b = configure(
                    GoogleCloudStorageBuilder::from_env().with_url(&spec.url),
                    &options,
                    GoogleCloudStorageBuilder::with_config,
                    unknown,
                )?;
                (Arc::new(b.build().map_err(|e| bad(e.to_string()))?), path_after_host(rest))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let b = configure(
                    MicrosoftAzureBuilder::from_env().with_url(&spec.url),
                    &options,
                    MicrosoftAzureBuilder::with_config,
                    unknown,
                )?;
                (Arc::new(b.build().map_err(|e| bad(e.to_string()))?), path_after_host(rest))
            }
            "file" => {
                if let Some(k) = options.keys().next() {
                    return Err(unknown(k));
                }
                if rest.contains(['?', '#', '%']) {
                    return Err(bad("a file:// URL is read as a plain path: no ?query, #fragment or %-escapes".into()));
                }
                let dir = FsPath::new(rest);
                if !dir.is_absolute() {
                    return Err(bad("a file:// URL needs an absolute path: file:///srv/backups".into()));
                }
                std::fs::create_dir_all(dir).map_err(|e| bad(format!("creating {}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(e.to_string()))?.with_automatic_cleanup(true);
                (Arc::new(fs), "")
            }
            "memory" => {
                if let Some(k) = options.keys().next() {
                    return Err(unknown(k));
                }
                (Arc::new(InMemory::new()), "")
            }
            other => return Err(bad(format!("unsupported scheme {other:?}: use s3, gs, az, file or memory"))),
        };
        let prefix = Path::parse(prefix).map_err(|e| bad(e.to_string()))?;
        Ok(Self { store, prefix, url: spec.url.clone(), concurrency: spec.concurrency, part_size: spec.part_size.0 as usize })
    }

    /// `rel` under the target's prefix.
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// The path below the prefix of a full path listed from the store.
    pub fn relative(&self, full: &Path) -> Option<String> {
        let parts: Vec<_> = full.prefix_match(&self.prefix)?.map(|p| p.as_ref().to_string()).collect();
        Some(parts.join("/"))
    }
}

/// Applies `options` to a provider's builder; an option the provider does
/// not know is an error (`unknown`), not silently dropped.
fn configure<B, K: std::str::FromStr>(
    mut b: B,
    options: &BTreeMap<String, String>,
    set: impl Fn(B, K, String) -> B,
    unknown: impl Fn(&str) -> RemoteError,
) -> Result<B, RemoteError> {
    for (k, v) in options {
        let key: K = k.to_ascii_lowercase().parse().map_err(|_| unknown(k))?;
        b = set(b, key, v.clone());
    }
    Ok(b)
}

/// `bucket/some/prefix` -> `some/prefix`.
fn path_after_host(rest: &str) -> &str {
    rest.split_once('/').map_or("", |(_, p)| p)
}
