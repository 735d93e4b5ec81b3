//! The cluster control plane: Raft (openraft) over the cluster state,
//! failure detection from heartbeats, and distributed locks.
//!
//! - `types`: the Raft type configuration and the commands of the state.
//! - `log_store`, `state`: the Raft log and the state machine, in SQLite.
//! - `locks`: lease and fencing rules, applied by the state machine.
//! - `network`: Raft and the node-to-node calls over gRPC (`strata.peer.v1`).
//! - `node`: this node's membership and its background work.
//! - `ops`: writes through the leader, linearizable reads, membership
//!   changes, lock acquisition.
//! - `detector`: healthy, suspect, down.

pub mod detector;
pub mod error;
pub mod locks;
pub mod log_store;
pub mod network;
pub mod node;
pub mod ops;
pub mod secret;
pub mod state;
pub mod types;

#[cfg(test)]
mod tests;

/// Wall-clock milliseconds since the Unix epoch: the time leaders stamp
/// into lock commands and peers put in their proofs of the secret.
pub fn now_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
