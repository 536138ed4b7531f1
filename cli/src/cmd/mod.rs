//! One module per command; each returns its exit code (see [`crate::exit`]).

pub mod bpf;
pub mod ipam;
pub mod monitor;
pub mod service;
pub mod status;
pub mod trace;
