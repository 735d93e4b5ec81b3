//! The client commands: each file runs one group of them on a connected client.

pub mod bucket;
pub mod cluster;
pub mod index;
pub mod lock;
pub mod models;
pub mod objects;
pub mod ollama;
pub mod plugin;
pub mod search;
pub mod server;
pub mod tier;
