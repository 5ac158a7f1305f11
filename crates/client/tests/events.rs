//! The event recorder against a real apiserver: events are written in the
//! background, and a repeat of a recent one raises its count instead of
//! adding an event, in order even when repeats come faster than writes.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use moor_api::core::v1::{ConfigMap, Event};
use moor_client::events::Recorder;
use moor_client::{Client, ListParams};
use support::{Server, config_map};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_raise_the_count_of_one_event() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let client = Client::new(&server.url())?;
    let object = client
        .api::<ConfigMap>()
        .create(&config_map("web", "1", &[]))
        .await?;
    let recorder = Recorder::reporting(&client, "test-component", "test-1", "node-a");
    let events = client.api::<Event>();
    let about_web = || ListParams::default().namespace("default");

    // A burst of repeats, recorded while the first is still being written:
    // one event, its count the number recorded, never going backwards.
    for _ in 0..5 {
        recorder.warning(&object, "BackOff", "Back-off restarting".into());
    }
    recorder.normal(&object, "Pulled", "Image is present".into());

    moor_testkit::assert_eventually!(
        {
            let (items, _) = events.list(&about_web()).await?;
            let mut got: Vec<(String, i32)> =
                items.iter().map(|e| (e.reason.clone(), e.count)).collect();
            got.sort();
            got == [("BackOff".to_string(), 5), ("Pulled".to_string(), 1)]
        },
        Duration::from_secs(10),
        "the events never became one BackOff x5 and one Pulled"
    );
    let (items, _) = events.list(&about_web()).await?;
    let backoff = items.iter().find(|e| e.reason == "BackOff").unwrap();
    assert_eq!(backoff.r#type, "Warning");
    let source = backoff.source.clone().unwrap_or_default();
    assert_eq!(
        (source.component.as_str(), source.host.as_str()),
        ("test-component", "node-a")
    );
    assert_eq!(backoff.reporting_instance, "test-1");
    let involved = backoff.involved_object.clone().unwrap_or_default();
    assert_eq!(
        (involved.kind.as_str(), involved.name.as_str()),
        ("ConfigMap", "web")
    );
    let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(
        at(&backoff.last_timestamp) > at(&backoff.first_timestamp),
        "a repeat moves lastTimestamp on"
    );
    Ok(())
}
