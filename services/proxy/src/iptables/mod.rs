//! The kernel data path (`--mode iptables`): the [`Table`] as NAT rules in
//! moor's own chains, as kube-proxy's iptables mode, so forwarded packets
//! never reach this process.
//!
//! Promises: rules are rewritten only when the table changes, in one atomic
//! `iptables-restore --noflush` (a failure leaves the last good rules in
//! place and is reported); a run replaces a previous run's leftovers; moor's
//! chains and jumps are removed on [`Kernel::close`], or on drop if the proxy
//! died without closing. Other chains (Docker's, ...) are never touched.
//!
//! Once new rules are in, the conntrack entries they leave stale (UDP flows
//! and dead TCP entries NATed to removed endpoints, untranslated flows of a
//! service that had none) are deleted (see `conntrack`).

mod command;
mod conntrack;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub use command::cleanup;
pub use rules::{Chain, Chains, Kind, MASQ_MARK, Ruleset};

use crate::table::{Frontend, Table};

/// What went wrong running iptables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started (not installed?).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{program} failed: {stderr}")]
    Failed {
        /// The program.
        program: &'static str,
        /// What it said.
        stderr: String,
    },
    /// The chain prefix cannot make valid chain names.
    #[error("chain prefix {0:?} must be 1 to 7 upper-case letters or digits")]
    Prefix(String),
}

/// moor's rules in the kernel.
pub struct Kernel {
    chains: Chains,
    /// moor's chains in the kernel now (at first: a previous run's).
    present: BTreeSet<Chain>,
    /// The input last applied.
    applied: Option<String>,
    /// The frontends and endpoint addresses of the rules in place.
    routes: BTreeMap<Frontend, BTreeSet<IpAddr>>,
    closed: bool,
}

// === impl Kernel ===

impl Kernel {
    /// Prepares the host: checks that iptables runs, finds a previous run's
    /// chains (replaced by the first [`Kernel::apply`]) and lets node ports
    /// answer on 127.0.0.1 (`route_localnet`, as kube-proxy).
    pub async fn open(prefix: &str) -> Result<Self, Error> {
        let chains = Chains::new(prefix).ok_or_else(|| Error::Prefix(prefix.to_string()))?;
        let probe = chains.clone();
        let present = blocking(move || command::present(&probe)).await?;
        if !present.is_empty() {
            tracing::info!(
                chains = present.len(),
                prefix,
                "replacing the rules of a previous run"
            );
        }
        if let Err(err) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
            tracing::warn!(%err, "cannot set route_localnet; node ports will not answer on 127.0.0.1");
        }
        Ok(Self {
            chains,
            present,
            applied: None,
            routes: BTreeMap::new(),
            closed: false,
        })
    }

    /// Converges the kernel's rules to `table`; returns the problems (the
    /// last good rules stay in place on failure).
    pub async fn apply(&mut self, table: &Table) -> Vec<String> {
        let ruleset = self.chains.render(table, &self.present);
        if self.applied.as_ref() == Some(&ruleset.text) {
            return Vec::new();
        }
        let chains = self.chains.clone();
        let text = ruleset.text.clone();
        let result = blocking(move || {
            command::restore(&text)?;
            // After the restore: the jumps need their target chains.
            command::ensure_jumps(&chains)
        })
        .await;
        match result {
            Ok(()) => {
                tracing::debug!(chains = ruleset.chains.len(), "iptables rules applied");
                self.present = ruleset.chains;
                self.applied = Some(ruleset.text);
                let routes = conntrack::routes(table);
                let stale = conntrack::stale(&self.routes, &routes);
                self.routes = routes;
                if stale.is_empty() {
                    return Vec::new();
                }
                tracing::debug!(entries = stale.len(), "deleting stale conntrack entries");
                blocking(move || conntrack::delete(&stale)).await
            }
            Err(err) => {
                // Forget what was applied so the next update retries.
                self.applied = None;
                vec![format!("iptables rules not applied: {err}")]
            }
        }
    }

    /// How many service chains are in the kernel.
    pub fn chains(&self) -> usize {
        self.present.len()
    }

    /// Removes moor's chains and the jumps to them.
    pub async fn close(&mut self) {
        let chains = self.chains.clone();
        let problems = blocking(move || command::cleanup(&chains)).await;
        for problem in problems {
            tracing::warn!(%problem, "could not remove an iptables rule");
        }
        self.closed = true;
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // The proxy died (a panic, or its runtime dropped it): no rule may
        // outlive it and send traffic nowhere.
        for problem in command::cleanup(&self.chains) {
            tracing::warn!(%problem, "could not remove an iptables rule");
        }
    }
}

/// Runs iptables off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

#[cfg(test)]
mod tests;
