//! moor's Rust client: the one place that builds gRPC requests to the
//! apiserver, owns the channel, and turns watches into streams that resume
//! from their last resourceVersion (re-listing only when history is gone).
//!
//! Layers, bottom up: [`Client`] and [`Api`] (one typed handle per kind, with
//! no per-kind code), [`watcher`] (list, then watch, resuming forever),
//! [`reflector`] (a cache fed by a watcher) and [`controller`] (a reconcile
//! loop over a work queue).

mod api;
mod backoff;
pub mod controller;
mod error;
pub mod events;
pub mod reflector;
mod servers;
pub mod watcher;

pub use api::{Api, Client, DeleteParams, Fence, ListParams, Scalable, WatchParams};
pub use backoff::Backoff;
pub use controller::{Action, Context, Controller};
pub use error::Error;
pub use reflector::{ObjectKey, Reader, Writer, reflector, store};
pub use servers::follow_servers;
pub use watcher::watcher;
