//! In-process counters and latency histograms behind the `Stats` call.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Log-scale buckets: four per power of two of microseconds, up to ~1 hour.
const BUCKETS: usize = 4 * 32;

#[derive(Clone)]
struct Histogram {
    counts: [u64; BUCKETS],
    count: u64,
    errors: u64,
    total_us: u64,
}

impl Histogram {
    fn new() -> Self {
        Self { counts: [0; BUCKETS], count: 0, errors: 0, total_us: 0 }
    }

    fn bucket(us: u64) -> usize {
        if us == 0 {
            return 0;
        }
        let b = ((us as f64).log2() * 4.0) as usize + 1;
        b.min(BUCKETS - 1)
    }

    /// Upper edge of a bucket, in microseconds.
    fn edge(b: usize) -> f64 {
        if b == 0 { 1.0 } else { 2f64.powf(b as f64 / 4.0) }
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::edge(b) / 1000.0;
            }
        }
        Self::edge(BUCKETS - 1) / 1000.0
    }
}

/// Figures for one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpFigures {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Default)]
pub struct Metrics {
    ops: Mutex<BTreeMap<&'static str, Histogram>>,
    corrupt_blobs: AtomicU64,
}

impl Metrics {
    pub fn record(&self, op: &'static str, took: Duration, ok: bool) {
        let us = took.as_micros() as u64;
        let mut ops = self.ops.lock().expect("metrics lock");
        let h = ops.entry(op).or_insert_with(Histogram::new);
        h.counts[Histogram::bucket(us)] += 1;
        h.count += 1;
        h.total_us += us;
        if !ok {
            h.errors += 1;
        }
    }

    /// Operations recorded since start, all kinds together.
    pub fn total_ops(&self) -> u64 {
        self.ops.lock().expect("metrics lock").values().map(|h| h.count).sum()
    }

    pub fn corrupt_blob(&self) {
        self.corrupt_blobs.fetch_add(1, Ordering::Relaxed);
    }

    /// Corrupt blobs found since start.
    pub fn corrupt_blobs(&self) -> u64 {
        self.corrupt_blobs.load(Ordering::Relaxed)
    }

    pub fn figures(&self) -> Vec<OpFigures> {
        let ops = self.ops.lock().expect("metrics lock");
        ops.iter()
            .map(|(op, h)| OpFigures {
                op: op.to_string(),
                count: h.count,
                errors: h.errors,
                mean_ms: if h.count == 0 { 0.0 } else { h.total_us as f64 / h.count as f64 / 1000.0 },
                p50_ms: h.quantile_ms(0.5),
                p99_ms: h.quantile_ms(0.99),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let m = Metrics::default();
        for _ in 0..99 {
            m.record("get", Duration::from_micros(100), true);
        }
        m.record("get", Duration::from_millis(50), false);
        let f = &m.figures()[0];
        assert_eq!((f.count, f.errors), (100, 1));
        assert!(f.p50_ms >= 0.1 && f.p50_ms < 0.13, "{f:?}");
        assert!(f.p99_ms < 0.13, "{f:?}");
    }
}
