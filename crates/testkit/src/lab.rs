//! A multi-host lab on this machine, for tests of several nodes: each host is
//! a network namespace with its own dockerd, and one bridge is their LAN.
//!
//! A thin wrapper over `scripts/lab.sh` (see it for the layout): [`Lab::up`]
//! runs `up`, dropping the [`Lab`] runs `down`, also when the test panics.
//! Needs root. Each lab takes a free /24 of 198.18.0.0/15, so tests in one
//! binary may run labs side by side as long as their names differ.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running lab, removed with everything in it (`lab.sh down`) on drop.
///
/// Bringing it up and down takes a few seconds and blocks the calling thread.
#[derive(Debug)]
pub struct Lab {
    name: String,
    hosts: Vec<LabHost>,
    root_address: Ipv4Addr,
}

/// One host of a [`Lab`]: a network namespace with its own dockerd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabHost {
    /// `LAB-hI`, also the name of its network namespace.
    pub name: String,
    /// Its network namespace, `/run/netns/LAB-hI`.
    pub netns: PathBuf,
    /// Its address on the lab's bridge, `A.B.C.I`.
    pub address: Ipv4Addr,
    /// Its dockerd, `unix:///run/moor-lab/LAB/hI/docker.sock`.
    pub docker_host: String,
}

// === impl Lab ===

impl Lab {
    /// Brings up a lab called `name` (1-10 of `a-z`, `0-9`, `-`) of `hosts`
    /// hosts on the first free /24 of 198.18.0.0/15, each holding `images`
    /// copied from the root dockerd; returns once every dockerd answers.
    ///
    /// Fails with `lab.sh`'s message: when not root, when an image is missing
    /// or a lab of that name exists (left by a killed test run: remove it with
    /// `scripts/lab.sh down --name NAME`). A failed `up` removes what it made.
    pub fn up(name: &str, hosts: usize, images: &[&str]) -> Result<Self, String> {
        let mut up = script();
        up.args(["up", &hosts.to_string(), "--name", name, "--subnet", "auto"]);
        for image in images {
            up.args(["--image", image]);
        }
        let stdout = run(&mut up)?;
        // From here on the lab exists: dropping `lab` removes it, whatever
        // goes wrong next.
        let mut lab = Self {
            name: name.to_owned(),
            hosts: Vec::new(),
            root_address: Ipv4Addr::UNSPECIFIED,
        };
        lab.hosts = parse_hosts(&stdout)?;
        let first = match lab.hosts.first() {
            Some(first) if lab.hosts.len() == hosts => first,
            _ => return Err(format!("lab.sh up did not list {hosts} hosts:\n{stdout}")),
        };
        // lab.sh gives the root namespace .254 of the hosts' /24.
        let [a, b, c, _] = first.address.octets();
        lab.root_address = Ipv4Addr::new(a, b, c, 254);
        Ok(lab)
    }

    /// The lab's name, the prefix of its hosts' names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hosts, `LAB-h1` first.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// The root namespace's address on the lab's bridge (`A.B.C.254`): the
    /// hosts' default gateway, and where a test serves what lies "outside the
    /// cluster".
    pub fn root_address(&self) -> Ipv4Addr {
        self.root_address
    }

    /// `program` to run in the network namespace of `hosts()[host]`, with
    /// `DOCKER_HOST` set to its dockerd; see [`LabHost::command`].
    ///
    /// # Panics
    ///
    /// If there is no such host.
    pub fn command(&self, host: usize, program: impl AsRef<OsStr>) -> Command {
        self.hosts[host].command(program)
    }

    /// Unplugs `hosts()[host]` from the lab's LAN (`lab.sh cut`): nothing
    /// crosses its link until [`Lab::reconnect`], while everything on it
    /// runs on. Fails with `lab.sh`'s message.
    ///
    /// # Panics
    ///
    /// If there is no such host.
    pub fn cut(&self, host: usize) -> Result<(), String> {
        let name = &self.hosts[host].name;
        run(script().args(["cut", "--name", &self.name, name])).map(drop)
    }

