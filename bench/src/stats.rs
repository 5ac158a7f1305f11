//! Latency samples and their percentiles.

use std::time::Duration;

/// Collected latencies.
#[derive(Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Adds many.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The q-quantile (0.5, 0.99) in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let idx = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[idx].as_secs_f64() * 1000.0
    }
}
