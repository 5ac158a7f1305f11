//! A client in another language: Python stubs generated with grpcio-tools
//! from proto/ create a pod, list it, watch it change and delete it, on a
//! whole cluster as `moor up` runs one (the scheduler and the node agent
//! change the pod too), twice in a row as a user would.

use std::path::PathBuf;
use std::process::Command;

use moor_integration_tests::Cluster;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_creates_lists_and_watches_a_pod() -> anyhow::Result<()> {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status();
    anyhow::ensure!(
        probe.is_ok_and(|s| s.success()),
        "python3 with grpcio and grpcio-tools is needed: python3 -m pip install grpcio grpcio-tools (scripts/setup.sh does it)"
    );
    let cluster = Cluster::start("py", None).await?;
    let generated = tempfile::tempdir()?;
    let python = repo_root().join("clients/python");
    let status = Command::new(python.join("generate.sh"))
        .arg(generated.path())
        .status()?;
    anyhow::ensure!(status.success(), "generating the Python stubs failed");

    let addr = cluster
        .url
        .strip_prefix("http://")
        .unwrap_or(&cluster.url)
        .to_string();
    for run in 1..=2 {
        let (addr, python, generated) =
            (addr.clone(), python.clone(), generated.path().to_path_buf());
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .arg(python.join("example.py"))
                .args(["--server", &addr, "--name", "py-demo"])
                .env("PYTHONPATH", generated)
                .output()
        })
        .await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "example.py, run {run}, failed:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("created pod/py-demo"), "{stdout}");
        assert!(stdout.contains("listed 1 pod(s)"), "{stdout}");
        assert!(
            stdout.contains("watched MODIFIED pod/py-demo tier=frontend"),
            "{stdout}"
        );
        assert!(stdout.contains("deleted pod/py-demo"), "{stdout}");
    }
    cluster.stop().await;
    Ok(())
}
