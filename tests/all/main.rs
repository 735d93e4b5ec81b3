//! End-to-end tests: each starts the real `strata` binary on an ephemeral
//! loopback port with a real SQLite file in a temp dir.

mod common;

mod backup;
mod batch;
mod cli;
mod cluster;
mod conditional;
mod config;
mod corruption;
mod crash;
mod durability;
mod entropy_damage;
mod faults;
mod fsck;
mod full_disk;
mod indexes;
mod input;
mod models;
mod monitor;
mod moto;
mod namespace;
mod node_faults;
mod objects;
mod plugins;
mod proxy;
mod quota;
mod registry;
mod replication;
mod request_ids;
mod s3;
mod search;
mod shutdown;
mod siblings;
mod storage_options;
mod tiers;
mod tls;
mod tokens;
mod versions;
