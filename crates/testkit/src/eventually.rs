//! `assert_eventually!`: wait for a condition instead of sleeping.

use std::time::Duration;

/// How often `assert_eventually!` re-evaluates its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// `assert_eventually!` as a function for helpers that report a timeout as
/// an error rather than a panic: calls `check` every [`POLL_INTERVAL`]
/// until it gives `Some`, for at most `timeout`; `None` if it never did.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Re-evaluates a boolean condition every [`POLL_INTERVAL`] until it holds,
/// or panics with the given message once `timeout` has passed.
///
/// Use it inside an `async` function or block: it awaits between polls. The
/// condition is pasted into that async context and evaluated afresh each
/// time, so it may itself contain `.await`:
///
/// ```text
/// assert_eventually!(
///     store.get("/k").await.unwrap().is_some(),
///     Duration::from_secs(10),
///     "key {} never appeared", "/k"
/// );
/// ```
///
/// The clock is tokio's, so it works under `start_paused = true`. The bound
/// is a guard against hangs, not a performance assertion: make it generous.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::assert_eventually!($cond, $timeout, "{}", stringify!($cond))
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = $crate::__private::Instant::now() + timeout;
        loop {
            if $cond {
                break;
            }
            if $crate::__private::Instant::now() >= deadline {
                panic!(
                    "condition not met within {:?}: {}",
                    timeout,
                    format_args!($($msg)+)
                );
            }
            $crate::__private::sleep($crate::POLL_INTERVAL).await;
        }
    }};
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    async fn bump(counter: &AtomicUsize) -> usize {
        counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    #[tokio::test(start_paused = true)]
    async fn passes_once_an_async_condition_holds() {
        let counter = Arc::new(AtomicUsize::new(0));
        assert_eventually!(bump(&counter).await >= 5, Duration::from_secs(1), "never 5");
        assert_eq!(counter.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn sync_condition_without_message() {
        let ready = true;
        assert_eventually!(ready, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "condition not met within 1s: still 7")]
    async fn panics_with_the_message_after_the_timeout() {
        let value = 7;
        assert_eventually!(value == 8, Duration::from_secs(1), "still {}", value);
    }
}
