//! What a plugin instance's store holds, and the host side of its imports:
//! logging, the topology resource, a locked-down WASI, and the memory cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::selector::strata::plugin::{log, topology};
use super::bindings::types::NodeInfo;

/// The cluster's nodes as plugins see them. Cheap to clone; each new one has
/// a fresh generation, which lets plugins cache the node list between calls.
#[derive(Clone, Debug)]
pub struct Topology(Arc<TopologyData>);

#[derive(Debug)]
struct TopologyData {
    generation: u64,
    nodes: Vec<NodeInfo>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Topology {
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        Self(Arc::new(TopologyData { generation, nodes }))
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.0.nodes
    }

    pub fn generation(&self) -> u64 {
        self.0.generation
    }
}

/// Tables, memories and instances one store may hold: generous for any
/// language runtime (Python needs dozens of core instances), bounded for a
/// runaway one.
const MAX_TABLE_ELEMENTS: usize = 100_000;
const MAX_INSTANCES: usize = 256;
const MAX_MEMORIES: usize = 64;
const MAX_TABLES: usize = 256;

pub struct State {
    plugin: Arc<str>,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    memory_limit: usize,
    /// Bytes of linear memory across all of the instance's memories.
    memory_used: usize,
    /// Set when a memory grow was refused, so the trap that follows is
    /// reported as the memory cap and not as a plain trap.
    pub(super) memory_refused: bool,
}

impl State {
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> Self {
        // No directories, environment, arguments or sockets; a frozen clock.
        // Guests see WASI only because language runtimes need it to start.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        Self { plugin, wasi, table: ResourceTable::new(), memory_limit, memory_used: 0, memory_refused: false }
    }
}

/// A clock stuck at the epoch: plugins must not depend on time, and this
/// keeps their answers reproducible.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ResourceLimiter for State {
    /// The cap covers every memory of the instance together (a component
    /// may have several).
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if total > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) -> Result<()> {
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl topology::Host for State {}

impl topology::HostTopology for State {
    fn generation(&mut self, this: Resource<Topology>) -> Result<u64> {
        Ok(self.table.get(&this)?.generation())
    }

    fn nodes(&mut self, this: Resource<Topology>) -> Result<Vec<NodeInfo>> {
        Ok(self.table.get(&this)?.nodes().to_vec())
    }

    fn drop(&mut self, this: Resource<Topology>) -> Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
