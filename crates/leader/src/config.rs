//! What an election is about and how fast it moves.

use std::time::Duration;

/// One candidate's view of one election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Namespace of the Lease object.
    pub namespace: String,
    /// Name of the Lease object, e.g. "moor-scheduler".
    pub name: String,
    /// This candidate's identity, unique among candidates.
    pub identity: String,
    /// How long a lease is valid after its last renewal (others wait this
    /// long without seeing a change before taking it).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before stepping down; less
    /// than `lease_duration`, so it steps down before others may take over.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
    /// On shutdown, give the lease up at once so a standby takes over
    /// without waiting for it to expire.
    pub release_on_cancel: bool,
}

// === impl Config ===

impl Config {
    /// Kubernetes' defaults (15 s lease, 10 s renew deadline, 2 s retry),
    /// in namespace `moor-system`, releasing on shutdown.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: "moor-system".to_string(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }

    /// The lease duration in whole seconds as the Lease stores it (at least 1).
    pub(crate) fn lease_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs_f64().ceil().max(1.0);
        if secs > f64::from(i32::MAX) {
            i32::MAX
        } else {
            // In range and integral after the checks above.
            #[allow(clippy::cast_possible_truncation)]
            let s = secs as i32;
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubernetes_and_seconds_round_up() {
        let mut c = Config::new("sched", "a");
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert_eq!(c.lease_seconds(), 15);
        c.lease_duration = Duration::from_millis(1500);
        assert_eq!(c.lease_seconds(), 2);
        c.lease_duration = Duration::from_millis(10);
        assert_eq!(c.lease_seconds(), 1);
    }
}
