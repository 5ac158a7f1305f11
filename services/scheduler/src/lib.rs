//! The moor scheduler: binds pending pods to nodes, fast, and says why when
//! it cannot.
//!
//! Layers, bottom up: [`Resources`] (what pods request and nodes offer),
//! [`Cache`] (nodes and what bound and assumed pods commit on each),
//! [`filter`] and [`score`] (pure functions on plain structs), [`plan`] (one
//! pod against every node: verdicts, the choice, and the "why not" message),
//! the [`queue`] with back-off, and [`run`], the loop that ties them to the
//! API, under leader election when asked. The scheduler also serves `Plan`,
//! a dry run of [`plan`] over gRPC, and names itself as the Endpoints
//! `moor-system/moor-scheduler` so `moorctl schedule --dry-run` finds it.

pub mod cache;
mod config;
mod error;
pub mod filter;
mod plan;
pub mod queue;
mod resources;
mod scheduler;
pub mod score;
mod service;

pub use cache::{Cache, NodeInfo};
pub use config::{Config, LeaseConfig};
pub use error::Error;
pub use plan::{Decision, NodeVerdict, fit_error_message, plan, schedule, snapshot};
pub use resources::{Resources, pod_requests};
pub use scheduler::run;
pub use service::PUBLISHED_AS;

/// The scheduler name pods get by default, and the one this scheduler serves.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
