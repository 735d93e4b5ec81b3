//! Policies as WebAssembly components: the wasmtime host that loads node
//! selectors, replication strategies and index types through the WIT worlds
//! in `wit/`, runs them sandboxed and bounded, and survives their failures.
//!
//! The built-ins (`plugins/`, embedded by `build.rs`) are always loaded under
//! their own names; `[[plugins]]` adds components from files, or built-ins
//! under other names with their own config.

mod bindings;
mod engine;
mod kinds;
mod pool;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use bindings::types::{Consistency, Health, NodeInfo, ObjectInfo, PluginError as WitError, ReplicationPolicy, Scalar, Value};
pub use engine::{Compiled, Runtime};
pub use kinds::{
    Bound, Condition, CopyAction, IndexType, LookupPlan, NodeSelector, Op, RepairAction, Replica, ReplicaState, ReplicationStrategy,
    TermMatch, TermRange, VersionInfo, WritePlan,
};
pub use state::Topology;

mod kind;
pub use kind::Kind;
use strata_config::{Config, PluginDecl};

/// A plugin built into the binary.
pub struct Builtin {
    pub name: &'static str,
    pub kind: Kind,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Built-ins loaded at every start. The fixture misbehaves on purpose and
/// loads only when a `[[plugins]]` table names it.
fn loaded_by_default(b: &Builtin) -> bool {
    b.name != "fixture"
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin runtime: {what}: {reason}")]
    Runtime { what: &'static str, reason: String },
    #[error("plugin `{plugin}`: cannot read {}: {source}", path.display())]
    Read { plugin: String, path: PathBuf, source: std::io::Error },
    #[error("plugin `{plugin}`: not a WebAssembly component wasmtime can compile: {reason}")]
    Compile { plugin: String, reason: String },
    #[error("plugin `{plugin}` does not implement the {kind} world: it lacks the export {missing} (it exports {exports})", kind = kind.as_str())]
    WrongWorld { plugin: String, kind: Kind, missing: String, exports: String },
    #[error("plugin `{plugin}`: {reason}")]
    Link { plugin: String, reason: String },
    #[error("plugin `{plugin}`: init refused its config: {reason}")]
    Init { plugin: String, reason: String },
    #[error("no built-in plugin `{name}`; the built-ins are: {known}")]
    UnknownBuiltin { name: String, known: String },
    #[error("plugin `{plugin}` is declared kind {declared}, but built-in `{builtin}` is a {actual}", actual = actual.as_str(), declared = declared.as_str())]
    BuiltinKind { plugin: String, builtin: String, actual: Kind, declared: Kind },
    #[error(
        "plugin `{plugin}`: that name belongs to a built-in; name yours differently, or set builtin = \"{plugin}\" to configure the built-in"
    )]
    NameTaken { plugin: String },
    #[error("no {} plugin named `{name}`", kind.as_str())]
    NotFound { name: String, kind: Kind },
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin `{plugin}` ran past its {limit:?} deadline and was stopped")]
    Timeout { plugin: String, limit: Duration },
    #[error("plugin `{plugin}` tried to grow its memory past the {limit}-byte limit and was stopped")]
    MemoryLimit { plugin: String, limit: u64 },
    #[error("plugin `{plugin}` is saturated: all {instances} instances stayed busy for {waited:?}")]
    Busy { plugin: String, instances: usize, waited: Duration },
    #[error("plugin `{plugin}` returned an error: {error}")]
    Returned { plugin: String, error: ReturnedError },
    #[error("plugin `{plugin}` broke its contract: {reason}")]
    BadAnswer { plugin: String, reason: String },
}

/// An error a plugin returned (as opposed to one the host detected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnedError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("unsatisfiable: {0}")]
    Unsatisfiable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<WitError> for ReturnedError {
    fn from(e: WitError) -> Self {
        match e {
            WitError::InvalidInput(m) => ReturnedError::InvalidInput(m),
            WitError::Unsatisfiable(m) => ReturnedError::Unsatisfiable(m),
            WitError::Internal(m) => ReturnedError::Internal(m),
        }
    }
}

