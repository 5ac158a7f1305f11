//! The controller against a real apiserver.

// Helpers outside #[test] fns unwrap poisoned test locks: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::ConfigMap;
use moor_client::{Action, Client, Context, Controller, ListParams};
use moor_testkit::assert_eventually;
use support::{Server, config_map};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Per name: how many reconciles, and the last value seen.
type Seen = Arc<Mutex<HashMap<String, (usize, String)>>>;

fn last_value(seen: &Seen, name: &str) -> Option<String> {
    seen.lock().unwrap().get(name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn reconciles_every_object_and_its_latest_version() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let client = Client::new(&server.url())?;
    let api = client.api::<ConfigMap>();
    api.create(&config_map("early", "0", &[])).await?;

    let seen = Seen::default();
    let sink = seen.clone();
    let failed_once = Arc::new(Mutex::new(false));
    let reconcile = move |object: Arc<ConfigMap>, ctx: Context<ConfigMap>| {
        let sink = sink.clone();
        let failed_once = failed_once.clone();
        async move {
            assert_eq!(ctx.key.name, object.meta().name);
            // The first reconcile of "flaky" fails: it must be retried.
            if object.meta().name == "flaky"
                && !std::mem::replace(&mut *failed_once.lock().unwrap(), true)
            {
                return Err("flaky fails once");
            }
            let value = object.data.get("value").cloned().unwrap_or_default();
            let mut seen = sink.lock().unwrap();
            let entry = seen.entry(object.meta().name.clone()).or_default();
            entry.0 += 1;
            entry.1 = value;
            Ok(Action::AwaitChange)
        }
    };
    let shutdown = CancellationToken::new();
    let controller = Controller::new(api.clone(), ListParams::default().namespace("default"));
    let run = tokio::spawn(controller.run(reconcile, shutdown.clone()));

    assert_eventually!(last_value(&seen, "early").as_deref() == Some("0"), TIMEOUT);
    let mut objects = Vec::new();
    for i in 0..5 {
        objects.push(
            api.create(&config_map(&format!("cm-{i}"), "1", &[]))
                .await?,
        );
    }
    api.create(&config_map("flaky", "1", &[])).await?;
    for mut object in objects {
        for v in 2..=4 {
            object.data.insert("value".into(), v.to_string());
            object = api.update(&object).await?;
        }
    }
    for i in 0..5 {
        let name = format!("cm-{i}");
        assert_eventually!(
            last_value(&seen, &name).as_deref() == Some("4"),
            TIMEOUT,
            "{name}: {:?}",
            seen
        );
    }
    assert_eventually!(
        last_value(&seen, "flaky").as_deref() == Some("1"),
        TIMEOUT,
        "flaky never retried"
    );

    shutdown.cancel();
    run.await?;
    server.stop().await
}
