//! NetworkPolicy maps: what the agent compiles policies into and the
//! per-pod TC programs enforce.
//!
//! # Design
//!
//! Enforcement runs on each pod's host-side veth (`weir…` in the node netns):
//! tcx ingress there sees what the pod sends (its **egress**), tcx egress
//! what it is sent (its **ingress**). Service traffic arrives already
//! translated (socket-LB rewrote the `connect()`, NodePort DNAT happened on
//! the uplink), so it is judged against the real backend pod.
//!
//! - [`POLICY_ENDPOINTS_MAP`]: local pod IP → [`PolicyEndpoint`]: the pod's
//!   endpoint id and which directions some policy isolates. No entry, or the
//!   direction's flag clear: that direction is not isolated (allowed).
//! - [`POLICY_RULES_MAP`]: an LPM trie per (endpoint, direction) over the
//!   peer address. The agent inserts every prefix any rule of the endpoint
//!   mentions (pod /32s, ipBlock CIDRs and their `except`s) with, as value,
//!   the union of the port ranges of every rule that matches **all** of that
//!   prefix — so the longest match for a peer address holds exactly what the
//!   peer may use. An `except` prefix holds what the other rules still allow
//!   (often nothing: `count == 0` denies).
//! - [`POLICY_CT_MAP`]: connections a policy check allowed, per endpoint and
//!   direction, so replies pass without a rule (stateful).
//! - [`POLICY_HOSTS_MAP`]: the node's own addresses: traffic from the pod's
//!   own node is always allowed into it (kubelet probes; upstream
//!   conformance expects it).
//! - [`POLICY_VERDICTS_MAP`]: a ring buffer of [`PolicyVerdict`]s, every drop
//!   and, with [`POLICY_LOG_ALLOWS`] set in [`POLICY_CONFIG_MAP`], every new
//!   allowed connection.
#![allow(clippy::doc_markdown)]

/// Local pod IP (network byte order, `u32`) → [`PolicyEndpoint`] (hash).
pub const POLICY_ENDPOINTS_MAP: &str = "weir_pol_endpoints_v1";
/// Capacity of [`POLICY_ENDPOINTS_MAP`]: pods on one node.
pub const POLICY_ENDPOINTS_MAP_CAPACITY: u32 = 4_096;
/// `lpm_trie::Key<`[`PolicyRuleKey`]`>` → [`PolicyRuleValue`] (LPM trie,
/// `BPF_F_NO_PREALLOC`).
pub const POLICY_RULES_MAP: &str = "weir_pol_rules_v1";
/// Capacity of [`POLICY_RULES_MAP`].
pub const POLICY_RULES_MAP_CAPACITY: u32 = 65_536;
/// [`PolicyCtKey`] → [`PolicyCtValue`] (LRU hash).
pub const POLICY_CT_MAP: &str = "weir_pol_ct_v1";
/// Capacity of [`POLICY_CT_MAP`].
pub const POLICY_CT_MAP_CAPACITY: u32 = 131_072;
/// The node's own addresses (`u32`, network byte order) → `u8` 1 (hash).
pub const POLICY_HOSTS_MAP: &str = "weir_pol_hosts_v1";
/// Capacity of [`POLICY_HOSTS_MAP`].
pub const POLICY_HOSTS_MAP_CAPACITY: u32 = 64;
/// Ring buffer of [`PolicyVerdict`]s.
pub const POLICY_VERDICTS_MAP: &str = "weir_pol_verdicts_v1";
/// Size of [`POLICY_VERDICTS_MAP`] in bytes (a power of two, page multiple).
pub const POLICY_VERDICTS_MAP_BYTES: u32 = 1 << 20;
/// One-element array of [`PolicyConfig`].
pub const POLICY_CONFIG_MAP: &str = "weir_pol_cfg_v1";

/// Direction: traffic to the pod (its ingress policy).
pub const POLICY_INGRESS: u8 = 0;
/// Direction: traffic from the pod (its egress policy).
pub const POLICY_EGRESS: u8 = 1;

/// [`PolicyEndpoint::flags`]: some policy selects the pod for ingress.
pub const ENDPOINT_ISOLATE_INGRESS: u8 = 1;
/// [`PolicyEndpoint::flags`]: some policy selects the pod for egress.
pub const ENDPOINT_ISOLATE_EGRESS: u8 = 2;

/// [`PortRange::proto`] matching every protocol (a rule without ports
/// allows everything, ICMP included).
pub const PROTO_ANY: u8 = 0;
/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: u8 = 132;

/// Most port ranges one prefix of one endpoint and direction can allow.
pub const POLICY_MAX_PORT_RANGES: usize = 16;

/// [`PortRange::rule`] / [`PolicyVerdict::rule`]: no rule (a drop, or an
/// allow that needed none: reply, node traffic, not isolated).
pub const RULE_NONE: u16 = u16::MAX;

