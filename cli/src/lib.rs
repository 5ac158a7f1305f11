//! moorctl, a kubectl-style CLI for moor. Everything it knows about kinds
//! (names, fields, docs, table columns, services) comes from the proto
//! descriptors compiled into it: a kind added to proto/ gets every verb with
//! no code here.

pub mod args;
mod cmd;
mod columns;
pub mod config;
pub mod error;
mod jsonpath;
mod lines;
mod manifest;
mod objects;
mod output;
mod progress;
mod rpc;
mod table;
mod term;

pub use cmd::run;
pub use error::{Error, Result};
