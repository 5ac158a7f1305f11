//! Per-kind strategies: defaulting, validation and the hooks that differ by
//! kind, behind one trait so the registry stays generic (Kubernetes' apiserver
//! does the same with its per-kind strategies).

mod cluster;
mod config;
mod pod;
mod service;
mod workloads;

use std::future::Future;

use moor_api::Resource;

use crate::alloc::Allocator;
use crate::error::Error;
use crate::validate::Errors;

pub use workloads::Scalable;

/// A kind the apiserver stores: `Resource` plus its strategy.
pub trait Kind: Resource {
    /// Names are DNS-1123 labels (namespaces) rather than subdomains.
    const NAME_IS_LABEL: bool = false;

    /// Resets what a client may not set on create (usually the status).
    fn prepare_create(&mut self) {
        self.clear_status();
    }

    /// Fills in defaults, on create and on every update.
    fn set_defaults(&mut self) {}

    /// Validates the object, `old` being the stored one on update. Metadata is
    /// validated by the registry.
    fn validate(&self, _old: Option<&Self>, _errors: &mut Errors) {}

    /// Seconds a delete waits by default before the object is removed, when
    /// something (a node agent) must confirm; `None`: removed at once.
    fn graceful_deletion(&self) -> Option<i64> {
        None
    }

    /// Whether finalizers still hold the object back from removal.
    fn has_finalizers(&self) -> bool {
        !self.meta().finalizers.is_empty()
    }

    /// Marks the object as being deleted (beyond deletionTimestamp).
    fn mark_deleting(&mut self) {}

    /// Reserves what the object needs from shared pools (cluster IPs, node
    /// ports); `old` on update. Returns what was newly reserved.
    fn allocate(
        &mut self,
        _old: Option<&Self>,
        _alloc: &Allocator,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The pool reservations the object holds.
    fn allocations(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Checks that a required string field is set.
pub(crate) fn require(errors: &mut Errors, path: &str, value: &str) {
    if value.is_empty() {
        errors.required(path);
    }
}
