//! Two controller-managers under leader election: only one acts, and the
//! standby takes over when the leader stops.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use std::time::Duration;

use moor_api::core::v1::ReplicationController;
use moor_client::Client;
use moor_integration_tests::Apiserver;
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

use support::{CONVERGE, live_pods, rc};

fn manager(url: &str, identity: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut config = moor_controller_manager::Config::new(url);
    config.leader_elect = true;
    config.identity = identity.to_string();
    config.lease = moor_controller_manager::LeaseConfig {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry: Duration::from_millis(200),
    };
    let token = CancellationToken::new();
    let shutdown = token.clone();
    let task = tokio::spawn(async move {
        moor_controller_manager::run(config, shutdown)
            .await
            .unwrap();
    });
    (token, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_the_standby_takes_over() {
    let apiserver = Apiserver::start().await.unwrap();
    let url = format!("http://{}", apiserver.addr);
    let client = Client::new(&url).unwrap();
    let (first, first_task) = manager(&url, "cm-a");
    let (second, second_task) = manager(&url, "cm-b");

    let rcs = client.api::<ReplicationController>();
    rcs.create(&rc("default", "web", 3, "web")).await.unwrap();
    assert_eventually!(
        live_pods(&client, "default", "app=web").await.len() == 3,
        CONVERGE,
        "3 pods"
    );

    // Stop whichever leads; the other must pick up the next change.
    let lease = client
        .api::<moor_api::coordination::v1::Lease>()
        .get("moor-system", "moor-controller-manager")
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    let (leader, leader_task, standby_task) = if holder == "cm-a" {
        (first, first_task, second_task)
    } else {
        (second, second_task, first_task)
    };
    leader.cancel();
    leader_task.await.unwrap();

    let mut scale = rcs.get_scale("default", "web").await.unwrap();
    scale.spec.get_or_insert_default().replicas = 5;
    rcs.update_scale(&scale).await.unwrap();
    assert_eventually!(
        live_pods(&client, "default", "app=web").await.len() == 5,
        CONVERGE,
        "the standby scaled to 5"
    );
    // Never more than asked for: two managers never both acted. Once the
    // controller reports the new generation with 5 replicas it has settled.
    assert_eventually!(
        {
            let rc = rcs.get("default", "web").await.unwrap();
            let status = rc.status.clone().unwrap_or_default();
            status.replicas == 5
                && status.observed_generation == rc.metadata.as_ref().map_or(0, |m| m.generation)
        },
        CONVERGE,
        "the controller never reported 5 replicas for the new generation"
    );
    assert_eq!(live_pods(&client, "default", "app=web").await.len(), 5);
    standby_task.abort();
}
