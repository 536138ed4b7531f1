//! Map key and value types shared by weir's eBPF programs and the agent.
//!
//! Every type here is `#[repr(C)]`, `Copy`, has explicit padding fields and no
//! `bool`, so its byte layout is the same on both sides of the map and stable
//! across compilers. A layout change is a map-version change: bump the `_V<n>`
//! suffix of the map's name and teach the agent to migrate.
//!
//! Byte order: addresses and ports are stored exactly as the kernel hands them
//! to the programs (network byte order), so the datapath never swaps bytes on
//! its hot path. Counters and ids are host byte order.
#![no_std]

pub mod lb;
pub mod nat;
pub mod policy;

pub use lb::{Backend4, BackendId, Service4Key, Service4Value};
pub use nat::{MasqConfig, Nat4Entry, Nat4Key, NatRewrite};

/// `IPPROTO_TCP`, as found in `bpf_sock_addr.protocol`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`, as found in `bpf_sock_addr.protocol`.
pub const IPPROTO_UDP: u8 = 17;
