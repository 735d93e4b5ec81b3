//! Failure detection from heartbeats: every node sends one to every member
//! each `heartbeat_interval`; a member silent for `suspect_after` is
//! suspect, for `down_after` down, and healthy again at its next beat.
//! Changes are broadcast as events (repair will subscribe) and logged.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{info, warn};

/// What a heartbeat carries: the figures node selection weighs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    pub from: u64,
    /// How busy the node's machine is, 0.0 (idle) to 1.0 (saturated): the
    /// one-minute load average per CPU.
    pub load: f64,
    /// Client operations per second since the previous beat.
    pub ops: f64,
    pub used: u64,
    pub capacity: u64,
    /// The sender's Raft term and last applied log index.
    pub term: u64,
    pub applied: u64,
    /// The sender's version clock (hybrid logical clock).
    #[serde(default)]
    pub clock: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Suspect,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Suspect => "suspect",
            Health::Down => "down",
        })
    }
}

/// A member's health changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub node: u64,
    pub from: Health,
    pub to: Health,
}

/// What this node knows of a member.
#[derive(Debug, Clone)]
pub struct Seen {
    pub health: Health,
    /// Time since its last beat; `None` if none arrived since this start.
    pub silent: Option<Duration>,
    pub beat: Option<Beat>,
}

pub struct Detector {
    suspect_after: Duration,
    down_after: Duration,
    /// Members never heard from are judged from when they were first
    /// judged (a new member gets the same grace as a restarted node).
    first_judged: Mutex<HashMap<u64, Instant>>,
    beats: Mutex<HashMap<u64, (Instant, Beat)>>,
    health: Mutex<HashMap<u64, Health>>,
    events: broadcast::Sender<NodeEvent>,
}

impl Detector {
    pub fn new(suspect_after: Duration, down_after: Duration) -> Self {
        Self {
            suspect_after,
            down_after,
            first_judged: Default::default(),
            beats: Default::default(),
            health: Default::default(),
            events: broadcast::channel(256).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub fn record(&self, beat: Beat, at: Instant) {
        self.beats.lock().expect("beats").insert(beat.from, (at, beat));
    }

    /// A member's standing at `now`.
    pub fn seen(&self, node: u64, now: Instant) -> Seen {
        let beats = self.beats.lock().expect("beats");
        let last = beats.get(&node);
        let since = match last {
            Some((at, _)) => *at,
            None => *self.first_judged.lock().expect("first judged").get(&node).unwrap_or(&now),
        };
        let silent = now.saturating_duration_since(since);
        let health = if silent >= self.down_after {
            Health::Down
        } else if silent >= self.suspect_after {
            Health::Suspect
        } else {
            Health::Healthy
        };
        Seen { health, silent: last.map(|_| silent), beat: last.map(|(_, b)| b.clone()) }
    }

    /// Judges `members` at `now`, announcing every change; forgets others.
    pub fn evaluate(&self, members: &[u64], now: Instant) -> Vec<NodeEvent> {
        let mut changes = Vec::new();
        let mut health = self.health.lock().expect("health");
        health.retain(|id, _| members.contains(id));
        self.beats.lock().expect("beats").retain(|id, _| members.contains(id));
        {
            let mut first = self.first_judged.lock().expect("first judged");
            first.retain(|id, _| members.contains(id));
            for &node in members {
                first.entry(node).or_insert(now);
            }
        }
        for &node in members {
            let to = self.seen(node, now).health;
            let from = *health.entry(node).or_insert(Health::Healthy);
            if from != to {
                health.insert(node, to);
                let e = NodeEvent { node, from, to };
                match to {
                    Health::Healthy => info!(node, %from, "node is healthy again"),
                    _ => warn!(node, %from, %to, "node state changed"),
                }
                let _ = self.events.send(e.clone());
                changes.push(e);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_never_heard_from_gets_grace_from_when_it_is_first_judged() {
        let d = Detector::new(Duration::from_millis(200), Duration::from_millis(500));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert!(d.evaluate(&[3], t0).is_empty());
        assert_eq!(d.seen(3, t0 + Duration::from_millis(100)).health, Health::Healthy);
        assert_eq!(d.evaluate(&[3], t0 + Duration::from_millis(600))[0].to, Health::Down);
    }

    #[test]
    fn silence_makes_a_node_suspect_then_down_and_a_beat_heals_it() {
        let d = Detector::new(Duration::from_millis(200), Duration::from_millis(500));
        let mut events = d.subscribe();
        let t0 = Instant::now();
        d.record(Beat { from: 7, load: 0.5, ops: 1.5, used: 10, capacity: 100, ..Default::default() }, t0);
        assert!(d.evaluate(&[7], t0 + Duration::from_millis(100)).is_empty());
        let e = d.evaluate(&[7], t0 + Duration::from_millis(250));
        assert_eq!(e, vec![NodeEvent { node: 7, from: Health::Healthy, to: Health::Suspect }]);
        let e = d.evaluate(&[7], t0 + Duration::from_millis(600));
        assert_eq!(e, vec![NodeEvent { node: 7, from: Health::Suspect, to: Health::Down }]);
        d.record(Beat { from: 7, used: 10, capacity: 100, ..Default::default() }, t0 + Duration::from_millis(700));
        let e = d.evaluate(&[7], t0 + Duration::from_millis(710));
        assert_eq!(e, vec![NodeEvent { node: 7, from: Health::Down, to: Health::Healthy }]);
        assert_eq!(events.try_recv().unwrap().to, Health::Suspect);
        assert_eq!(events.try_recv().unwrap().to, Health::Down);
        assert_eq!(events.try_recv().unwrap().to, Health::Healthy);
        let s = d.seen(7, t0 + Duration::from_millis(710));
        assert_eq!(s.silent, Some(Duration::from_millis(10)));
        assert_eq!(s.beat.unwrap().used, 10);
    }
}
