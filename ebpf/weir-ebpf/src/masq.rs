//! Masquerade: pod traffic leaving the cluster gets the node's address.
//!
//! Traffic to the pod CIDR and to node addresses (the skip trie) keeps the
//! pod's source address, so the cluster network stays NAT-free.

use aya_ebpf::macros::map;
use aya_ebpf::maps::LpmTrie;
use aya_ebpf::maps::lpm_trie::Key;
use weir_common::MasqConfig;
use weir_common::NatRewrite;
use weir_common::nat::{MASQ_ENABLED, MASQ_SKIP_MAP_CAPACITY, NAT_EGRESS, NAT_F_SNAT, NAT_INGRESS, NAT_ORIGIN_MASQ};

use crate::nat;
use crate::packet::Packet;

#[map(name = "weir_masq_skip4_v1")]
static MASQ_SKIP: LpmTrie<u32, u8> = LpmTrie::pinned(MASQ_SKIP_MAP_CAPACITY, 0);

/// What to do with a packet leaving the uplink that no NAT entry knows.
pub enum Outcome {
    /// Not masqueraded: leave it.
    Pass,
    /// Masqueraded: rewrite it like this.
    Rewrite(NatRewrite),
    /// Should be masqueraded but no port could be reserved: drop it.
    Drop,
}

/// Starts masquerading a new flow if `packet` is a pod leaving the cluster.
#[inline(always)]
pub fn new_flow(packet: &Packet, config: &MasqConfig) -> Outcome {
    if config.flags & MASQ_ENABLED == 0
        // Only pods are masqueraded: the node's own traffic has its address.
        || packet.saddr & config.pod_mask != config.pod_cidr
        || MASQ_SKIP.get(&Key::new(32, packet.daddr)).is_some()
    {
        return Outcome::Pass;
    }
    // The reply (outside → node:port) goes back to the pod.
    let now = nat::now();
    let back = NatRewrite { saddr: packet.daddr, daddr: packet.saddr, sport: packet.dport, dport: packet.sport };
    let Some(port) = nat::reserve_port(
        config.node_ip,
        packet.daddr,
        packet.dport,
        packet.proto,
        packet.sport,
        NAT_INGRESS,
        &back,
        NAT_ORIGIN_MASQ,
        NAT_F_SNAT,
        now,
    ) else {
        return Outcome::Drop;
    };
    let out = NatRewrite { saddr: config.node_ip, daddr: packet.daddr, sport: port, dport: packet.dport };
    if nat::insert(&packet.key(NAT_EGRESS), &nat::entry(&out, NAT_ORIGIN_MASQ, NAT_F_SNAT, now)).is_err() {
        return Outcome::Drop;
    }
    Outcome::Rewrite(out)
}
