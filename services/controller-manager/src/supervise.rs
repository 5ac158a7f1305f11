//! Keeps the controllers running: when one of them panics, the others are
//! stopped and all start afresh (new caches, new queues) after a pause. A
//! controller that panicked must not stay dead while this process keeps
//! the leader lease, which would stop a standby from taking over.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs the tasks `start` spawns (each ending when its token is cancelled)
/// until `shutdown`; after a panic, stops the rest and calls `start` again
/// once `pause` has passed.
pub async fn supervise(
    shutdown: CancellationToken,
    pause: Duration,
    mut start: impl FnMut(CancellationToken) -> JoinSet<()>,
) {
    loop {
        let term = shutdown.child_token();
        let mut tasks = start(term.clone());
        let mut panicked = false;
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done
                && error.is_panic()
                && !panicked
            {
                tracing::error!(%error, ?pause, "a controller panicked; stopping the others and starting them all again");
                panicked = true;
                term.cancel();
            }
        }
        if !panicked {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Two tasks: one waits for its token, the other panics at the starts
    /// listed in `panics` and waits otherwise.
    fn tasks(
        starts: &Arc<AtomicUsize>,
        stopped: &Arc<AtomicUsize>,
        panics: &'static [usize],
    ) -> impl FnMut(CancellationToken) -> JoinSet<()> + use<> {
        let (starts, stopped) = (starts.clone(), stopped.clone());
        move |term| {
            let n = starts.fetch_add(1, Ordering::SeqCst);
            let mut set = JoinSet::new();
            let (t, s) = (term.clone(), stopped.clone());
            set.spawn(async move {
                t.cancelled().await;
                s.fetch_add(1, Ordering::SeqCst);
            });
            set.spawn(async move {
                assert!(!panics.contains(&n), "controller bug at start {n}");
                term.cancelled().await;
            });
            set
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_stops_the_others_and_starts_them_all_again() {
        let (starts, stopped) = (Arc::default(), Arc::default());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(supervise(
            shutdown.clone(),
            Duration::from_secs(1),
            tasks(&starts, &stopped, &[0, 1]),
        ));
        // Two crashes, two pauses, then a third start that stays up.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "started again after each panic"
        );
        assert_eq!(
            stopped.load(Ordering::SeqCst),
            2,
            "the others were stopped each time"
        );
        shutdown.cancel();
        run.await.expect("the supervisor ends on shutdown");
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "not started after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_panic_it_runs_once_until_shutdown() {
        let (starts, stopped) = (Arc::default(), Arc::default());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(supervise(
            shutdown.clone(),
            Duration::from_secs(1),
            tasks(&starts, &stopped, &[]),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        shutdown.cancel();
        run.await.expect("the supervisor ends on shutdown");
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
    }
}
