//! Strata: a distributed, content-addressed storage server whose policies
//! are WebAssembly plugins. This crate is the `strata` binary: the client
//! API's front end, the server's wiring and the CLI. The layers below are
//! crates of their own under `host/`, each depending only on those below
//! it (bottom up):
//!
//! - [`config`]: the TOML/env configuration tree.
//! - [`store`]: content-addressed blob files: streaming, verification,
//!   compression, encryption, quota, quarantine.
//! - [`meta`]: the SQLite metadata store behind one facade.
//! - [`objects`]: the two stores as one: group commit, GC, scrub.
//! - [`plugin`]: the wasmtime host and the built-in plugins.
//! - [`search`]: the query language, planner and index maintenance.
//! - [`cluster`]: membership, consensus, failure detection, locks.
//! - [`replication`]: placing, copying and reading versions across nodes.
//! - [`service`]: the object service every front end calls, one node or a cluster.
//! - [`registry`]: the OCI distribution endpoint, a front end over the service.
//!
//! They are re-exported here under their layer's name.

pub use strata_cluster as cluster;
pub use strata_config as config;
pub use strata_meta as meta;
pub use strata_objects as objects;
pub use strata_objects::metrics;
pub use strata_plugin as plugin;
pub use strata_registry as registry;
pub use strata_remote as remote;
pub use strata_replication as replication;
pub use strata_s3 as s3;
pub use strata_search as search;
pub use strata_service as service;
pub use strata_store as store;

pub mod api;
pub mod cli;
pub mod cluster_backup;
pub mod connections;
pub mod cut;
pub mod failpoints;
pub mod monitor;
pub mod reload;
pub mod server;
pub mod tls;
