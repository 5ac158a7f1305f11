//! Leader election over `coordination.k8s.io/v1` Lease objects, through the
//! public API, as Kubernetes' client-go does it.
//!
//! A candidate takes the lease when it is free (no holder) or expired (its
//! record has not changed for `lease_duration` of the candidate's own clock,
//! so clocks need not agree), renews it every `retry_period`, and steps down
//! when it could not renew for `renew_deadline`. Every write is conditional
//! on the lease's resourceVersion, so two candidates never both win.
//!
//! Promise: [`Elector::terms`] holds `Some(token)` exactly while this
//! candidate believes it leads; the token is cancelled the moment it stops
//! (lost, stepped down or shut down). Work done under a term should also be
//! conditional at the API (as pod binds are), because a deposed leader learns
//! of its loss up to `renew_deadline` late.

mod config;
mod elector;
mod error;
mod lead;
mod record;

pub use config::Config;
pub use elector::Elector;
pub use error::Error;
pub use lead::{Timing, lead};
