//! [`Backoff`]: how long to wait before trying again after failures.

use std::time::Duration;

/// Capped exponential backoff: `min` after the first failure, twice as
/// long after each further one, never more than `max`; back to `min` once
/// something works.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// Starts at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// One more failure: how long to wait before trying again.
    pub fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Something worked: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Backoff::new(min, max);
        let delays: Vec<_> = (0..8).map(|_| b.failed()).collect();
        assert_eq!(delays[0], min);
        assert_eq!(delays[1], min * 2);
        assert_eq!(*delays.last().unwrap(), max);
        b.reset();
        assert_eq!(b.failed(), min);
    }
}
