//! A watch that never ends: list, then watch from the list's resourceVersion,
//! resuming from the last seen resourceVersion after any break, and
//! re-listing only when the server no longer has that history.
//!
//! Promise: after a [`Event::Restarted`], the events are exactly the changes
//! after that state, each once and in order; breaks are invisible except as
//! `Err` items (which the stream survives).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use moor_api::meta::v1::EventType;
use moor_api::{Resource, WatchEvent};

use crate::{Api, Backoff, Error, ListParams, WatchParams};

/// Shortest pause before retrying after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause before retrying after a failure.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the watcher saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// The object was created or changed.
    Applied(K),
    /// The object was deleted (its last state).
    Deleted(K),
    /// The whole current state, after the first list or a re-list: replaces
    /// everything known before.
    Restarted(Vec<K>),
}

/// Where the watcher stands.
enum State<K> {
    /// Nothing is known (at the start, or the history we had is gone): list
    /// next, after `delay`.
    Empty {
        /// Pause before listing (zero at the start).
        delay: Duration,
    },
    /// Caught up to `resource_version` by a list or an earlier watch, with
    /// no watch open: open one from there, after `delay`.
    Resuming {
        /// The last version seen.
        resource_version: String,
        /// Pause before watching (zero right after a list).
        delay: Duration,
    },
    /// A watch is open.
    Watching {
        /// The last version seen, from any event including bookmarks.
        resource_version: String,
        /// The open stream.
        stream: BoxStream<'static, Result<WatchEvent<K>, Error>>,
    },
}

/// Follows every object of `api` matching `params`, forever.
pub fn watcher<K: Resource>(
    api: Api<K>,
    params: ListParams,
) -> impl Stream<Item = Result<Event<K>, Error>> + Send + 'static {
    let start = (
        api,
        params,
        State::Empty {
            delay: Duration::ZERO,
        },
        Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
    );
    futures::stream::unfold(start, |(api, params, state, mut backoff)| async move {
        let (item, state) = step(&api, &params, state, &mut backoff).await;
        Some((item, (api, params, state, backoff)))
    })
}

/// Objects per page of a watcher's list from the store: the apiserver then
/// decodes and holds one page per request, not every object of the kind
/// (Kubernetes' reflectors read pages of 500 too). Lists from the watch
/// cache (`any_version`) come whole: they copy no more than pointers there.
const LIST_PAGE: i64 = 500;

/// Advances the state machine until it has something to report.
async fn step<K: Resource>(
    api: &Api<K>,
    params: &ListParams,
    mut state: State<K>,
    backoff: &mut Backoff,
) -> (Result<Event<K>, Error>, State<K>) {
    loop {
        state = match state {
            State::Empty { delay } => {
                tokio::time::sleep(delay).await;
                let mut paged = params.clone();
                if paged.limit == 0 && paged.resource_version.is_empty() {
                    paged.limit = LIST_PAGE;
                }
                match api.list(&paged).await {
                    Ok((objects, resource_version)) => {
                        backoff.reset();
                        let next = State::Resuming {
                            resource_version,
                            delay: Duration::ZERO,
                        };
                        return (Ok(Event::Restarted(objects)), next);
                    }
                    Err(error) => {
                        let delay = backoff.failed();
                        tracing::warn!(kind = K::KIND, %error, ?delay, "list failed; retrying");
                        return (Err(error), State::Empty { delay });
                    }
                }
            }
            State::Resuming {
                resource_version,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let watch = WatchParams {
                    filters: params.clone(),
                    resource_version: resource_version.clone(),
                    allow_bookmarks: true,
                };
                match api.watch(&watch).await {
                    Ok(stream) => State::Watching {
                        resource_version,
                        stream,
                    },
                    Err(error) => match after_error(error, resource_version, backoff) {
                        (Some(error), next) => return (Err(error), next),
                        (None, next) => next,
                    },
                }
            }
            State::Watching {
                resource_version,
                mut stream,
            } => match stream.next().await {
                Some(Ok(event)) => {
                    backoff.reset();
                    match apply(event) {
                        (Some(rv), Some(event)) => {
                            return (
                                Ok(event),
                                State::Watching {
                                    resource_version: rv,
                                    stream,
                                },
                            );
                        }
                        (Some(rv), None) => State::Watching {
                            resource_version: rv,
                            stream,
                        },
                        (None, Some(event)) => {
                            return (
                                Ok(event),
                                State::Watching {
                                    resource_version,
                                    stream,
                                },
                            );
                        }
                        (None, None) => State::Watching {
                            resource_version,
                            stream,
                        },
                    }
                }
                Some(Err(error)) => match after_error(error, resource_version, backoff) {
                    (Some(error), next) => return (Err(error), next),
                    (None, next) => next,
                },
                None => {
                    let delay = backoff.failed();
                    tracing::debug!(kind = K::KIND, %resource_version, ?delay, "watch ended; resuming");
                    State::Resuming {
                        resource_version,
                        delay,
                    }
                }
            },
        };
    }
}

/// The next state after a failed or broken watch, and the error to report
/// (none for an expired version, which a re-list handles quietly).
fn after_error<K: Resource>(
    error: Error,
    resource_version: String,
    backoff: &mut Backoff,
) -> (Option<Error>, State<K>) {
    if matches!(error, Error::Gone(_)) {
        tracing::info!(kind = K::KIND, %resource_version, "watch history gone; re-listing");
        return (
            None,
            State::Empty {
                delay: Duration::ZERO,
            },
        );
    }
    let delay = backoff.failed();
    if error.is_code(tonic::Code::ResourceExhausted) {
        tracing::warn!(kind = K::KIND, %error, ?delay, "watch refused; re-listing");
        return (Some(error), State::Empty { delay });
    }
    tracing::warn!(kind = K::KIND, %error, %resource_version, ?delay, "watch broke; resuming");
    (
        Some(error),
        State::Resuming {
            resource_version,
            delay,
        },
    )
}

/// The resourceVersion an event moves to, and what to report of it.
fn apply<K: Resource>(event: WatchEvent<K>) -> (Option<String>, Option<Event<K>>) {
    let kind = event.event_type();
    let Some(object) = event.object else {
        return (None, None);
    };
    let rv = Some(object.meta().resource_version.clone()).filter(|rv| !rv.is_empty());
    match kind {
        Some(EventType::Added | EventType::Modified) => (rv, Some(Event::Applied(object))),
        Some(EventType::Deleted) => (rv, Some(Event::Deleted(object))),
        Some(EventType::Bookmark) => (rv, None),
        Some(EventType::Unspecified) | None => {
            tracing::warn!(
                kind = K::KIND,
                r#type = event.r#type,
                "unknown watch event type; skipped"
            );
            (None, None)
        }
    }
}
