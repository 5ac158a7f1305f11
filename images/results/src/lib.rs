//! moor's reference application: `results-api` stores test-run results, `results-ui` shows
//! them as one server-rendered HTML page. Both binaries are thin: flags, logging and signals;
//! everything else lives here so that tests run both servers in-process.
//!
//! The binaries are linked statically and packed `FROM scratch`, so there is no glibc NSS:
//! the UI resolves the API's name with `moor_dns` through `/etc/resolv.conf`.

pub mod api;
pub mod client;
pub mod form;
pub mod http;
pub mod log;
pub mod record;
pub mod store;
pub mod ui;

pub use http::run_until_signal;
