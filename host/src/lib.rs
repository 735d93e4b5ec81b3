//! Strata: a distributed, content-addressed storage server whose policies
//! are WebAssembly plugins. This crate is the host: every I/O path lives here.
//!
//! # Layout (bottom up; a layer never imports one above it)
//! - [`config`]: the TOML/env configuration tree.
//! - [`store`]: content-addressed blob files: streaming, verification,
//!   compression, encryption, quota, quarantine.
//! - [`meta`]: the SQLite metadata store behind one facade.
//! - [`objects`]: the two stores as one: group commit, GC, scrub.
//! - [`cluster`]: membership, consensus, failure detection, locks.
//! - [`replication`]: placing, copying and reading versions across nodes.
//! - [`service`]: the object service every front end calls, one node or a cluster.
//! - [`api`]: the `strata.v1` gRPC service.
//! - [`server`]: wiring and lifecycle.
//! - [`cli`]: the `strata` command.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod failpoints;
pub mod meta;
pub mod metrics;
pub mod objects;
pub mod plugin;
pub mod replication;
pub mod search;
pub mod server;
pub mod service;
pub mod store;
