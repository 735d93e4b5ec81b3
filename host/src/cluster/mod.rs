//! The cluster control plane: Raft (openraft) over the cluster state.
//!
//! Work in progress on branch `issue6-wip`: the Raft types, a SQLite log
//! store and a SQLite-persisted state machine, checked by openraft's own
//! storage conformance suite. Nothing here is wired into the server yet.

pub mod log_store;
pub mod network;
pub mod node;
pub mod secret;
pub mod state;
pub mod types;

#[cfg(test)]
mod tests;
