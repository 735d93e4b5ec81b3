//! One loaded plugin: its pre-linked component and a pool of ready
//! instances. Calls take an idle instance (or start one, up to the cap), run
//! under a deadline and a memory cap, and give it back; an instance whose
//! call failed in any way is dropped, and the next call starts a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::engine::Runtime;
use super::state::State;
use super::{Kind, PluginError, PluginInfo, PluginStats};

/// What the generated bindings of one world give the pool.
pub trait World: Sized + Send + 'static {
    const KIND: Kind;
    /// Exports the world requires, for the error naming what a component lacks.
    const EXPORTS: &'static [&'static str];
    type Pre: Send + Sync;

    fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<State>) -> wasmtime::Result<Self>;
    fn info(&self, store: &mut Store<State>) -> wasmtime::Result<(String, String, String)>;
    fn init(&self, store: &mut Store<State>, config: &[(String, String)]) -> wasmtime::Result<Result<(), String>>;
}

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub call_timeout: Duration,
    pub memory: usize,
    pub max_instances: usize,
}

struct Slot<W> {
    store: Store<State>,
    world: W,
}

pub struct Plugin<W: World> {
    pub(super) info: PluginInfo,
    engine: wasmtime::Engine,
    pre: W::Pre,
    config: Vec<(String, String)>,
    limits: Limits,
    idle: Mutex<Pool<W>>,
    freed: Condvar,
    stats: Counters,
}

