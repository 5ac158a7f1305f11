//! Writes decided from a cache that may lag the apiserver.
//!
//! Controllers read from their informers' caches and write with the cached
//! resourceVersion, so a write conflicts whenever the object changed since
//! the cache saw it, most often by the controller's own previous write
//! whose watch event has not arrived yet (a replica set's status, then its
//! scale a moment later). Re-running the whole reconcile for that costs a
//! retry and a warning each time; [`update`] instead applies the same
//! change once more to the object as the apiserver has it now.

use moor_api::Resource;
use moor_client::{Api, Error};

/// Which part of the object a write replaces.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    /// Spec and metadata (`Update`).
    Main,
    /// The status subresource (`UpdateStatus`).
    Status,
}

/// Writes what `change` makes of `cached`; on a conflict, gets the object
/// again and writes what `change` makes of that, once. `change` returns
/// `None` when the object it is given needs no write (the fresh object may
/// already say what the controller meant, or no longer fit its decision:
/// the caller tells which from its own closure). The written object, or
/// `None` when nothing was written.
pub async fn update<K, F>(
    api: &Api<K>,
    cached: &K,
    part: Part,
    change: F,
) -> Result<Option<K>, Error>
where
    K: Resource,
    F: Fn(&K) -> Option<K>,
{
    let Some(first) = change(cached) else {
        return Ok(None);
    };
    match write(api, &first, part).await {
        Err(Error::Conflict(status)) => {
            let meta = cached.meta();
            let current = match api.get(&meta.namespace, &meta.name).await {
                Ok(current) if current.meta().uid == meta.uid => current,
                // Deleted, or replaced by another object of the name: the
                // conflict stands and the next reconcile sees why.
                Ok(_) | Err(Error::NotFound(_)) => return Err(Error::Conflict(status)),
                Err(e) => return Err(e),
            };
            tracing::debug!(kind = K::KIND, name = %meta.name, "cache was behind; writing onto the current object");
            match change(&current) {
                Some(second) => write(api, &second, part).await.map(Some),
                None => Ok(None),
            }
        }
        result => result.map(Some),
    }
}

async fn write<K: Resource>(api: &Api<K>, object: &K, part: Part) -> Result<K, Error> {
    match part {
        Part::Main => api.update(object).await,
        Part::Status => api.update_status(object).await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

    use moor_api::core::v1::{ReplicationController, ReplicationControllerStatus};
    use moor_client::{Client, DeleteParams};
    use moor_integration_tests::Apiserver;

    use super::*;
    use crate::replica::overshoot_tests::web;

    fn with_replicas(rc: &ReplicationController, replicas: i32) -> ReplicationController {
        let mut updated = rc.clone();
        updated.status = Some(ReplicationControllerStatus {
            replicas,
            ..Default::default()
        });
        updated
    }

    #[tokio::test]
    async fn a_stale_write_lands_on_the_current_object_once() {
        let apiserver = Apiserver::start().await.unwrap();
        let client = Client::new(&format!("http://{}", apiserver.addr)).unwrap();
        let api = client.api::<ReplicationController>();
        let cached = api.create(&web(1)).await.unwrap();
        // Someone writes after the cache saw the object: the cached copy is stale.
        api.update_status(&with_replicas(&cached, 1)).await.unwrap();
        assert!(matches!(
            api.update_status(&with_replicas(&cached, 2)).await,
            Err(Error::Conflict(_))
        ));

        let written = update(&api, &cached, Part::Status, |current| {
            Some(with_replicas(current, 2))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(written.status.unwrap().replicas, 2);
        let stored = api.get("default", "web").await.unwrap();
        assert_eq!(stored.status.unwrap().replicas, 2);

        // The current object already says it: nothing is written.
        let declined = update(&api, &cached, Part::Status, |current| {
            (current.status.as_ref().map(|s| s.replicas) != Some(2))
                .then(|| with_replicas(current, 2))
        })
        .await
        .unwrap();
        assert!(declined.is_none());

        // Gone meanwhile: the conflict stands.
        api.delete("default", "web", &DeleteParams::default())
            .await
            .unwrap();
        assert!(matches!(
            update(&api, &cached, Part::Status, |current| Some(with_replicas(
                current, 3
            )))
            .await,
            Err(Error::Conflict(_) | Error::NotFound(_))
        ));
    }
}
