//! A hybrid logical clock: milliseconds since the epoch in the high bits, a
//! counter in the low 16. Stamps grow strictly on this node even if the wall
//! clock steps back, and stay close to real time so that stamps from
//! different nodes order writes sensibly (the node id breaks ties).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Clock {
    last: Mutex<u64>,
}

impl Clock {
    /// `last` is the highest stamp already persisted.
    pub fn new(last: u64) -> Self {
        Self { last: Mutex::new(last) }
    }

    pub fn now(&self) -> u64 {
        let wall = (now_ms() as u64) << 16;
        let mut last = self.last.lock().expect("clock lock");
        *last = wall.max(*last + 1);
        *last
    }

    /// The last stamp given or seen, without taking a new one.
    pub fn peek(&self) -> u64 {
        *self.last.lock().expect("clock lock")
    }

    /// Moves the clock past a stamp seen from another node, so that this
    /// node's next write orders after it.
    pub fn observe(&self, stamp: u64) {
        let mut last = self.last.lock().expect("clock lock");
        *last = (*last).max(stamp);
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_grow_even_past_the_wall_clock() {
        let far = ((now_ms() as u64) + 60_000) << 16;
        let c = Clock::new(far);
        let a = c.now();
        let b = c.now();
        assert!(a > far && b > a);
    }
}
