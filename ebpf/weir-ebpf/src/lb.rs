//! Service and backend maps and the backend selection on top of them.

use aya_ebpf::{helpers::bpf_get_prandom_u32, macros::map, maps::HashMap};
use weir_common::lb::{
    BACKENDS_MAP_CAPACITY, Backend4, BackendId, SERVICES_MAP_CAPACITY, Service4Key, Service4Value,
};

#[map(name = "weir_lb4_services_v1")]
static SERVICES: HashMap<Service4Key, Service4Value> = HashMap::pinned(SERVICES_MAP_CAPACITY, 0);

#[map(name = "weir_lb4_backends_v1")]
static BACKENDS: HashMap<BackendId, Backend4> = HashMap::pinned(BACKENDS_MAP_CAPACITY, 0);

/// What the load balancer decided for one destination.
pub enum Verdict {
    /// Not a frontend weir serves: leave the destination alone.
    NotAService,
    /// A frontend with no usable backend: refuse the connection.
    NoBackend,
    /// Send the connection here.
    Backend(Backend4),
}

/// Looks up the frontend `address:port/proto` (network byte order) and picks
/// one of its backends uniformly at random.
#[inline(always)]
pub fn select_backend(address: u32, port: u16, proto: u8) -> Verdict {
    let mut key = Service4Key {
        address,
        port,
        backend_slot: 0,
        proto,
        pad: [0; 3],
    };
    // SAFETY: the value is copied out at once; a concurrent agent update can at
    // worst give us the old or the new count, both of which name written slots.
    let Some(count) = (unsafe { SERVICES.get(&key) }).map(|svc| svc.count) else {
        return Verdict::NotAService;
    };
    if count == 0 {
        return Verdict::NoBackend;
    }
    // Slots are 1-based; slot 0 is the master entry read above.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the remainder is below count, which is a u16"
    )]
    // SAFETY: bpf_get_prandom_u32 takes no arguments and cannot fail.
    let slot = (unsafe { bpf_get_prandom_u32() } % u32::from(count)) as u16 + 1;
    key.backend_slot = slot;
    // SAFETY: as above, values are copied out immediately.
    let Some(backend_id) = (unsafe { SERVICES.get(&key) }).map(|s| s.backend_id) else {
        return Verdict::NoBackend;
    };
    // SAFETY: as above.
    match unsafe { BACKENDS.get(&backend_id) } {
        Some(backend) => Verdict::Backend(*backend),
        None => Verdict::NoBackend,
    }
}
