//! The iptables programs, run as processes as kube-proxy does: an atomic
//! `iptables-restore --noflush` for the rules, `iptables -C/-I/-D` for the
//! jumps from the built-in chains, `iptables-save` to find leftovers.
//! Blocking: callers run these off the async threads.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use super::Error;
use super::rules::{Chain, Chains, Kind};

/// Seconds to wait for the xtables lock (the legacy backend's; nft ignores it).
const WAIT: &str = "5";

/// Applies `input` atomically, leaving other chains alone.
pub fn restore(input: &str) -> Result<(), Error> {
    let program = "iptables-restore";
    let mut child = Command::new(program)
        .args(["-w", WAIT, "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the program exited early: its status says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| Error::Spawn { program, source })?;
    check(program, &out)
}

/// moor's chains (of `chains`' prefix) now in the kernel.
pub fn present(chains: &Chains) -> Result<BTreeSet<Chain>, Error> {
    let mut found = BTreeSet::new();
    for kind in [Kind::Filter, Kind::Nat] {
        let program = "iptables-save";
        let out = Command::new(program)
            .args(["-t", kind.name()])
            .output()
            .map_err(|source| Error::Spawn { program, source })?;
        check(program, &out)?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line
                .strip_prefix(':')
                .and_then(|l| l.split_whitespace().next())
            else {
                continue;
            };
            if chains.owns(name) {
                found.insert((kind, name.to_string()));
            }
        }
    }
    Ok(found)
}

/// Inserts the jumps from the built-in chains that are missing.
pub fn ensure_jumps(chains: &Chains) -> Result<(), Error> {
    for (kind, builtin, target) in chains.jumps() {
        if !iptables(kind, "-C", builtin, &target)? {
            let inserted = iptables(kind, "-I", builtin, &target)?;
            if !inserted {
                return Err(Error::Failed {
                    program: "iptables",
                    stderr: format!("cannot insert -t {} {builtin} -j {target}", kind.name()),
                });
            }
        }
    }
    Ok(())
}

/// Removes every chain of `chains`' prefix and the jumps to them; returns
/// what could not be removed. Safe to call when nothing is there.
pub fn cleanup(chains: &Chains) -> Vec<String> {
    let mut problems = Vec::new();
    for (kind, builtin, target) in chains.jumps() {
        // A jump inserted twice (by hand, or a race) is deleted twice.
        for _ in 0..8 {
            match iptables(kind, "-D", builtin, &target) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(err) => {
                    problems.push(err.to_string());
                    break;
                }
            }
        }
    }
    let present = match present(chains) {
        Ok(present) => present,
        Err(err) => {
            problems.push(err.to_string());
            return problems;
        }
    };
    if present.is_empty() {
        return problems;
    }
    let mut input = String::new();
    for kind in [Kind::Filter, Kind::Nat] {
        let mine: Vec<&str> = present
            .iter()
            .filter(|c| c.0 == kind)
            .map(|c| c.1.as_str())
            .collect();
        input.push_str(&format!("*{}\n", kind.name()));
        // Declaring flushes, so the rules that jump between them go first.
        for chain in &mine {
            input.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for chain in &mine {
            input.push_str(&format!("-X {chain}\n"));
        }
        input.push_str("COMMIT\n");
    }
    if let Err(err) = restore(&input) {
        problems.push(err.to_string());
    }
    problems
}

/// `iptables -w -t <table> <op> <builtin> -j <target>`: Ok(false) when the
/// rule is not there (`-C`/`-D`) or the program said no.
fn iptables(kind: Kind, op: &str, builtin: &str, target: &str) -> Result<bool, Error> {
    let program = "iptables";
    let status = Command::new(program)
        .args(["-w", WAIT, "-t", kind.name(), op, builtin, "-j", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| Error::Spawn { program, source })?;
    Ok(status.success())
}

fn check(program: &'static str, out: &std::process::Output) -> Result<(), Error> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(Error::Failed {
        program,
        stderr: if stderr.is_empty() {
            out.status.to_string()
        } else {
            stderr
        },
    })
}
