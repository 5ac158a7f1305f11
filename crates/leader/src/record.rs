//! Reading a Lease's record: who holds it, and whether it has expired as
//! seen by this candidate's own clock.

use std::time::Duration;

use moor_api::coordination::v1::LeaseSpec;
use tokio::time::Instant;

/// The last lease record seen, and when this candidate first saw it.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

/// What to do with the lease as just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// We hold it: renew.
    Renew,
    /// It is free or expired: take it.
    Take,
    /// Someone else holds a live lease.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides on `spec` for `identity`, updating `observed`. Expiry is judged
/// by how long the record has stayed unchanged on our clock, not by its
/// timestamps, so candidates with skewed clocks still agree.
pub(crate) fn decide(
    spec: &LeaseSpec,
    identity: &str,
    observed: &mut Option<Observed>,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let seen = match observed {
        Some(o) if o.spec == *spec => o.at,
        _ => {
            *observed = Some(Observed {
                spec: spec.clone(),
                at: now,
            });
            now
        }
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Take;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if now.duration_since(seen) >= duration {
        Decision::Take
    } else {
        Decision::Wait { holder }
    }
}

/// Notes that we wrote `spec` at `now`.
pub(crate) fn wrote(observed: &mut Option<Observed>, spec: &LeaseSpec, now: Instant) {
    *observed = Some(Observed {
        spec: spec.clone(),
        at: now,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.to_string()),
            lease_duration_seconds: Some(2),
            renew_time: Some(prost_types::Timestamp {
                seconds: renewed,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn free_lease_is_taken_and_own_lease_renewed() {
        let mut observed = None;
        let now = Instant::now();
        let d = Duration::from_secs(15);
        assert_eq!(
            decide(&LeaseSpec::default(), "a", &mut observed, now, d),
            Decision::Take
        );
        assert_eq!(
            decide(&held("a", 1), "a", &mut observed, now, d),
            Decision::Renew
        );
    }

    #[tokio::test(start_paused = true)]
    async fn others_lease_expires_only_after_it_stops_changing() {
        let mut observed = None;
        let start = Instant::now();
        let d = Duration::from_secs(15);
        let wait = Decision::Wait {
            holder: "b".to_string(),
        };
        assert_eq!(decide(&held("b", 1), "a", &mut observed, start, d), wait);
        // Renewed by b after 1.5 s: the clock restarts.
        let t1 = start + Duration::from_millis(1500);
        assert_eq!(decide(&held("b", 2), "a", &mut observed, t1, d), wait);
        let t2 = start + Duration::from_millis(3000);
        assert_eq!(decide(&held("b", 2), "a", &mut observed, t2, d), wait);
        // Unchanged for the lease's own 2 s duration: expired.
        let t3 = t1 + Duration::from_secs(2);
        assert_eq!(
            decide(&held("b", 2), "a", &mut observed, t3, d),
            Decision::Take
        );
    }
}
