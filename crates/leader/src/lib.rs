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
//! (lost, stepped down or shut down). A deposed leader learns of its loss
//! late (up to `renew_deadline`, or however long it was paused), so the
//! writes of work done under a term go through [`Elector::fence`] (what
//! [`lead`] hands its work), which shuts by the clock alone; they should
//! also be conditional at the API where they can be (as pod binds are).

mod config;
mod elector;
mod error;
mod lead;
mod record;

pub use config::Config;
pub use elector::Elector;
pub use error::Error;
pub use lead::{Timing, lead};
