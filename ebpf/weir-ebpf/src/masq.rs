//! Masquerade: pod traffic leaving the cluster gets the node's address.
//!
//! Attached with TCX to the node's uplink: egress SNATs pod → outside,
//! ingress reverses the replies. Traffic to the pod CIDR and to node
//! addresses (the skip trie) keeps the pod's source address, so the
//! cluster network stays NAT-free.

use aya_ebpf::bindings::{BPF_NOEXIST, TC_ACT_OK, TC_ACT_SHOT};
use aya_ebpf::helpers::bpf_get_prandom_u32;
use aya_ebpf::macros::{classifier, map};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, LpmTrie, LruHashMap};
use aya_ebpf::programs::TcContext;
use weir_common::nat::{
    MASQ_ENABLED, MASQ_SKIP_MAP_CAPACITY, NAT_EGRESS, NAT_INGRESS, NAT_PORT_MAX, NAT_PORT_MIN,
    SNAT_MAP_CAPACITY,
};
use weir_common::{MasqConfig, Nat4Key, Nat4Value};

use crate::packet::{Packet, parse};

#[map(name = "weir_snat4_v1")]
static SNAT: LruHashMap<Nat4Key, Nat4Value> = LruHashMap::pinned(SNAT_MAP_CAPACITY, 0);

#[map(name = "weir_masq_cfg_v1")]
static MASQ_CONFIG: Array<MasqConfig> = Array::pinned(1, 0);

#[map(name = "weir_masq_skip4_v1")]
static MASQ_SKIP: LpmTrie<u32, u8> = LpmTrie::pinned(MASQ_SKIP_MAP_CAPACITY, 0);

/// How many ports to try before giving up on a new flow.
const PORT_TRIES: u32 = 8;

#[allow(clippy::cast_possible_wrap, reason = "TC verdicts are small constants")]
const OK: i32 = TC_ACT_OK as i32;
#[allow(clippy::cast_possible_wrap, reason = "TC verdicts are small constants")]
const SHOT: i32 = TC_ACT_SHOT as i32;

/// Node uplink, egress: SNAT pod → outside-the-cluster to the node address.
#[classifier]
pub fn weir_masq_egress(ctx: TcContext) -> i32 {
    match try_egress(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// Node uplink, ingress: replies to masqueraded flows go back to the pod.
#[classifier]
pub fn weir_masq_ingress(ctx: TcContext) -> i32 {
    match try_ingress(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[inline(always)]
fn config() -> Option<MasqConfig> {
    let config = *MASQ_CONFIG.get(0)?;
    (config.flags & MASQ_ENABLED != 0).then_some(config)
}

#[inline(always)]
fn try_egress(ctx: &TcContext) -> Result<i32, i32> {
    let Some(config) = config() else { return Ok(OK) };
    let Some(packet) = parse(ctx) else { return Ok(OK) };
    // Only pods are masqueraded: the node's own traffic has its address.
    if packet.saddr & config.pod_mask != config.pod_cidr {
        return Ok(OK);
    }
    if MASQ_SKIP.get(&Key::new(32, packet.daddr)).is_some() {
        return Ok(OK);
    }
    let key = Nat4Key {
        saddr: packet.saddr,
        daddr: packet.daddr,
        sport: packet.sport,
        dport: packet.dport,
        proto: packet.proto,
        direction: NAT_EGRESS,
        pad: [0; 2],
    };
    // SAFETY: copied out at once; LRU entries are replaced, not mutated.
    let nat = match unsafe { SNAT.get(&key) } {
        Some(nat) => *nat,
        None => reserve(&key, &packet, config.node_ip).ok_or(SHOT)?,
    };
    packet.rewrite(ctx, true, nat.addr, nat.port).map_err(|_| SHOT)?;
    Ok(OK)
}

/// Picks the node port for a new flow: the pod's own port if it is free
/// towards that destination, else random ones from the ephemeral range. The
/// reply entry is inserted with `BPF_NOEXIST`, which is what makes a port
/// "reserved": two CPUs racing for one port cannot both win.
#[inline(always)]
fn reserve(key: &Nat4Key, packet: &Packet, node_ip: u32) -> Option<Nat4Value> {
    let back = Nat4Value { addr: packet.saddr, port: packet.sport, pad: 0 };
    for attempt in 0..PORT_TRIES {
        let port = if attempt == 0 {
            packet.sport
        } else {
            let span = u32::from(NAT_PORT_MAX - NAT_PORT_MIN) + 1;
            // SAFETY: no arguments, cannot fail.
            let offset = unsafe { bpf_get_prandom_u32() } % span;
            #[allow(clippy::cast_possible_truncation, reason = "offset < span fits the port range")]
            let port = NAT_PORT_MIN + offset as u16;
            port.to_be()
        };
        let reply = Nat4Key {
            saddr: packet.daddr,
            daddr: node_ip,
            sport: packet.dport,
            dport: port,
            proto: packet.proto,
            direction: NAT_INGRESS,
            pad: [0; 2],
        };
        let ours = SNAT.insert(&reply, &back, u64::from(BPF_NOEXIST)).is_ok()
            // The egress entry was evicted but the reply entry survived: same flow.
            // SAFETY: copied out at once.
            || unsafe { SNAT.get(&reply) }.is_some_and(|v| v.addr == back.addr && v.port == back.port);
        if ours {
            let nat = Nat4Value { addr: node_ip, port, pad: 0 };
            SNAT.insert(key, &nat, 0).ok()?;
            return Some(nat);
        }
    }
    None
}

#[inline(always)]
fn try_ingress(ctx: &TcContext) -> Result<i32, i32> {
    let Some(config) = config() else { return Ok(OK) };
    let Some(packet) = parse(ctx) else { return Ok(OK) };
    if packet.daddr != config.node_ip {
        return Ok(OK);
    }
    let key = Nat4Key {
        saddr: packet.saddr,
        daddr: packet.daddr,
        sport: packet.sport,
        dport: packet.dport,
        proto: packet.proto,
        direction: NAT_INGRESS,
        pad: [0; 2],
    };
    // SAFETY: copied out at once.
    let Some(pod) = (unsafe { SNAT.get(&key) }).copied() else { return Ok(OK) };
    packet.rewrite(ctx, false, pod.addr, pod.port).map_err(|_| SHOT)?;
    Ok(OK)
}
