//! The Docker CLI, as both sides' ground truth and Swarm's only interface,
//! and the second image tag the rollouts move to.

use anyhow::Context as _;

/// A local tag of an existing image, removed on drop if this run made it
/// (also when a step failed).
pub struct ImageTag {
    /// The tag, e.g. `moor/echo:v2`.
    pub name: String,
    made: bool,
}

// === impl ImageTag ===

impl ImageTag {
    /// Tags `image` as `name`; a tag that already exists is used and kept.
    pub async fn create(image: &str, name: &str) -> anyhow::Result<Self> {
        let made = run(&["image", "inspect", "-f", "{{.Id}}", name])
            .await
            .is_err();
        if made {
            run(&["tag", image, name]).await.with_context(|| {
                format!("tagging {image} (build the images with images/build.sh)")
            })?;
        }
        Ok(Self {
            name: name.into(),
            made,
        })
    }
}

impl Drop for ImageTag {
    fn drop(&mut self) {
        if self.made {
            // Only the tag goes: the image keeps its first name.
            let _ = std::process::Command::new("docker")
                .args(["rmi", &self.name])
                .output();
        }
    }
}

/// Runs `docker <args>` and returns its stdout; a failure carries stderr.
pub async fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .context("running docker (install Docker and start dockerd)")?;
    anyhow::ensure!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Running containers matching `docker ps` filter `filter`.
pub async fn count(filter: &str) -> anyhow::Result<usize> {
    Ok(run(&["ps", "-q", "--filter", filter])
        .await?
        .lines()
        .count())
}
