//! Per-packet translation on the node's uplink (IPv4): the node
//! configuration, the masquerade skip trie and the NAT table that is weir's
//! connection tracking.
//!
//! Every translated flow has entries in one LRU table, keyed by a packet's
//! tuple and the hook that sees it ([`NAT_INGRESS`]: arriving on the uplink,
//! [`NAT_EGRESS`]: leaving through it), each saying what the packet's
//! addresses and ports become ([`NatRewrite`]):
//!
//! - masquerade, pod → outside: egress rewrites the source to the node
//!   address and a reserved port; ingress rewrites the reply's destination
//!   back to the pod;
//! - NodePort / externalIP / LoadBalancer IP, outside → backend: ingress
//!   rewrites the destination to the backend (and the source to the node
//!   when the backend is on another node, so the reply comes back here);
//!   the reply is rewritten back to the frontend on egress (local backend)
//!   or ingress (remote backend).
//!
//! A flow idle long enough to be evicted by the LRU simply gets a fresh
//! mapping; established TCP flows are refreshed by every packet.
//!
//! Layout history: v1 (`weir_nat4_v1`) held a bare [`NatRewrite`]; v2 adds
//! what the operator's conntrack view needs — why the entry exists, which
//! side of the flow it translates, when it was created and last used
//! ([`Nat4Entry`]). The agent migrates a pinned v1 table on start, so an
//! upgrade keeps every established flow.

/// Name of the translation table: `BPF_MAP_TYPE_LRU_HASH`, [`Nat4Key`] → [`Nat4Entry`].
pub const NAT_MAP: &str = "weir_nat4_v2";
/// Capacity of [`NAT_MAP`] (two entries per flow).
pub const NAT_MAP_CAPACITY: u32 = 262_144;
/// Name of the previous layout of the translation table: `BPF_MAP_TYPE_LRU_HASH`,
/// [`Nat4Key`] → [`NatRewrite`]. Only read, to migrate it into [`NAT_MAP`].
pub const NAT_MAP_V1: &str = "weir_nat4_v1";
/// Name of the masquerade configuration: `BPF_MAP_TYPE_ARRAY` of one [`MasqConfig`].
pub const MASQ_CONFIG_MAP: &str = "weir_masq_cfg_v1";
/// Name of the destinations never masqueraded: `BPF_MAP_TYPE_LPM_TRIE`,
/// key = prefix length + IPv4 address (network byte order), value `u8` (1).
/// Holds the cluster's pod CIDR and every node address: pod-to-pod and
/// pod-to-node traffic keeps the pod's source address.
pub const MASQ_SKIP_MAP: &str = "weir_masq_skip4_v1";
/// Capacity of [`MASQ_SKIP_MAP`].
pub const MASQ_SKIP_MAP_CAPACITY: u32 = 4_096;

/// [`Nat4Key::direction`] of an entry found by the pod's outgoing tuple.
pub const NAT_EGRESS: u8 = 0;
/// [`Nat4Key::direction`] of an entry found by the reply's tuple.
pub const NAT_INGRESS: u8 = 1;

/// [`MasqConfig::flags`]: masquerading is on.
pub const MASQ_ENABLED: u32 = 1;

/// First and last port handed out when the pod's own port is taken
/// (Linux's default ephemeral range).
pub const NAT_PORT_MIN: u16 = 32_768;
/// See [`NAT_PORT_MIN`].
pub const NAT_PORT_MAX: u16 = 60_999;

/// A flow's tuple as one packet carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Nat4Key {
    /// Source address, network byte order.
    pub saddr: u32,
    /// Destination address, network byte order.
    pub daddr: u32,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// [`NAT_EGRESS`] or [`NAT_INGRESS`].
    pub direction: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 2],
}

/// What a packet's addresses and ports become (network byte order). Fields
/// equal to the packet's own are left alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NatRewrite {
    /// New source address.
    pub saddr: u32,
    /// New destination address.
    pub daddr: u32,
    /// New source port.
    pub sport: u16,
    /// New destination port.
    pub dport: u16,
}