/// [`PolicyVerdict::verdict`]: dropped.
pub const VERDICT_DROP: u8 = 0;
/// [`PolicyVerdict::verdict`]: a new connection allowed by [`PolicyVerdict::rule`].
pub const VERDICT_ALLOW: u8 = 1;

/// [`PolicyConfig::flags`]: also report allowed new connections.
pub const POLICY_LOG_ALLOWS: u32 = 1;

/// A local pod, as the policy programs know it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyEndpoint {
    /// Endpoint id, the first part of its [`PolicyRuleKey`]s (host order).
    pub id: u16,
    /// [`ENDPOINT_ISOLATE_INGRESS`] | [`ENDPOINT_ISOLATE_EGRESS`].
    pub flags: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
}

/// The data of an LPM key (aya's `lpm_trie::Key` adds the prefix length in
/// front): the prefix length counts the bits that must match from
/// `endpoint` on: 32 (endpoint, direction, pad) + the peer prefix length
/// (0–32). Lookups use 64.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PolicyRuleKey {
    /// [`PolicyEndpoint::id`], big-endian (LPM compares bytes in order).
    pub endpoint: [u8; 2],
    /// [`POLICY_INGRESS`] or [`POLICY_EGRESS`].
    pub direction: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
    /// Peer address, network byte order (the pod's source for ingress, its
    /// destination for egress).
    pub peer: u32,
}

/// Ports a peer may use: `first..=last` of `proto` (host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortRange {
    /// First port, host order (0 with `last` 65535: every port).
    pub first: u16,
    /// Last port, host order.
    pub last: u16,
    /// IP protocol, or [`PROTO_ANY`].
    pub proto: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
    /// The rule that allows it (agent-assigned id, for the verdict log).
    pub rule: u16,
}

/// What the peers of one prefix may use; `count == 0`: nothing (denied).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyRuleValue {
    /// Ranges in use, from the start of `ranges`.
    pub count: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 3],
    /// The allowed ranges.
    pub ranges: [PortRange; POLICY_MAX_PORT_RANGES],
}

/// A connection allowed into or out of an endpoint, as its first packet
/// went (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyCtKey {
    /// Source address of the first packet.
    pub saddr: u32,
    /// Destination address of the first packet.
    pub daddr: u32,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`POLICY_INGRESS`] or [`POLICY_EGRESS`] of `endpoint`.
    pub direction: u8,
    /// [`PolicyEndpoint::id`], host order.
    pub endpoint: u16,
}

/// An allowed connection's state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyCtValue {
    /// `bpf_ktime_get_ns` of the first packet.
    pub created_ns: u64,
    /// The rule that allowed it ([`RULE_NONE`] if none was needed).
    pub rule: u16,
    /// Explicit padding; always zero.
    pub pad: [u8; 6],
}

/// Settings of the policy programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyConfig {
    /// [`POLICY_LOG_ALLOWS`].
    pub flags: u32,
}

/// One verdict, as the ring buffer carries it (addresses and ports network
/// byte order, as on the wire).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyVerdict {
    /// Source address.
    pub saddr: u32,
    /// Destination address.
    pub daddr: u32,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`POLICY_INGRESS`] or [`POLICY_EGRESS`] of `endpoint`.
    pub direction: u8,
    /// [`VERDICT_DROP`] or [`VERDICT_ALLOW`].
    pub verdict: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
    /// The endpoint whose policy decided.
    pub endpoint: u16,
    /// The rule that allowed it, or [`RULE_NONE`].
    pub rule: u16,
    /// `ifindex` of the veth it was seen on.
    pub ifindex: u32,
}

const _: () = assert!(core::mem::size_of::<PolicyEndpoint>() == 4);
const _: () = assert!(core::mem::size_of::<PolicyRuleKey>() == 8);
const _: () = assert!(core::mem::size_of::<PortRange>() == 8);
const _: () = assert!(core::mem::size_of::<PolicyRuleValue>() == 4 + 8 * POLICY_MAX_PORT_RANGES);
const _: () = assert!(core::mem::size_of::<PolicyCtKey>() == 16);
const _: () = assert!(core::mem::size_of::<PolicyCtValue>() == 16);
const _: () = assert!(core::mem::size_of::<PolicyConfig>() == 4);
const _: () = assert!(core::mem::size_of::<PolicyVerdict>() == 24);

// SAFETY: repr(C), Copy, integers only, no implicit padding (size asserts).
#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::PolicyEndpoint {}
    unsafe impl aya::Pod for super::PolicyRuleKey {}
    unsafe impl aya::Pod for super::PortRange {}
    unsafe impl aya::Pod for super::PolicyRuleValue {}
    unsafe impl aya::Pod for super::PolicyCtKey {}
    unsafe impl aya::Pod for super::PolicyCtValue {}
    unsafe impl aya::Pod for super::PolicyConfig {}
    unsafe impl aya::Pod for super::PolicyVerdict {}
}
