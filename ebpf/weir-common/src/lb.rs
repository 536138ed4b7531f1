//! Load-balancer maps: service frontends and their backends (IPv4).
//!
//! The service map follows the "master entry plus slots" layout used by
//! Cilium's `lb4_services`: slot 0 of a frontend holds the number of backend
//! slots; slots `1..=count` each name one backend id. One lookup finds the
//! frontend, a second picks a slot, a third resolves the backend. Updating a
//! frontend writes the slots first and the master entry last, so a datapath
//! reader never sees a count that points past the written slots.

/// Name of the service map: `BPF_MAP_TYPE_HASH`, [`Service4Key`] → [`Service4Value`].
pub const SERVICES_MAP: &str = "weir_lb4_services_v1";
/// Capacity of [`SERVICES_MAP`] (frontends × (backends + 1) entries).
pub const SERVICES_MAP_CAPACITY: u32 = 65_536;
/// Name of the backend map: `BPF_MAP_TYPE_HASH`, [`BackendId`] → [`Backend4`].
pub const BACKENDS_MAP: &str = "weir_lb4_backends_v1";
/// Capacity of [`BACKENDS_MAP`].
pub const BACKENDS_MAP_CAPACITY: u32 = 65_536;

/// Name of the reverse-translation map: `BPF_MAP_TYPE_LRU_HASH`,
/// [`ReverseSockKey`] → [`ReverseSockValue`]. Written by the datapath only:
/// when a socket's destination is rewritten, the socket (by cookie) and the
/// chosen backend map back to the frontend, so `recvmsg()` on an unconnected
/// UDP socket and `getpeername()` report the VIP the application used.
pub const REVERSE_SK_MAP: &str = "weir_lb4_reverse_sk_v1";
/// Capacity of [`REVERSE_SK_MAP`].
pub const REVERSE_SK_MAP_CAPACITY: u32 = 262_144;

/// Name of the session-affinity map: `BPF_MAP_TYPE_LRU_HASH`,
/// [`Affinity4Key`] → [`Affinity4Value`]. The datapath writes it; the agent
/// prunes entries whose backend left the frontend.
pub const AFFINITY_MAP: &str = "weir_lb4_affinity_v1";
/// Capacity of [`AFFINITY_MAP`].
pub const AFFINITY_MAP_CAPACITY: u32 = 65_536;

/// [`Service4Value::flags`] of a master entry: `sessionAffinity: ClientIP`.
/// The master entry's `backend_id` then holds the timeout in seconds.
pub const SVC_FLAG_AFFINITY: u16 = 1;

/// Name of the Maglev lookup tables: `BPF_MAP_TYPE_HASH` (not
/// preallocated), master [`Service4Key`] → [`MaglevTable`].
pub const MAGLEV_MAP: &str = "weir_lb4_maglev_v1";
/// Capacity of [`MAGLEV_MAP`]: frontends using Maglev.
pub const MAGLEV_MAP_CAPACITY: u32 = 4_096;
/// Largest Maglev table (a prime); a table's own size may be smaller.
pub const MAGLEV_MAX_TABLE_SIZE: u32 = 1_021;

/// [`Service4Value::flags`] of a master entry: per-packet traffic picks its
/// backend from the frontend's [`MaglevTable`] by a hash of its tuple.
pub const SVC_FLAG_MAGLEV: u16 = 4;

/// Identifier of a backend in [`BACKENDS_MAP`] (host byte order, never 0).
pub type BackendId = u32;

/// Key of [`SERVICES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Service4Key {
    /// Frontend IPv4 address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// 0 for the master entry; `1..=count` for backend slots. Host byte order.
    pub backend_slot: u16,
    /// IP protocol number ([`crate::IPPROTO_TCP`], [`crate::IPPROTO_UDP`]).
    pub proto: u8,
    /// Explicit padding; always zero so equal keys hash equally.
    pub pad: [u8; 3],
}

/// Value of [`SERVICES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Service4Value {
    /// Slot entries: the backend this slot points to. Master entry: the
    /// affinity timeout in seconds with [`SVC_FLAG_AFFINITY`], else 0.
    pub backend_id: BackendId,
    /// Master entry: number of backend slots (0 = no ready backend; reject).
    /// Slot entries: 0.
    pub count: u16,
    /// Master entry: [`SVC_FLAG_AFFINITY`] and later flags. Slots: 0.
    pub flags: u16,
}

