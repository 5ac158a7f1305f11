//! Paged lists: `limit` and `continue` give every object that existed at
//! the first page's version exactly once, whatever is written meanwhile;
//! selectors, namespaces and the cache's lists page too; bad tokens and
//! limits are refused by name; a compacted token is OUT_OF_RANGE.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestServer, config_map};
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::meta::v1::{DeleteRequest, ListRequest};
use tonic::Code;

type Client = ConfigMapsClient<moor_rpc::Channel>;

/// Reads every page of `first`, returning (name, value, resourceVersion)
/// by page, the list's version, and the tokens seen.
async fn pages(
    client: &mut Client,
    first: ListRequest,
) -> anyhow::Result<(Vec<Vec<(String, String, i64)>>, String)> {
    let mut request = first.clone();
    let mut out = Vec::new();
    let mut version = None;
    loop {
        let list = client.list(request.clone()).await?.into_inner();
        let meta = list.metadata.unwrap_or_default();
        match &version {
            None => version = Some(meta.resource_version.clone()),
            Some(v) => assert_eq!(&meta.resource_version, v, "every page at one version"),
        }
        assert!(
            first.limit == 0 || list.items.len() <= usize::try_from(first.limit)?,
            "a page holds at most the limit"
        );
        out.push(
            list.items
                .into_iter()
                .map(|cm| {
                    let meta = cm.metadata.unwrap_or_default();
                    let value = cm.data.get("v").cloned().unwrap_or_default();
                    (meta.name, value, meta.resource_version.parse().unwrap())
                })
                .collect(),
        );
        if meta.r#continue.is_empty() {
            return Ok((out, version.unwrap_or_default()));
        }
        request = ListRequest {
            namespace: first.namespace.clone(),
            label_selector: first.label_selector.clone(),
            field_selector: first.field_selector.clone(),
            limit: first.limit,
            r#continue: meta.r#continue,
            ..Default::default()
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_across_concurrent_writes_hold_every_object_once() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut client = Client::new(server.channel());
    const OLD: usize = 240;
    for i in 0..OLD {
        let labels: &[(&str, &str)] = if i % 3 == 0 { &[("pick", "yes")] } else { &[] };
        client
            .create(config_map(&format!("old-{i:03}"), labels, "v0"))
            .await?;
    }

    for (start_version, selector) in [("", ""), ("0", ""), ("", "pick=yes"), ("0", "pick=yes")] {
        // The first page, then writes racing the rest: deletes and updates
        // of objects still to come, and creates among them.
        let first = ListRequest {
            namespace: "default".into(),
            label_selector: selector.into(),
            resource_version: start_version.into(),
            limit: 17,
            ..Default::default()
        };
        let list = client.list(first.clone()).await?.into_inner();
        let meta = list.metadata.clone().unwrap_or_default();
        assert!(!meta.r#continue.is_empty(), "a cut list carries a token");
        let at: i64 = meta.resource_version.parse()?;
        let writer = {
            let mut client = Client::new(server.channel());
            tokio::spawn(async move {
                for i in (0..OLD).rev().step_by(7) {
                    let name = format!("old-{i:03}");
                    if i % 2 == 0 {
                        client
                            .delete(DeleteRequest {
                                namespace: "default".into(),
                                name,
                                ..Default::default()
                            })
                            .await?;
                    } else {
                        client.update(config_map(&name, &[], "changed")).await?;
                    }
                    client
                        .create(config_map(
                            &format!("new-{at}-{i:03}"),
                            &[("pick", "yes")],
                            "v0",
                        ))
                        .await?;
                }
                anyhow::Ok(())
            })
        };
        let (rest, version) = pages(
            &mut client,
            ListRequest {
                r#continue: meta.r#continue.clone(),
                resource_version: String::new(),
                ..first.clone()
            },
        )
        .await?;
        writer.await??;
        assert_eq!(
            version,
            at.to_string(),
            "continued pages keep the first's version"
        );

        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let first_page = list.items.iter().map(|cm| {
            let meta = cm.metadata.clone().unwrap_or_default();
            (
                meta.name,
                cm.data.get("v").cloned().unwrap_or_default(),
                meta.resource_version.parse::<i64>().unwrap(),
            )
        });
        let all: Vec<_> = first_page.chain(rest.into_iter().flatten()).collect();
        for (name, value, rv) in &all {
            *seen.entry(name.clone()).or_default() += 1;
            assert!(*rv <= at, "{name} at {rv}, after the list's {at}");
            assert_eq!(value, "v0", "{name} as it was at {at}");
        }
        let names: Vec<&String> = seen.keys().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "in name order");
        assert!(seen.values().all(|n| *n == 1), "each object once: {seen:?}");
        // Exactly the objects there at the first page's version: every old
        // one (the writes came after it) that the selector picks, no new one.
        let want: Vec<String> = (0..OLD)
            .filter(|i| selector.is_empty() || i % 3 == 0)
            .map(|i| format!("old-{i:03}"))
            .collect();
        let got: Vec<String> = seen.into_keys().collect();
        assert_eq!(got, want, "start {start_version:?}, selector {selector:?}");
        // Put the old objects back, and take the new ones away, for the
        // next round.
        for i in (0..OLD).rev().step_by(7) {
            client
                .delete(DeleteRequest {
                    namespace: "default".into(),
                    name: format!("new-{at}-{i:03}"),
                    ..Default::default()
                })
                .await?;
            let name = format!("old-{i:03}");
            let labels: &[(&str, &str)] = if i % 3 == 0 { &[("pick", "yes")] } else { &[] };
            if i % 2 == 0 {
                client.create(config_map(&name, labels, "v0")).await?;
            } else {
                client.update(config_map(&name, labels, "v0")).await?;
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limits_and_tokens_are_refused_and_compacted_tokens_are_out_of_range()
-> anyhow::Result<()> {
    // Fast compaction, so the first page's version goes quickly.
    let server = TestServer::sqlite_with(|config| {
        config.compaction_interval = Duration::from_millis(50);
    })
    .await?;
    let mut client = Client::new(server.channel());
    for i in 0..5 {
        client
            .create(config_map(&format!("c{i}"), &[], "1"))
            .await?;
    }
    let default = |limit: i64, token: &str, rv: &str| ListRequest {
        namespace: "default".into(),
        limit,
        r#continue: token.into(),
        resource_version: rv.into(),
        ..Default::default()
    };
    let err = client.list(default(-1, "", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("limit -1"), "{}", err.message());
    let err = client.list(default(2, "garbage!", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("continue"), "{}", err.message());

    let first = client.list(default(2, "", "")).await?.into_inner();
    let token = first.metadata.unwrap_or_default().r#continue;
    assert!(!token.is_empty());
    // A token with a resourceVersion, or for another namespace.
    let err = client.list(default(2, &token, "0")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut other = default(2, &token, "");
    other.namespace = "kube-system".into();
    let err = client.list(other).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The token still works, then its version is compacted away.
    client.list(default(2, &token, "")).await?;
    moor_testkit::assert_eventually!(
        {
            // Keep writing so the compactor has new revisions to move to.
            let name = format!("x{}", rand_like());
            client.create(config_map(&name, &[], "1")).await?;
            matches!(client.list(default(2, &token, "")).await,
                Err(status) if status.code() == Code::OutOfRange)
        },
        Duration::from_secs(30),
        "the token of a compacted version never failed with OUT_OF_RANGE"
    );
    Ok(())
}

fn rand_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
