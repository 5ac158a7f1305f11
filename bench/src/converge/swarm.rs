//! Docker Swarm's side, through the CLI on a single-node swarm on loopback:
//! a service scaled from 0 and a service rolled to a second tag, each timed
//! from the request (`--detach`, so the CLI returns at once) to the goal
//! state polled with `docker service ps`.

use std::time::Duration;

use tokio::time::Instant;

use super::docker::{self, run};
use super::{Converged, PATIENCE};

/// The service scaled from 0.
const SCALE: &str = "moor-bench-echo";
/// The service rolled to the second tag.
const ROLL: &str = "moor-bench-roll";
/// Pause between two polls (each poll is a `docker service ps` of its own).
const POLL: Duration = Duration::from_millis(100);

/// The swarm this run uses; on drop its services go, and the swarm too if
/// this run initialised it (also when a step failed).
pub struct Swarm {
    /// Whether `docker swarm init` was ours.
    initialised: bool,
    /// Services created and not yet removed.
    services: Vec<&'static str>,
}

/// What `docker service ps` says of a service's tasks.
#[derive(Debug, Default)]
struct Tasks {
    /// Tasks that should run and do, with the image asked for.
    running: usize,
    /// Tasks of any other image whose container still runs (being replaced).
    others: usize,
}

// === impl Swarm ===

impl Swarm {
    /// Uses this machine's swarm if it is a manager, else initialises one
    /// on loopback.
    pub async fn join() -> anyhow::Result<Self> {
        let state = run(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ])
        .await?;
        let initialised = match state.trim() {
            "active true" => false,
            "inactive false" => {
                run(&["swarm", "init", "--advertise-addr", "127.0.0.1"]).await?;
                true
            }
            other => anyhow::bail!(
                "docker's swarm state is `{other}`: neither a manager nor free to initialise one"
            ),
        };
        Ok(Self {
            initialised,
            services: Vec::new(),
        })
    }

    /// Whether this run initialised the swarm.
    pub fn initialised(&self) -> bool {
        self.initialised
    }

    /// Creates the service at 0 replicas, scales it to `replicas` and waits
    /// until that many tasks run; then removes it and waits for its
    /// containers to go.
    pub async fn scale(&mut self, image: &str, replicas: usize) -> anyhow::Result<Converged> {
        self.create(SCALE, image, 0).await?;
        let start = Instant::now();
        run(&[
            "service",
            "scale",
            "--detach",
            &format!("{SCALE}={replicas}"),
        ])
        .await?;
        until(start, "the service to scale", async || {
            Ok(tasks(SCALE, image).await?.running >= replicas)
        })
        .await?;
        let total = start.elapsed();
        self.remove(SCALE).await?;
        Ok(Converged {
            total,
            milestones: Vec::new(),
        })
    }

    /// Creates a service of `replicas` with `from` and waits until they run
    /// (untimed), then updates it to `to` one task at a time, new task
    /// first, and times it until `replicas` tasks of `to` run and no
    /// container of `from` does.
    pub async fn rollout(
        &mut self,
        from: &str,
        to: &str,
        replicas: usize,
    ) -> anyhow::Result<Converged> {
        self.create(ROLL, from, replicas).await?;
        until(Instant::now(), "the service to start", async || {
            Ok(tasks(ROLL, from).await?.running >= replicas)
        })
        .await?;

        let start = Instant::now();
        run(&[
            "service",
            "update",
            "--detach",
            "--no-resolve-image",
            "--image",
            to,
            "--update-parallelism",
            "1",
            "--update-delay",
            "0s",
            "--update-order",
            "start-first",
            ROLL,
        ])
        .await?;
        until(start, "the update to converge", async || {
            let tasks = tasks(ROLL, to).await?;
            Ok(tasks.running >= replicas && tasks.others == 0)
        })
        .await?;
        let total = start.elapsed();
        // Swarm calls the update done only after watching the last task
        // for --update-monitor (5 s by default): shown, not compared.
        until(start, "the update status to complete", async || {
            let state = run(&["service", "inspect", "-f", "{{.UpdateStatus.State}}", ROLL]).await?;
            Ok(state.trim() == "completed")
        })
        .await?;
        let completed = start.elapsed();
        self.remove(ROLL).await?;
        Ok(Converged {
            total,
            milestones: vec![("Swarm's UpdateStatus completed", completed)],
        })
    }

    async fn create(
        &mut self,
        name: &'static str,
        image: &str,
        replicas: usize,
    ) -> anyhow::Result<()> {
        run(&[
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            name,
            "--replicas",
            &replicas.to_string(),
            image,
            "serve",
        ])
        .await?;
        self.services.push(name);
        Ok(())
    }

    /// Removes service `name` and waits until none of its containers runs.
    async fn remove(&mut self, name: &'static str) -> anyhow::Result<()> {
        run(&["service", "rm", name]).await?;
        self.services.retain(|s| *s != name);
        let filter = format!("label=com.docker.swarm.service.name={name}");
        until(
            Instant::now(),
            "the service's containers to go",
            async || Ok(docker::count(&filter).await? == 0),
        )
        .await
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for service in &self.services {
            let _ = std::process::Command::new("docker")
                .args(["service", "rm", service])
                .output();
        }
        if self.initialised {
            let _ = std::process::Command::new("docker")
                .args(["swarm", "leave", "--force"])
                .output();
        }
    }
}

/// Counts the tasks of `service` by image and state.
async fn tasks(service: &str, image: &str) -> anyhow::Result<Tasks> {
    let out = run(&[
        "service",
        "ps",
        "--format",
        "{{.Image}}\t{{.DesiredState}}\t{{.CurrentState}}",
        service,
    ])
    .await?;
    let mut tasks = Tasks::default();
    for line in out.lines() {
        let mut fields = line.split('\t');
        let (task_image, desired, current) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        let runs = current.starts_with("Running");
        if task_image != image && runs {
            tasks.others += 1;
        } else if task_image == image && runs && desired == "Running" {
            tasks.running += 1;
        }
    }
    Ok(tasks)
}

/// Polls `check` until it holds, up to [`PATIENCE`] after `start`.
async fn until(
    start: Instant,
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    while !check().await? {
        anyhow::ensure!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
