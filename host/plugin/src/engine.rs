//! The one wasmtime engine: its configuration, the epoch ticker that bounds
//! every call, the linker with the host's imports, and the on-disk cache of
//! compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, OptLevel};

use super::PluginError;
use super::bindings::selector::strata::plugin::{log, topology};
use super::state::State;

/// Epoch tick: the granularity of call deadlines.
pub const TICK: Duration = Duration::from_millis(1);

pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<AtomicBool>,
}

/// How a component was obtained, for start-up figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Loaded precompiled from the cache.
    Cached,
    /// Compiled now (and cached when there is a cache).
    Fresh,
}

impl Runtime {
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| PluginError::runtime("creating the engine", e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| forbid_sleep(&mut linker))
            .and_then(|()| log::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s))
            .and_then(|()| topology::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s))
            .map_err(|e| PluginError::runtime("linking host imports", e))?;
        // A cache that cannot be made costs start-up time, not service.
        let cache_dir = cache_dir.filter(|dir| match std::fs::create_dir_all(dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "plugin cache unusable, compiling at every start: {e}");
                false
            }
        });
        let ticker = Arc::new(AtomicBool::new(true));
        let (running, ticking) = (ticker.clone(), engine.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while running.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| PluginError::runtime("starting the epoch ticker", e.into()))?;
        Ok(Self { engine, linker, cache_dir, ticker })
    }

    /// Epoch ticks that cover `timeout` (plus one: the current tick may be
    /// nearly over).
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        (timeout.as_micros() / TICK.as_micros()).max(1) as u64 + 1
    }

    /// The component for `wasm`, from the cache when it holds one compiled by
    /// this engine, else compiled now and cached.
    pub fn component(&self, plugin: &str, wasm: &[u8]) -> Result<(Component, Compiled, Duration), PluginError> {
        let started = Instant::now();
        let Some(dir) = &self.cache_dir else {
            let c = Component::new(&self.engine, wasm).map_err(|e| PluginError::compile(plugin, e))?;
            return Ok((c, Compiled::Fresh, started.elapsed()));
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(wasm)));
        if path.exists() {
            // SAFETY: the file is one this engine wrote into the server's own
            // cache directory (renamed into place only once complete), and its
            // name binds the component's digest and the engine's settings.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, Compiled::Cached, started.elapsed())),
                Err(e) => tracing::warn!(plugin, path = %path.display(), "recompiling: cached component unusable: {e}"),
            }
        }
        let bytes = self.engine.precompile_component(wasm).map_err(|e| PluginError::compile(plugin, e))?;
        if let Err(e) = write_atomically(&path, &bytes) {
            tracing::warn!(plugin, path = %path.display(), "cannot cache the compiled component: {e}");
        }
        // SAFETY: as above; the bytes were produced by this engine just now.
        let c = unsafe { Component::deserialize(&self.engine, &bytes) }.map_err(|e| PluginError::compile(plugin, e))?;
        Ok((c, Compiled::Fresh, started.elapsed()))
    }

    /// The component's digest and the engine's compatibility hash (wasmtime
    /// version and settings), so an upgrade or new setting recompiles.
    fn cache_key(&self, wasm: &[u8]) -> String {
        let mut engine = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine);
        let digest = Sha256::new().chain_update(wasm).finalize();
        format!("{}-{:016x}", hex::encode(digest), engine.finish())
    }
}

/// The monotonic clock's timers, replaced so that a plugin cannot sleep:
/// epoch deadlines stop wasm code, not a wait inside a host call, so a
/// sleeping plugin would hold its thread past the deadline. A zero wait (a
/// runtime polling without blocking) is still allowed; any other traps.
fn forbid_sleep(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::clocks::WasiClocksView;
    use wasmtime_wasi::p2::DynPollable;
    use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host;

    const CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
    linker.allow_shadowing(true);
    let mut clock = linker.instance(CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store, (nanos,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
        if nanos > 0 {
            wasmtime::bail!("plugins may not sleep (asked to wait {nanos} ns)");
        }
        Ok((store.data_mut().clocks().subscribe_duration(0)?,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
        // The clock is frozen at 0: any later instant is a sleep.
        if when > 0 {
            wasmtime::bail!("plugins may not sleep (asked to wait until {when} ns)");
        }
        Ok((store.data_mut().clocks().subscribe_duration(0)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Unique per writer: two loads in one process may compile the same component.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
