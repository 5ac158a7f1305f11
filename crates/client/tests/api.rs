//! CRUD through `Api` against a real apiserver.

// Helpers outside #[test] fns unwrap poisoned test locks: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use moor_api::Resource;
use moor_api::core::v1::{ConfigMap, Namespace};
use moor_client::{Client, DeleteParams, Error, ListParams};
use support::{Server, config_map};

#[tokio::test]
async fn config_map_crud() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let client = Client::new(&server.url())?;
    let api = client.api::<ConfigMap>();

    let created = api
        .create(&config_map("web", "1", &[("app", "web")]))
        .await?;
    assert!(!created.meta().resource_version.is_empty());
    api.create(&config_map("db", "1", &[("app", "db")])).await?;
    let again = api.create(&config_map("web", "1", &[])).await;
    assert!(matches!(again, Err(Error::AlreadyExists(_))), "{again:?}");

    let got = api.get("default", "web").await?;
    assert_eq!(got.data.get("value").map(String::as_str), Some("1"));

    let (items, rv) = api
        .list(&ListParams::default().namespace("default").labels("app=web"))
        .await?;
    assert!(!rv.is_empty());
    let names: Vec<_> = items.iter().map(|o| o.meta().name.as_str()).collect();
    assert_eq!(names, ["web"]);

    // In pages of one: the whole list, at one version, from the store and
    // from the cache.
    for params in [
        ListParams::default().namespace("default"),
        ListParams::default().namespace("default").any_version(),
    ] {
        let paged = ListParams { limit: 1, ..params };
        let (items, _) = api.list(&paged).await?;
        let names: Vec<_> = items.iter().map(|o| o.meta().name.as_str()).collect();
        assert_eq!(names, ["db", "web"], "{paged:?}");
        let (page, meta) = api.list_page(&paged, "").await?;
        assert_eq!(page.len(), 1);
        assert!(!meta.r#continue.is_empty(), "a cut page leads on");
    }

    let mut changed = got.clone();
    changed.data.insert("value".into(), "2".into());
    let updated = api.update(&changed).await?;
    assert_ne!(updated.meta().resource_version, got.meta().resource_version);
    // `changed` still carries the old resourceVersion.
    changed.data.insert("value".into(), "3".into());
    let stale = api.update(&changed).await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");

    api.delete("default", "web", &DeleteParams::default())
        .await?;
    let gone = api.get("default", "web").await;
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
    let gone = api.delete("default", "web", &DeleteParams::default()).await;
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");

    // Cluster-scoped kinds go through the same generic code.
    let (namespaces, _) = client
        .api::<Namespace>()
        .list(&ListParams::default())
        .await?;
    let names: Vec<_> = namespaces.iter().map(|n| n.meta().name.clone()).collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");

    server.stop().await
}

#[tokio::test]
async fn unreachable_server_is_unavailable() -> anyhow::Result<()> {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"))?;
    let result = client.api::<ConfigMap>().get("default", "x").await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(matches!(Client::new("not a url"), Err(Error::Channel(_))));
    Ok(())
}
