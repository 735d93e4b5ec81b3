//! End-to-end tests: each starts the real `strata` binary on an ephemeral
//! loopback port with a real SQLite file in a temp dir.

mod common;

mod batch;
mod cli;
mod cluster;
mod faults;
mod config;
mod corruption;
mod crash;
mod durability;
mod fsck;
mod full_disk;
mod node_faults;
mod indexes;
mod input;
mod objects;
mod plugins;
mod proxy;
mod quota;
mod replication;
mod request_ids;
mod search;
mod storage_options;
mod versions;