/// Value of [`BACKENDS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Backend4 {
    /// Backend IPv4 address, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// [`BACKEND_LOCAL`] when the backend runs on this node.
    pub flags: u8,
}

/// [`Backend4::flags`]: the backend is on this node. NodePort traffic to a
/// remote backend is SNATed to the node so its reply returns through here;
/// traffic to a local one keeps the client's address.
pub const BACKEND_LOCAL: u8 = 1;

/// [`Service4Value::flags`] of a master entry: the frontend is reachable from outside the node (NodePort,
/// externalIP, LoadBalancer IP) and is served by the TC programs too.
pub const SVC_FLAG_EXTERNAL: u16 = 2;

/// Key of [`AFFINITY_MAP`]: one client of one frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Affinity4Key {
    /// The client: its network namespace cookie at the socket layer (one
    /// per pod, so per pod IP, and known before the source address is).
    pub client: u64,
    /// Frontend address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
}

/// [`Affinity4Key::client`] of the per-packet path: the client's address
/// (network byte order) with this top bit set, kept apart from the socket
/// layer's network namespace cookies.
pub const AFFINITY_CLIENT_IP_TAG: u64 = 1 << 63;

/// The Maglev hash of a connection's tuple (every field as it sits in the
/// packet: network byte order). The same connection hashes the same on every
/// node, whichever node the load balancer in front picks; the datapath and
/// `weir trace` share this one definition so a prediction cannot drift.
#[inline(always)]
#[expect(clippy::inline_always, reason = "the eBPF programs inline every helper: the verifier sees one function")]
#[must_use]
pub fn flow_hash(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = u64::from(saddr) << 32 | u64::from(daddr);
    h ^= (u64::from(sport) << 24) | (u64::from(dport) << 8) | u64::from(proto);
    // splitmix64 finaliser: every input bit reaches every output bit.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    #[expect(clippy::cast_possible_truncation, reason = "folding to 32 bits on purpose")]
    let folded = (h ^ (h >> 32)) as u32;
    folded
}

/// Value of [`AFFINITY_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Affinity4Value {
    /// `bpf_ktime_get_ns()` of the last connection that used it.
    pub last_used_ns: u64,
    /// The backend the client sticks to.
    pub backend_id: BackendId,
    /// Explicit padding; always zero.
    pub pad: u32,
}

/// Value of [`MAGLEV_MAP`]: the lookup table of one frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    /// Entries in use (a prime ≤ [`MAGLEV_MAX_TABLE_SIZE`]).
    pub size: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
    /// Backend ids; only the first `size` are meaningful.
    pub backends: [BackendId; MAGLEV_MAX_TABLE_SIZE as usize],
}

/// Key of [`REVERSE_SK_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReverseSockKey {
    /// The socket's cookie (`bpf_get_socket_cookie`).
    pub cookie: u64,
    /// Backend address, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub pad: u16,
}

/// Value of [`REVERSE_SK_MAP`]: the frontend the application dialled.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReverseSockValue {
    /// Frontend address, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub pad: u16,
}

const _: () = assert!(core::mem::size_of::<MaglevTable>() == 8 + 4 * MAGLEV_MAX_TABLE_SIZE as usize);
const _: () = assert!(core::mem::size_of::<Affinity4Key>() == 16);
const _: () = assert!(core::mem::size_of::<Affinity4Value>() == 16);
const _: () = assert!(core::mem::size_of::<ReverseSockKey>() == 16);
const _: () = assert!(core::mem::size_of::<ReverseSockValue>() == 8);
const _: () = assert!(core::mem::size_of::<Service4Key>() == 12);
const _: () = assert!(core::mem::size_of::<Service4Value>() == 8);
const _: () = assert!(core::mem::size_of::<Backend4>() == 8);

// SAFETY: all three types are `repr(C)`, `Copy`, made only of integers, and
// have no implicit padding (checked by the size asserts above), so every bit
// pattern is valid and reading them from a map is sound.
#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Service4Key {}
    unsafe impl aya::Pod for super::Service4Value {}
    unsafe impl aya::Pod for super::Backend4 {}
    unsafe impl aya::Pod for super::MaglevTable {}
    unsafe impl aya::Pod for super::Affinity4Key {}
    unsafe impl aya::Pod for super::Affinity4Value {}
    unsafe impl aya::Pod for super::ReverseSockKey {}
    unsafe impl aya::Pod for super::ReverseSockValue {}
}