    /// Plugs `hosts()[host]` back in (`lab.sh reconnect`).
    ///
    /// # Panics
    ///
    /// If there is no such host.
    pub fn reconnect(&self, host: usize) -> Result<(), String> {
        let name = &self.hosts[host].name;
        run(script().args(["reconnect", "--name", &self.name, name])).map(drop)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = run(script().args(["down", "--name", &self.name])) {
            tracing::warn!(lab = %self.name, error = %e, "lab not fully removed; run `scripts/lab.sh down --name {}`", self.name);
        }
    }
}

// === impl LabHost ===

impl LabHost {
    /// `program` to run in this host's network namespace (`nsenter --net`),
    /// with `DOCKER_HOST` set to its dockerd. Everything else (mounts, PIDs,
    /// the file system) is the root namespace's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut net = OsString::from("--net=");
        net.push(&self.netns);
        let mut command = Command::new("nsenter");
        command
            .arg(net)
            .arg("--")
            .arg(program)
            .env("DOCKER_HOST", &self.docker_host);
        command
    }
}

/// `scripts/lab.sh`, ready for its arguments.
fn script() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lab.sh"))
}

/// Runs `command` and returns its stdout, or its stderr as the error.
fn run(command: &mut Command) -> Result<String, String> {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{command:?} failed ({status}):\n{}",
            String::from_utf8_lossy(&stderr).trim_end()
        ));
    }
    String::from_utf8(stdout).map_err(|e| format!("{command:?} printed non-UTF-8: {e}"))
}

/// The hosts in `lab.sh up`'s output: one `NAME ADDRESS DOCKER_HOST` a line.
fn parse_hosts(stdout: &str) -> Result<Vec<LabHost>, String> {
    stdout.lines().map(parse_host).collect()
}

fn parse_host(line: &str) -> Result<LabHost, String> {
    let [name, address, docker_host] = line.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(format!("unexpected line from lab.sh up: {line:?}"));
    };
    Ok(LabHost {
        name: name.to_owned(),
        netns: Path::new("/run/netns").join(name),
        address: address
            .parse()
            .map_err(|e| format!("bad address in {line:?}: {e}"))?,
        docker_host: docker_host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_host_a_line() {
        let hosts = parse_hosts(
            "t-h1 198.18.7.1 unix:///run/moor-lab/t/h1/docker.sock\n\
             t-h2 198.18.7.2 unix:///run/moor-lab/t/h2/docker.sock\n",
        )
        .expect("parses");
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            hosts[1],
            LabHost {
                name: "t-h2".into(),
                netns: "/run/netns/t-h2".into(),
                address: Ipv4Addr::new(198, 18, 7, 2),
                docker_host: "unix:///run/moor-lab/t/h2/docker.sock".into(),
            }
        );
    }

    #[test]
    fn rejects_what_is_not_a_host_line() {
        assert!(parse_hosts("t-h1 198.18.7.1\n").is_err());
        assert!(parse_hosts("t-h1 not-an-address unix:///x\n").is_err());
    }

    #[test]
    fn command_enters_the_namespace_with_docker_host_set() {
        let host = LabHost {
            name: "t-h1".into(),
            netns: "/run/netns/t-h1".into(),
            address: Ipv4Addr::new(198, 18, 7, 1),
            docker_host: "unix:///run/moor-lab/t/h1/docker.sock".into(),
        };
        let command = host.command("docker");
        assert_eq!(command.get_program(), "nsenter");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["--net=/run/netns/t-h1", "--", "docker"]);
        let envs: Vec<_> = command.get_envs().collect();
        assert_eq!(
            envs,
            [(
                OsStr::new("DOCKER_HOST"),
                Some(OsStr::new("unix:///run/moor-lab/t/h1/docker.sock"))
            )]
        );
    }
}