impl PluginError {
    fn runtime(what: &'static str, e: wasmtime::Error) -> Self {
        PluginError::Runtime { what, reason: message(&e) }
    }

    fn compile(plugin: &str, e: wasmtime::Error) -> Self {
        PluginError::Compile { plugin: plugin.into(), reason: message(&e) }
    }
}

/// A wasmtime error on one line: its chain of causes, without backtraces.
fn message(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or_default().trim().to_string();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

/// What a plugin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub kind: Kind,
    /// As the plugin reports it.
    pub version: String,
    pub description: String,
    /// `builtin:<name>` or the file path.
    pub source: String,
}

/// Call figures of one plugin since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginStats {
    pub calls: u64,
    /// Errors the plugin returned.
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub memory_refusals: u64,
    pub instantiations: u64,
    pub instances_live: u64,
    pub instances_idle: u64,
    pub mean: Duration,
    pub max: Duration,
}

/// How long loading took, for start-up figures.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub total: Duration,
    pub compiled: usize,
    pub cached: usize,
}

/// Every loaded plugin, by kind and name.
pub struct Plugins {
    runtime: Arc<Runtime>,
    selectors: BTreeMap<String, Entry<NodeSelector>>,
    strategies: BTreeMap<String, Entry<ReplicationStrategy>>,
    indexes: BTreeMap<String, Entry<IndexType>>,
    report: LoadReport,
}

/// One plugin by name: the loaded component, replaced whole by a reload.
/// A call holds the `Arc` it started with, so a call in flight finishes on
/// the old component while new calls go to the new one.
struct Entry<T> {
    current: RwLock<Arc<T>>,
    /// Set for a component read from a file: what a reload needs.
    file: Option<FileSource>,
}

struct FileSource {
    path: PathBuf,
    config: Vec<(String, String)>,
    limits: pool::Limits,
    /// SHA-256 of the bytes loaded, so an unchanged file is not reloaded.
    digest: Mutex<[u8; 32]>,
}

impl<T> Entry<T> {
    fn get(&self) -> Arc<T> {
        self.current.read().expect("plugin entry").clone()
    }
}

/// What a reload did to one plugin read from a file.
#[derive(Debug)]
pub struct Reloaded {
    pub name: String,
    pub kind: Kind,
    /// The version now serving calls, or why the new file was refused
    /// (the old component stays).
    pub outcome: Result<String, PluginError>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").field("plugins", &self.list().len()).finish()
    }
}

/// A source of component bytes: embedded, or read from a file.
enum Source {
    Builtin(&'static Builtin),
    File(PathBuf),
}

/// A loaded plugin of any kind.
enum AnyPlugin {
    Selector(NodeSelector),
    Strategy(ReplicationStrategy),
    Index(IndexType),
}

impl Plugins {
    /// Load the built-ins and every `[[plugins]]` table. Any failure (a file
    /// that is not a component, a component of the wrong kind, an init that
    /// refuses its config) stops the load with an error naming the plugin.
    pub fn load(config: &Config) -> Result<Self, PluginError> {
        let runtime = Arc::new(Runtime::new(Some(config.plugin_cache_dir()))?);
        let mut plugins = Plugins {
            runtime: runtime.clone(),
            selectors: BTreeMap::new(),
            strategies: BTreeMap::new(),
            indexes: BTreeMap::new(),
            report: LoadReport::default(),
        };
        let started = Instant::now();
        let defaults = pool::Limits {
            call_timeout: config.wasm.call_timeout,
            memory: config.wasm.memory_limit.0 as usize,
            max_instances: config.wasm.max_instances,
        };
        for builtin in BUILTINS.iter().filter(|b| loaded_by_default(b)) {
            if config.plugins.iter().any(|p| p.name == builtin.name) {
                continue; // declared below with its own settings (validated to be this built-in)
            }
            plugins.add(builtin.name, builtin.kind, Source::Builtin(builtin), Vec::new(), defaults)?;
        }
        for decl in &config.plugins {
            if BUILTINS.iter().any(|b| b.name == decl.name) && decl.builtin.as_deref() != Some(&decl.name) {
                return Err(PluginError::NameTaken { plugin: decl.name.clone() });
            }
            let source = match (&decl.builtin, &decl.path) {
                (Some(name), _) => {
                    let b = BUILTINS.iter().find(|b| b.name == name).ok_or_else(|| PluginError::UnknownBuiltin {
                        name: name.clone(),
                        known: BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", "),
                    })?;
                    if b.kind != decl.kind.into() {
                        return Err(PluginError::BuiltinKind {
                            plugin: decl.name.clone(),
                            builtin: name.clone(),
                            actual: b.kind,
                            declared: decl.kind.into(),
                        });
                    }
                    Source::Builtin(b)
                }
                (None, Some(path)) => Source::File(path.clone()),
                (None, None) => unreachable!("config validation requires builtin or path"),
            };
            let limits = pool::Limits {
                call_timeout: decl.call_timeout.unwrap_or(defaults.call_timeout),
                memory: decl.memory_limit.map_or(defaults.memory, |m| m.0 as usize),
                ..defaults
            };
            plugins.add(&decl.name, decl.kind.into(), source, flatten_config(decl), limits)?;
        }
        plugins.report.total = started.elapsed();
        drop(runtime);
        Ok(plugins)
    }

