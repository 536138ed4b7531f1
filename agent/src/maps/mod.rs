//! The load-balancer maps as the reconciler sees them: one trait, a real
//! implementation over pinned eBPF maps and an in-memory fake for unit tests.

pub mod dump;
mod fake;
mod masq;
mod pinned;
pub mod policy;
pub mod policy_eval;
mod policy_pinned;

pub use dump::{MapDump, dump_pinned};
pub use fake::FakeLbMaps;
pub use masq::{MasqMaps, PinnedMasqMaps};
pub use pinned::PinnedLbMaps;
pub use policy::{FakePolicyMaps, PolicyMaps, RuleKey};
pub use policy_pinned::PinnedPolicyMaps;

use weir_common::lb::{Affinity4Key, Affinity4Value, MaglevTable};
use weir_common::{Backend4, BackendId, Service4Key, Service4Value};

/// Errors from reading or writing a map.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A map operation failed in the kernel.
    #[error("{op} on map {map}")]
    Map {
        /// Which map.
        map: &'static str,
        /// What was attempted (`update`, `delete`, `iterate`).
        op: &'static str,
        /// The kernel's answer.
        #[source]
        source: aya::maps::MapError,
    },
    /// A map has no room for another entry: raise its size (`--map-size-*`).
    /// The reconciler's write order leaves every frontend either as it was
    /// or fully updated.
    #[error("map {map} is full; raise its capacity")]
    Full {
        /// Which map.
        map: &'static str,
    },
    /// The eBPF object did not contain a map the agent needs.
    #[error("map {0} is missing from the eBPF object")]
    Missing(&'static str),
    /// Injected by a test.
    #[error("injected failure: {0}")]
    Injected(&'static str),
}

/// Result of map operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The service and backend maps (layouts in `weir_common::lb`).
///
/// Writes are idempotent: writing an existing value again and deleting a
/// missing key both succeed, so a failed reconcile can simply be retried.
pub trait LbMaps {
    /// All entries of the service map.
    fn services(&self) -> Result<Vec<(Service4Key, Service4Value)>>;
    /// All entries of the backend map.
    fn backends(&self) -> Result<Vec<(BackendId, Backend4)>>;
    /// Inserts or replaces a service map entry.
    fn put_service(&mut self, key: &Service4Key, value: &Service4Value) -> Result<()>;
    /// Removes a service map entry; a missing key is success.
    fn delete_service(&mut self, key: &Service4Key) -> Result<()>;
    /// Inserts or replaces a backend.
    fn put_backend(&mut self, id: BackendId, backend: &Backend4) -> Result<()>;
    /// Removes a backend; a missing id is success.
    fn delete_backend(&mut self, id: BackendId) -> Result<()>;
    /// All Maglev tables, by master key.
    fn maglev_tables(&self) -> Result<Vec<(Service4Key, MaglevTable)>>;
    /// Inserts or replaces a frontend's Maglev table.
    fn put_maglev(&mut self, key: &Service4Key, table: &MaglevTable) -> Result<()>;
    /// Removes a Maglev table; a missing key is success.
    fn delete_maglev(&mut self, key: &Service4Key) -> Result<()>;
    /// All session-affinity entries (written by the datapath).
    fn affinities(&self) -> Result<Vec<(Affinity4Key, Affinity4Value)>>;
    /// Removes a session-affinity entry; a missing key is success.
    fn delete_affinity(&mut self, key: &Affinity4Key) -> Result<()>;
}

/// A stable, sorted text dump of both maps, one entry per line, for tests
/// and operators (addresses decoded from network byte order).
pub fn dump(maps: &impl LbMaps) -> Result<String> {
    use std::fmt::Write as _;
    use std::net::Ipv4Addr;

    let mut services = maps.services()?;
    services.sort_unstable_by_key(|(k, _)| {
        (
            k.address.to_ne_bytes(),
            u16::from_be(k.port),
            k.proto,
            k.backend_slot,
        )
    });
    let mut backends = maps.backends()?;
    backends.sort_unstable_by_key(|(id, _)| *id);
    let mut out = String::new();
    for (k, v) in services {
        let frontend = format!(
            "{}:{}/{}",
            Ipv4Addr::from(k.address.to_ne_bytes()),
            u16::from_be(k.port),
            k.proto
        );
        let _ = if k.backend_slot == 0 {
            writeln!(out, "svc {frontend} count={}", v.count)
        } else {
            writeln!(
                out,
                "svc {frontend} slot={} backend={}",
                k.backend_slot, v.backend_id
            )
        };
    }
    for (id, b) in backends {
        let _ = writeln!(
            out,
            "backend {id} {}:{}/{}",
            Ipv4Addr::from(b.address.to_ne_bytes()),
            u16::from_be(b.port),
            b.proto
        );
    }
    Ok(out)
}
