//! Service and backend maps and the backend selection on top of them.

use aya_ebpf::bindings::BPF_F_NO_PREALLOC;
use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use aya_ebpf::macros::map;
use aya_ebpf::maps::{HashMap, LruHashMap};
use weir_common::lb::{
    AFFINITY_MAP_CAPACITY, Affinity4Key, Affinity4Value, BACKENDS_MAP_CAPACITY, Backend4, BackendId,
    MAGLEV_MAP_CAPACITY, MAGLEV_MAX_TABLE_SIZE, MaglevTable, SERVICES_MAP_CAPACITY, SVC_FLAG_AFFINITY,
    SVC_FLAG_EXTERNAL, SVC_FLAG_MAGLEV, Service4Key, Service4Value,
};

#[map(name = "weir_lb4_services_v1")]
static SERVICES: HashMap<Service4Key, Service4Value> = HashMap::pinned(SERVICES_MAP_CAPACITY, 0);

#[map(name = "weir_lb4_backends_v1")]
static BACKENDS: HashMap<BackendId, Backend4> = HashMap::pinned(BACKENDS_MAP_CAPACITY, 0);

#[map(name = "weir_lb4_maglev_v1")]
static MAGLEV: HashMap<Service4Key, MaglevTable> = HashMap::pinned(MAGLEV_MAP_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "weir_lb4_affinity_v1")]
static AFFINITY: LruHashMap<Affinity4Key, Affinity4Value> = LruHashMap::pinned(AFFINITY_MAP_CAPACITY, 0);

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
/// one of its backends: the one `client` used last if the Service has
/// `sessionAffinity: ClientIP` and the timeout has not passed, otherwise one
/// by Maglev if the frontend uses it and a `flow_hash` is given (the
/// per-packet path), otherwise uniformly at random. With `external_only`,
/// frontends not reachable from outside the node (ClusterIPs) are not
/// services.
#[inline(always)]
pub fn select_backend(
    address: u32,
    port: u16,
    proto: u8,
    client: u64,
    external_only: bool,
    flow_hash: Option<u32>,
) -> Verdict {
    let mut key = service_key(address, port, proto);
    // SAFETY: the value is copied out at once; a concurrent agent update can at
    // worst give us the old or the new master, both of which name written slots.
    let Some(master) = (unsafe { SERVICES.get(&key) }).copied() else {
        return Verdict::NotAService;
    };
    // The per-packet path serves only frontends meant for outside clients;
    // a ClusterIP is answered at the socket layer of in-cluster clients.
    if external_only && master.flags & SVC_FLAG_EXTERNAL == 0 {
        return Verdict::NotAService;
    }
    if master.count == 0 {
        return Verdict::NoBackend;
    }
    let affinity = master.flags & SVC_FLAG_AFFINITY != 0;
    let affinity_key = Affinity4Key { client, address, port, proto, pad: 0 };
    // Only affinity needs the time: no clock read for other frontends.
    // SAFETY: no arguments, cannot fail.
    let now = if affinity { unsafe { bpf_ktime_get_ns() } } else { 0 };
    if affinity && let Some(backend) = sticky_backend(&affinity_key, master.backend_id, now) {
        return Verdict::Backend(backend);
    }
    let maglev = match flow_hash {
        Some(hash) if master.flags & SVC_FLAG_MAGLEV != 0 => maglev_backend(&key, hash),
        _ => None,
    };
    let backend_id = match maglev {
        Some(id) => id,
        None => {
            // Slots are 1-based; slot 0 is the master entry read above.
            #[expect(clippy::cast_possible_truncation, reason = "the remainder is below count, which is a u16")]
            // SAFETY: bpf_get_prandom_u32 takes no arguments and cannot fail.
            let slot = (unsafe { bpf_get_prandom_u32() } % u32::from(master.count)) as u16 + 1;
            key.backend_slot = slot;
            // SAFETY: as above, values are copied out immediately.
            let Some(id) = (unsafe { SERVICES.get(&key) }).map(|s| s.backend_id) else {
                return Verdict::NoBackend;
            };
            id
        }
    };
    // SAFETY: as above.
    let Some(backend) = (unsafe { BACKENDS.get(&backend_id) }).copied() else {
        return Verdict::NoBackend;
    };
    if affinity {
        // Losing this write only loses stickiness for one connection.
        let _ = AFFINITY.insert(&affinity_key, &Affinity4Value { last_used_ns: now, backend_id, pad: 0 }, 0);
    }
    Verdict::Backend(backend)
}

/// The master key of frontend `address:port/proto`, written as three
/// words: a literal's `pad: [0; 3]` compiles to a call to a byte-wise memset
/// loop on this target.
#[inline(always)]
fn service_key(address: u32, port: u16, proto: u8) -> Service4Key {
    const _: () = assert!(cfg!(target_endian = "little"), "the words below are laid out little-endian");
    let mut key = core::mem::MaybeUninit::<Service4Key>::uninit();
    let words = key.as_mut_ptr().cast::<u32>();
    // SAFETY: three aligned u32 words fill the 12-byte, 4-aligned key: the
    // address; the port with slot 0 above it; the protocol with zero padding
    // above it.
    unsafe {
        words.write(address);
        words.add(1).write(u32::from(port));
        words.add(2).write(u32::from(proto));
        key.assume_init()
    }
}

/// The backend `key`'s client used within `timeout_secs`, refreshed. The
/// agent removes entries whose backend left the frontend, so a backend found
/// here is still one of its backends.
#[inline(always)]
fn sticky_backend(key: &Affinity4Key, timeout_secs: u32, now: u64) -> Option<Backend4> {
    let entry = AFFINITY.get_ptr(key)?;
    // SAFETY: a map value stays valid for the program's run; read field by
    // field (a whole-struct copy compiles to a call to a byte-wise memmove).
    let last =
        unsafe { Affinity4Value { last_used_ns: (*entry).last_used_ns, backend_id: (*entry).backend_id, pad: 0 } };
    if now.saturating_sub(last.last_used_ns) > u64::from(timeout_secs) * 1_000_000_000 {
        return None;
    }
    // SAFETY: copied out at once.
    let backend = (unsafe { BACKENDS.get(&last.backend_id) }).copied()?;
    let _ = AFFINITY.insert(key, &Affinity4Value { last_used_ns: now, ..last }, 0);
    Some(backend)
}

/// The backend Maglev assigns to a flow hash, if the frontend (by its
/// master key) has a table. Without one (a reconcile in progress) the
/// caller falls back to random selection.
#[inline(always)]
fn maglev_backend(master: &Service4Key, hash: u32) -> Option<BackendId> {
    let table = MAGLEV.get_ptr(master)?;
    // SAFETY: the pointer comes from a successful lookup; only two plain
    // integers are read.
    let size = unsafe { (*table).size };
    if size == 0 {
        return None;
    }
    let index = (hash % size) as usize;
    if index >= MAGLEV_MAX_TABLE_SIZE as usize {
        return None;
    }
    // SAFETY: index is below the array length (checked above).
    Some(unsafe { (*table).backends[index] })
}