    fn add(
        &mut self,
        name: &str,
        kind: Kind,
        source: Source,
        config: Vec<(String, String)>,
        limits: pool::Limits,
    ) -> Result<(), PluginError> {
        let (wasm, label, path): (std::borrow::Cow<'static, [u8]>, String, Option<PathBuf>) = match source {
            Source::Builtin(b) => (b.wasm.into(), format!("builtin:{}", b.name), None),
            Source::File(path) => {
                let bytes = std::fs::read(&path).map_err(|e| PluginError::Read { plugin: name.into(), path: path.clone(), source: e })?;
                (bytes.into(), path.display().to_string(), Some(path))
            }
        };
        let (plugin, how) = build(&self.runtime, name, kind, &wasm, label, config.clone(), limits)?;
        match how {
            Compiled::Cached => self.report.cached += 1,
            Compiled::Fresh => self.report.compiled += 1,
        }
        let file = path.map(|path| FileSource { path, config, limits, digest: Mutex::new(sha256(&wasm)) });
        match plugin {
            AnyPlugin::Selector(p) => {
                self.selectors.insert(name.into(), Entry { current: RwLock::new(Arc::new(p)), file });
            }
            AnyPlugin::Strategy(p) => {
                self.strategies.insert(name.into(), Entry { current: RwLock::new(Arc::new(p)), file });
            }
            AnyPlugin::Index(p) => {
                self.indexes.insert(name.into(), Entry { current: RwLock::new(Arc::new(p)), file });
            }
        };
        Ok(())
    }

    /// Reads every plugin file again and replaces the plugins whose bytes
    /// changed. A new component is compiled, instantiated and initialised
    /// before it replaces the old one; one that fails any of that is
    /// refused and the old one keeps serving. Calls in flight finish on
    /// the component they started on. Built-ins never change.
    pub fn reload(&self) -> Vec<Reloaded> {
        fn each<T>(
            runtime: &Runtime,
            kind: Kind,
            map: &BTreeMap<String, Entry<T>>,
            unwrap: fn(AnyPlugin) -> Option<T>,
            version: fn(&T) -> String,
            out: &mut Vec<Reloaded>,
        ) {
            for (name, entry) in map {
                let Some(file) = &entry.file else { continue };
                let outcome = (|| {
                    let wasm = std::fs::read(&file.path).map_err(|e| PluginError::Read {
                        plugin: name.clone(),
                        path: file.path.clone(),
                        source: e,
                    })?;
                    let digest = sha256(&wasm);
                    if *file.digest.lock().expect("digest") == digest {
                        return Ok(None);
                    }
                    let label = file.path.display().to_string();
                    let (plugin, _) = build(runtime, name, kind, &wasm, label, file.config.clone(), file.limits)?;
                    let plugin = unwrap(plugin).expect("build makes the kind asked for");
                    let v = version(&plugin);
                    *entry.current.write().expect("plugin entry") = Arc::new(plugin);
                    *file.digest.lock().expect("digest") = digest;
                    Ok(Some(v))
                })();
                match outcome {
                    Ok(None) => {}
                    Ok(Some(v)) => out.push(Reloaded { name: name.clone(), kind, outcome: Ok(v) }),
                    Err(e) => out.push(Reloaded { name: name.clone(), kind, outcome: Err(e) }),
                }
            }
        }
        let mut out = Vec::new();
        let rt = &self.runtime;
        each(
            rt,
            Kind::NodeSelector,
            &self.selectors,
            |p| if let AnyPlugin::Selector(p) = p { Some(p) } else { None },
            |p| p.info().version.clone(),
            &mut out,
        );
        each(
            rt,
            Kind::ReplicationStrategy,
            &self.strategies,
            |p| if let AnyPlugin::Strategy(p) = p { Some(p) } else { None },
            |p| p.info().version.clone(),
            &mut out,
        );
        each(
            rt,
            Kind::IndexType,
            &self.indexes,
            |p| if let AnyPlugin::Index(p) = p { Some(p) } else { None },
            |p| p.info().version.clone(),
            &mut out,
        );
        out
    }

