//! Leader election against a real in-process apiserver.

use std::time::Duration;

use moor_api::coordination::v1::Lease;
use moor_client::Client;
use moor_integration_tests::Apiserver;
use moor_leader::{Config, Elector};
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn config(identity: &str) -> Config {
    let mut c = Config::new("test-lease", identity);
    c.lease_duration = Duration::from_secs(2);
    c.renew_deadline = Duration::from_secs(1);
    c.retry_period = Duration::from_millis(200);
    c
}

/// When the lease was last renewed, in Unix seconds (0 when unknown).
async fn renew_seconds(client: &Client) -> i64 {
    let lease = client
        .api::<Lease>()
        .get("moor-system", "test-lease")
        .await
        .ok();
    lease
        .and_then(|l| l.spec)
        .and_then(|s| s.renew_time)
        .map_or(0, |t| t.seconds)
}

async fn holder(client: &Client) -> Option<String> {
    let lease = client
        .api::<Lease>()
        .get("moor-system", "test-lease")
        .await
        .ok()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn one_leads_and_the_other_takes_over_on_shutdown() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;

    let a = Elector::new(&client, config("a"));
    let a_leader = a.subscribe();
    let a_terms = a.terms();
    let a_stop = CancellationToken::new();
    let a_task = tokio::spawn(a.run(a_stop.clone()));
    assert_eventually!(*a_leader.borrow(), WAIT, "a never became leader");
    let term = a_terms.borrow().clone().expect("a term while leading");

    let b = Elector::new(&client, config("b"));
    let b_leader = b.subscribe();
    let mut b_watch = b_leader.clone();
    let b_led = tokio::spawn(async move { b_watch.wait_for(|leading| *leading).await.is_ok() });
    let b_stop = CancellationToken::new();
    let b_task = tokio::spawn(b.run(b_stop.clone()));
    // b stands by while a renews, well past a lease duration (2 s): wait
    // until a's renewals have carried the lease 3 s beyond where it was.
    let start = renew_seconds(&client).await;
    assert_eventually!(
        renew_seconds(&client).await >= start + 3,
        WAIT,
        "a stopped renewing"
    );
    assert!(!b_led.is_finished(), "b must not lead while a renews");
    assert_eq!(holder(&client).await.as_deref(), Some("a"));

    a_stop.cancel();
    a_task.await?;
    assert!(term.is_cancelled(), "a's term ends on shutdown");
    assert!(!*a_leader.borrow());
    assert_eventually!(*b_leader.borrow(), WAIT, "b never took over");
    assert_eventually!(
        holder(&client).await.as_deref() == Some("b"),
        WAIT,
        "lease not held by b"
    );
    let lease = client
        .api::<Lease>()
        .get("moor-system", "test-lease")
        .await?;
    assert_eq!(lease.spec.and_then(|s| s.lease_transitions), Some(1));

    b_stop.cancel();
    b_task.await?;
    assert_eventually!(holder(&client).await.is_none(), WAIT, "b did not release");
    Ok(())
}

#[tokio::test]
async fn leader_steps_down_when_the_lease_is_taken_from_it() -> anyhow::Result<()> {
    let server = Apiserver::start().await?;
    let client = Client::new(&format!("http://{}", server.addr))?;
    let a = Elector::new(&client, config("a"));
    let leader = a.subscribe();
    let terms = a.terms();
    let stop = CancellationToken::new();
    let task = tokio::spawn(a.run(stop.clone()));
    assert_eventually!(*leader.borrow(), WAIT, "a never became leader");
    let term = terms.borrow().clone().expect("a term while leading");

    // An intruder (say, after a network partition) overwrites the lease.
    let api = client.api::<Lease>();
    let mut lease = api.get("moor-system", "test-lease").await?;
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.holder_identity = Some("intruder".to_string());
    spec.lease_duration_seconds = Some(60);
    api.update(&lease).await?;

    assert_eventually!(
        term.is_cancelled(),
        WAIT,
        "term not cancelled after losing the lease"
    );
    assert!(!*leader.borrow());
    stop.cancel();
    task.await?;
    // Not ours to release.
    assert_eq!(holder(&client).await.as_deref(), Some("intruder"));
    Ok(())
}