/// Value of [`NAT_MAP`]: a rewrite and what the conntrack view shows of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Nat4Entry {
    /// What the packet becomes.
    pub rewrite: NatRewrite,
    /// Why the flow is translated: [`NAT_ORIGIN_MASQ`], [`NAT_ORIGIN_NODEPORT`],
    /// or [`NAT_ORIGIN_UNKNOWN`] (migrated from v1, which did not record it).
    pub origin: u8,
    /// [`NAT_F_REPLY`], [`NAT_F_SNAT`], [`NAT_F_MIGRATED`].
    pub flags: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 2],
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the flow was set up;
    /// 0 when unknown (migrated).
    pub created_ns: u64,
    /// `bpf_ktime_get_ns()` of the last packet, refreshed at most every
    /// [`NAT_REFRESH_NS`] so a busy flow does not write its entry per packet.
    pub last_seen_ns: u64,
}

/// [`Nat4Entry::origin`]: not recorded (an entry migrated from v1).
pub const NAT_ORIGIN_UNKNOWN: u8 = 0;
/// [`Nat4Entry::origin`]: a pod's flow masqueraded to the node address.
pub const NAT_ORIGIN_MASQ: u8 = 1;
/// [`Nat4Entry::origin`]: a connection from outside to a NodePort,
/// externalIP or LoadBalancer IP.
pub const NAT_ORIGIN_NODEPORT: u8 = 2;

/// [`Nat4Entry::flags`]: the entry translates the flow's replies.
pub const NAT_F_REPLY: u8 = 1;
/// [`Nat4Entry::flags`]: the flow leaves with the node's address as source
/// (masquerade, or NodePort to a backend on another node).
pub const NAT_F_SNAT: u8 = 2;
/// [`Nat4Entry::flags`]: copied from a v1 table by the agent; origin and
/// creation time are unknown.
pub const NAT_F_MIGRATED: u8 = 4;

/// How stale [`Nat4Entry::last_seen_ns`] may get before a packet refreshes it.
pub const NAT_REFRESH_NS: u64 = 1_000_000_000;

impl Nat4Entry {
    /// The v2 entry of a v1 table's value: same rewrite, marked migrated.
    /// Origin and age are not known; `last_seen_ns` 0 makes the flow's next
    /// packet record its time.
    #[must_use]
    pub const fn from_v1(rewrite: NatRewrite) -> Self {
        Self {
            rewrite,
            origin: NAT_ORIGIN_UNKNOWN,
            flags: NAT_F_MIGRATED,
            pad: [0; 2],
            created_ns: 0,
            last_seen_ns: 0,
        }
    }
}

/// Node settings for the uplink programs, written by the agent. The node
/// address is always set once known (NodePort SNAT needs it); masquerading
/// is on only with [`MASQ_ENABLED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MasqConfig {
    /// The node address pods are masqueraded to, network byte order.
    pub node_ip: u32,
    /// The cluster pod CIDR's address, network byte order: only sources in
    /// it are masqueraded (the node's own traffic already has its address).
    pub pod_cidr: u32,
    /// The pod CIDR's netmask, network byte order.
    pub pod_mask: u32,
    /// [`MASQ_ENABLED`] or 0.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<Nat4Key>() == 16);
const _: () = assert!(core::mem::size_of::<NatRewrite>() == 12);
const _: () = assert!(core::mem::size_of::<Nat4Entry>() == 32);
const _: () = assert!(core::mem::size_of::<MasqConfig>() == 16);

// SAFETY: repr(C), Copy, integers only, no implicit padding (size asserts).
#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Nat4Key {}
    unsafe impl aya::Pod for super::NatRewrite {}
    unsafe impl aya::Pod for super::Nat4Entry {}
    unsafe impl aya::Pod for super::MasqConfig {}
}