    pub fn selector(&self, name: &str) -> Result<Arc<NodeSelector>, PluginError> {
        self.selectors.get(name).map(Entry::get).ok_or_else(|| PluginError::NotFound { name: name.into(), kind: Kind::NodeSelector })
    }

    pub fn strategy(&self, name: &str) -> Result<Arc<ReplicationStrategy>, PluginError> {
        self.strategies
            .get(name)
            .map(Entry::get)
            .ok_or_else(|| PluginError::NotFound { name: name.into(), kind: Kind::ReplicationStrategy })
    }

    pub fn index(&self, name: &str) -> Result<Arc<IndexType>, PluginError> {
        self.indexes.get(name).map(Entry::get).ok_or_else(|| PluginError::NotFound { name: name.into(), kind: Kind::IndexType })
    }

    /// Every plugin with its call figures, by kind then name. A reloaded
    /// plugin's figures start again from its reload.
    pub fn list(&self) -> Vec<(PluginInfo, PluginStats)> {
        let mut all = Vec::new();
        all.extend(self.selectors.values().map(|e| e.get()).map(|p| (p.info().clone(), p.stats())));
        all.extend(self.strategies.values().map(|e| e.get()).map(|p| (p.info().clone(), p.stats())));
        all.extend(self.indexes.values().map(|e| e.get()).map(|p| (p.info().clone(), p.stats())));
        all
    }

    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }
}

/// Compiles (or takes from the cache), links, instantiates and initialises
/// one component as a plugin of `kind`.
fn build(
    runtime: &Runtime,
    name: &str,
    kind: Kind,
    wasm: &[u8],
    label: String,
    config: Vec<(String, String)>,
    limits: pool::Limits,
) -> Result<(AnyPlugin, Compiled), PluginError> {
    let (component, how, _) = runtime.component(name, wasm)?;
    let plugin = match kind {
        Kind::NodeSelector => AnyPlugin::Selector(NodeSelector::load(runtime, name, label, &component, config, limits)?),
        Kind::ReplicationStrategy => AnyPlugin::Strategy(ReplicationStrategy::load(runtime, name, label, &component, config, limits)?),
        Kind::IndexType => AnyPlugin::Index(IndexType::load(runtime, name, label, &component, config, limits)?),
    };
    Ok((plugin, how))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// `{a = {b = 1}, c = "x", d = [1, 2]}` becomes `a.b = "1"`, `c = "x"`,
/// `d = "[1,2]"`: every language can read string pairs.
fn flatten_config(decl: &PluginDecl) -> Vec<(String, String)> {
    fn walk(prefix: &str, map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<(String, String)>) {
        for (k, v) in map {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                serde_json::Value::Object(inner) => walk(&key, inner, out),
                serde_json::Value::String(s) => out.push((key, s.clone())),
                other => out.push((key, other.to_string())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", &decl.config, &mut out);
    out
}

#[cfg(test)]
mod tests;