struct Pool<W> {
    idle: Vec<Slot<W>>,
    live: usize,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory_refusals: AtomicU64,
    instantiations: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl<W: World> Plugin<W> {
    /// Link `component` as a `W`, start one instance (which checks `init`
    /// accepts the config) and report what the plugin says about itself.
    pub fn load(
        runtime: &Runtime,
        name: &str,
        source: String,
        component: &wasmtime::component::Component,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let exports: Vec<String> = component.component_type().exports(&runtime.engine).map(|(n, _)| n.to_string()).collect();
        let missing: Vec<&str> = W::EXPORTS.iter().copied().filter(|e| !exports.iter().any(|x| x == e)).collect();
        if !missing.is_empty() {
            return Err(PluginError::WrongWorld {
                plugin: name.into(),
                kind: W::KIND,
                missing: missing.join(", "),
                exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
            });
        }
        let pre =
            runtime.linker.instantiate_pre(component).map_err(|e| PluginError::Link { plugin: name.into(), reason: super::message(&e) })?;
        let pre = W::pre(pre).map_err(|e| PluginError::Link { plugin: name.into(), reason: super::message(&e) })?;
        let mut plugin = Self {
            info: PluginInfo { name: name.into(), kind: W::KIND, version: String::new(), description: String::new(), source },
            engine: runtime.engine.clone(),
            pre,
            config,
            limits,
            idle: Mutex::new(Pool { idle: Vec::new(), live: 0 }),
            freed: Condvar::new(),
            stats: Counters::default(),
        };
        let (_, version, description) = plugin.call(|w, store| w.info(store))?;
        plugin.info.version = version;
        plugin.info.description = description;
        Ok(plugin)
    }

    /// Run `f` on an instance under the plugin's limits.
    pub fn call<R>(&self, f: impl FnOnce(&W, &mut Store<State>) -> wasmtime::Result<R>) -> Result<R, PluginError> {
        let mut slot = self.checkout()?;
        // Should `f` panic, the instance's place is freed all the same.
        let guard = Discard(self);
        slot.store.set_epoch_deadline(Runtime::deadline_ticks(self.limits.call_timeout));
        slot.store.data_mut().memory_refused = false;
        let started = Instant::now();
        let result = f(&slot.world, &mut slot.store);
        std::mem::forget(guard);
        let ns = started.elapsed().as_nanos() as u64;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.stats.max_ns.fetch_max(ns, Ordering::Relaxed);
        metrics::histogram!("strata_plugin_call_duration_seconds", "plugin" => self.info.name.clone()).record(ns as f64 / 1e9);
        match result {
            Ok(r) => {
                self.checkin(slot);
                Ok(r)
            }
            Err(e) => {
                let err = self.failure(e, &slot.store);
                self.discard();
                Err(err)
            }
        }
    }

    /// Count a plugin-reported error (the call itself went fine).
    pub fn count_error(&self) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PluginStats {
        let calls = self.stats.calls.load(Ordering::Relaxed);
        let pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        PluginStats {
            calls,
            errors: self.stats.errors.load(Ordering::Relaxed),
            traps: self.stats.traps.load(Ordering::Relaxed),
            timeouts: self.stats.timeouts.load(Ordering::Relaxed),
            memory_refusals: self.stats.memory_refusals.load(Ordering::Relaxed),
            instantiations: self.stats.instantiations.load(Ordering::Relaxed),
            instances_live: pool.live as u64,
            instances_idle: pool.idle.len() as u64,
            mean: Duration::from_nanos(self.stats.total_ns.load(Ordering::Relaxed) / calls.max(1)),
            max: Duration::from_nanos(self.stats.max_ns.load(Ordering::Relaxed)),
        }
    }

    /// Start a fresh instance now (for the instantiation benchmark).
    pub fn instantiate_fresh(&self) -> Result<Duration, PluginError> {
        let started = Instant::now();
        let slot = self.instantiate()?;
        let took = started.elapsed();
        drop(slot);
        Ok(took)
    }

    fn checkout(&self) -> Result<Slot<W>, PluginError> {
        // Every running call ends within its deadline, so a wait longer than
        // a few deadlines means the plugin is saturated: say so.
        let patience = self.limits.call_timeout * 4;
        let until = Instant::now() + patience;
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(slot) = pool.idle.pop() {
                return Ok(slot);
            }
            if pool.live < self.limits.max_instances {
                pool.live += 1;
                drop(pool);
                return self.instantiate().inspect_err(|_| self.discard());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PluginError::Busy { plugin: self.info.name.clone(), instances: self.limits.max_instances, waited: patience });
            }
            pool = self.freed.wait_timeout(pool, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn checkin(&self, slot: Slot<W>) {
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        pool.idle.push(slot);
        self.freed.notify_one();
    }

    /// An instance is gone (failed, or failed to start): free its place.
    fn discard(&self) {
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        pool.live -= 1;
        self.freed.notify_one();
    }

    fn instantiate(&self) -> Result<Slot<W>, PluginError> {
        self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        let state = State::new(self.info.name.as_str().into(), self.limits.memory);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.set_epoch_deadline(Runtime::deadline_ticks(self.limits.call_timeout));
        let world = match W::instantiate(&self.pre, &mut store) {
            Ok(w) => w,
            Err(e) => return Err(self.failure(e, &store)),
        };
        store.set_epoch_deadline(Runtime::deadline_ticks(self.limits.call_timeout));
        match world.init(&mut store, &self.config) {
            Ok(Ok(())) => Ok(Slot { store, world }),
            Ok(Err(reason)) => Err(PluginError::Init { plugin: self.info.name.clone(), reason }),
            Err(e) => Err(self.failure(e, &store)),
        }
    }

    /// Name what stopped a call: the deadline, the memory cap, or a trap.
    fn failure(&self, e: wasmtime::Error, store: &Store<State>) -> PluginError {
        let plugin = self.info.name.clone();
        if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            return PluginError::Timeout { plugin, limit: self.limits.call_timeout };
        }
        if store.data().memory_refused {
            self.stats.memory_refusals.fetch_add(1, Ordering::Relaxed);
            return PluginError::MemoryLimit { plugin, limit: self.limits.memory as u64 };
        }
        self.stats.traps.fetch_add(1, Ordering::Relaxed);
        PluginError::Trap { plugin, reason: super::message(&e) }
    }
}

/// Frees an instance's place in the pool when dropped (unless forgotten).
struct Discard<'a, W: World>(&'a Plugin<W>);

impl<W: World> Drop for Discard<'_, W> {
    fn drop(&mut self) {
        self.0.discard();
    }
}

impl<W: World> std::fmt::Debug for Plugin<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).finish_non_exhaustive()
    }
}
