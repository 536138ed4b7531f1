//! Pod address management: which address of the node's subnet each attachment
//! holds.
//!
//! [`Store`] is the interface the commands use; [`DiskStore`] keeps the state as
//! one file per address under a directory lock, in the manner of the reference
//! `host-local` IPAM plugin, so that state survives plugin and node-agent
//! restarts and concurrent plugin runs (the runtime runs ADDs for different pods
//! in parallel) never hand out the same address twice.

mod disk;
mod pool;

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

use crate::code::Code;

pub use disk::DiskStore;
pub use pool::Pool;

/// Errors of the IPAM store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The network config has no subnet: the weir agent has not written
    /// this node's podCIDR into it yet.
    #[error("no subnet yet: the weir agent has not written this node's podCIDR (try again later)")]
    NoSubnet,
    /// No free address is left.
    #[error("no free pod address left in {subnet} (all {size} are allocated)")]
    Exhausted {
        /// The subnet.
        subnet: Ipv4Network,
        /// How many pod addresses it has.
        size: u32,
    },
    /// The attachment already holds an address: ADD was called twice without
    /// DEL in between, which the spec forbids the runtime to do.
    #[error("{owner} already holds {ip}; DEL it before adding it again")]
    AlreadyAllocated {
        /// The attachment.
        owner: Owner,
        /// The address it holds.
        ip: Ipv4Addr,
    },
    /// Reading or writing the store failed.
    #[error("IPAM store: cannot {action} {}", path.display())]
    Io {
        /// What was being done ("create", "lock", "read", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The CNI error code: 101 exhausted, 102 store I/O, 103 duplicate ADD.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::NoSubnet => Code::TryAgainLater,
            Error::Exhausted { .. } => Code::IpamExhausted,
            Error::AlreadyAllocated { .. } => Code::IpamDuplicate,
            Error::Io { .. } => Code::IpamStore,
        }
    }
}

/// Who holds an address: the spec's primary key for plugin state (the network
/// name is implied by the store's directory).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

impl Owner {
    /// The owner of `ifname` in `container_id`.
    #[must_use]
    pub fn new(container_id: &str, ifname: &str) -> Self {
        Owner {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container {} interface {}", self.container_id, self.ifname)
    }
}

/// Address allocation state for one network on one node.
pub trait Store {
    /// Reserves the next free address for `owner`.
    ///
    /// Addresses are handed out in order, starting after the last one reserved
    /// and wrapping around, so a just-released address is not reused at once
    /// (its conntrack entries and the peers' caches still point at the old pod).
    fn allocate(&self, owner: &Owner) -> Result<Ipv4Addr>;

    /// Frees every address `owner` holds and returns them; holding none is not
    /// an error, since DEL must be idempotent.
    fn release(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>>;

    /// Every owner holding an address.
    fn owners(&self) -> Result<Vec<Owner>>;

    /// The addresses `owner` holds.
    fn held_by(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>>;

    /// Frees every address whose owner is not in `valid` (or that has no
    /// owner: an ADD that died before writing it) and returns them.
    fn collect_garbage(&self, valid: &std::collections::HashSet<Owner>) -> Result<Vec<Ipv4Addr>>;

    /// Whether ADD could allocate now: a subnet is known and the store is
    /// writable.
    fn ready(&self) -> Result<()>;
}
