//! Cluster IPs on the host: every address the proxy listens on is put on
//! one interface (the dummy `moor0` where the kernel has that link type,
//! else the loopback), and addresses of the service range that no service
//! uses any more are taken off.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use moor_hostnet::{DummyOutcome, Ipv4Net};

/// The dummy interface the proxy prefers.
pub const DUMMY: &str = "moor0";

/// The host interface that carries the cluster IPs.
#[derive(Clone, Debug)]
pub struct HostAddresses {
    interface: String,
}

// === impl HostAddresses ===

impl HostAddresses {
    /// `interface`, or with `None` the dummy `moor0`, created if missing,
    /// falling back to `lo` where the kernel has no dummy link type.
    pub async fn open(interface: Option<String>) -> Result<Self, moor_hostnet::Error> {
        if let Some(interface) = interface {
            return Ok(Self { interface });
        }
        let outcome = blocking(|| moor_hostnet::ensure_dummy(DUMMY)).await?;
        let interface = match outcome {
            DummyOutcome::Created | DummyOutcome::Existed => DUMMY.to_string(),
            DummyOutcome::Unsupported => {
                tracing::info!("this kernel has no dummy links; cluster IPs go on lo");
                "lo".to_string()
            }
        };
        Ok(Self { interface })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Makes the /32 addresses of `range` on the interface exactly `wanted`.
    /// Returns the problems, one per address that could not be changed.
    pub async fn converge(&self, range: Ipv4Net, wanted: BTreeSet<Ipv4Addr>) -> Vec<String> {
        let interface = self.interface.clone();
        blocking(move || {
            let mut problems = Vec::new();
            let present: BTreeSet<Ipv4Addr> = match moor_hostnet::list_addresses(&interface) {
                Ok(list) => list
                    .into_iter()
                    .filter(|net| net.prefix_len() == 32 && range.contains(&net.addr()))
                    .map(|net| net.addr())
                    .collect(),
                Err(err) => return vec![err.to_string()],
            };
            for ip in present.difference(&wanted) {
                if let Err(err) = moor_hostnet::remove_address(&interface, host(*ip)) {
                    problems.push(err.to_string());
                }
            }
            for ip in wanted.difference(&present) {
                if let Err(err) = moor_hostnet::add_address(&interface, host(*ip)) {
                    problems.push(err.to_string());
                }
            }
            problems
        })
        .await
    }
}

fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}

/// Runs a netlink call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}
