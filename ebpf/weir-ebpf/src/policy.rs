//! NetworkPolicy enforcement on each pod's host-side veth (design and map
//! layouts in `weir_common::policy`).
//!
//! `weir_pol_from_pod` runs at tcx ingress of the veth: what the pod sends,
//! judged by the pod's **egress** policy. `weir_pol_to_pod` runs at tcx
//! egress: what the pod is sent, judged by its **ingress** policy. Each
//! packet is checked in this order, cheapest and most common first:
//!
//! 1. the endpoint is not isolated in this direction → pass;
//! 2. a connection this direction allowed earlier → pass;
//! 3. a reply of a connection the other direction allowed → pass (stateful:
//!    a pod allowed to call out gets its answers without an ingress rule);
//! 4. (to the pod only) from the node's own addresses → pass;
//! 5. the longest rule prefix for the peer, scanned for the protocol and
//!    destination port → pass and remember the connection;
//! 6. otherwise drop, reporting the verdict on the ring buffer.
//!
//! Only IPv4 is judged: ARP and everything else that is not IPv4 passes, so
//! a pod can always resolve its gateway. An ICMP error (unreachable — which
//! carries "fragmentation needed" for path MTU discovery —, time exceeded,
//! parameter problem) about a connection conntrack knows passes like a reply
//! of it: it quotes the packet it is about, which is looked up. Fragments: the first fragment
//! carries the ports and is judged like any packet; when it passes, the
//! datagram's IP id is remembered (a conntrack entry with the id as source
//! port and destination port 0, which no real TCP/UDP/SCTP flow has), and
//! later fragments — which have no ports — pass only through that entry.

use aya_ebpf::EbpfContext as _;
use aya_ebpf::bindings::{__sk_buff, TC_ACT_OK, TC_ACT_SHOT};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::{classifier, map};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, RingBuf};
use aya_ebpf::programs::TcContext;
use weir_common::policy::{
    ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, IPPROTO_SCTP, POLICY_CT_MAP_CAPACITY, POLICY_EGRESS,
    POLICY_ENDPOINTS_MAP_CAPACITY, POLICY_HOSTS_MAP_CAPACITY, POLICY_INGRESS, POLICY_LOG_ALLOWS,
    POLICY_MAX_PORT_RANGES, POLICY_RULES_MAP_CAPACITY, POLICY_VERDICTS_MAP_BYTES, PROTO_ANY, PolicyConfig,
    PolicyCtKey, PolicyCtValue, PolicyEndpoint, PolicyRuleKey, PolicyRuleValue, PolicyVerdict, RULE_NONE,
    VERDICT_ALLOW, VERDICT_DROP,
};
use weir_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::packet::{ETH_HLEN, ETH_P_IP_BE, Ipv4Hdr};

#[map(name = "weir_pol_endpoints_v1")]
static ENDPOINTS: HashMap<u32, PolicyEndpoint> = HashMap::pinned(POLICY_ENDPOINTS_MAP_CAPACITY, 0);

// LpmTrie adds BPF_F_NO_PREALLOC itself (the kernel requires it).
#[map(name = "weir_pol_rules_v1")]
static RULES: LpmTrie<PolicyRuleKey, PolicyRuleValue> = LpmTrie::pinned(POLICY_RULES_MAP_CAPACITY, 0);

#[map(name = "weir_pol_ct_v1")]
static CT: LruHashMap<PolicyCtKey, PolicyCtValue> = LruHashMap::pinned(POLICY_CT_MAP_CAPACITY, 0);

#[map(name = "weir_pol_hosts_v1")]
static HOSTS: HashMap<u32, u8> = HashMap::pinned(POLICY_HOSTS_MAP_CAPACITY, 0);

#[map(name = "weir_pol_verdicts_v1")]
static VERDICTS: RingBuf = RingBuf::pinned(POLICY_VERDICTS_MAP_BYTES, 0);

#[map(name = "weir_pol_cfg_v1")]
static CONFIG: Array<PolicyConfig> = Array::pinned(1, 0);

#[expect(clippy::cast_possible_wrap, reason = "TC verdicts are small constants")]
const OK: i32 = TC_ACT_OK as i32;
#[expect(clippy::cast_possible_wrap, reason = "TC verdicts are small constants")]
const SHOT: i32 = TC_ACT_SHOT as i32;

/// `IPPROTO_ICMP`, and the ICMP types that quote the packet they are about.
const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;
/// Length of the ICMP header before the quoted packet.
const ICMP_HLEN: usize = 8;

/// An IPv4 tuple (network byte order; ports 0 for protocols without).
#[derive(Clone, Copy)]
struct Tuple {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

/// The part of a packet policy looks at (network byte order).
#[derive(Clone, Copy)]
struct Flow {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    /// What an ICMP error quotes: the packet it is about.
    quoted: Option<Tuple>,
    /// IP id of a fragmented datagram's first fragment (`Some`), or of a
    /// later fragment (`later`).
    frag_id: Option<u16>,
    later: bool,
}

/// Reads an IPv4 packet's flow; `None` for anything that is not IPv4.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Flow> {
    let ethertype: u16 = ctx.load(12).ok()?;
    if ethertype != ETH_P_IP_BE {
        return None;
    }
    let ip: Ipv4Hdr = ctx.load(ETH_HLEN).ok()?;
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    if ip.version_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let frag = u16::from_be(ip.frag_off);
    let more_fragments = frag & 0x2000 != 0;
    let later = frag & 0x1fff != 0;
    let mut flow = Flow {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        proto: ip.proto,
        quoted: None,
        frag_id: (more_fragments || later).then_some(ip.id),
        later,
    };
    if later {
        return Some(flow);
    }
    let l4 = ETH_HLEN + ihl;
    // Ports that cannot be read (a truncated header) stay 0: such a packet
    // is still judged, only a rule allowing port 0 lets it through.
    if let Some((sport, dport)) = ports(ctx, ip.proto, l4) {
        flow.sport = sport;
        flow.dport = dport;
    } else if ip.proto == IPPROTO_ICMP {
        flow.quoted = quoted(ctx, l4);
    }
    Some(flow)
}

/// The ports of a TCP, UDP or SCTP header at `l4` (all start with them).
#[inline(always)]
fn ports(ctx: &TcContext, proto: u8, l4: usize) -> Option<(u16, u16)> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP {
        return None;
    }
    let ports: [u16; 2] = ctx.load(l4).ok()?;
    Some((ports[0], ports[1]))
}

/// The tuple of the packet an ICMP error at `l4` quotes.
#[inline(always)]
fn quoted(ctx: &TcContext, l4: usize) -> Option<Tuple> {
    let icmp_type: u8 = ctx.load(l4).ok()?;
    if icmp_type != ICMP_DEST_UNREACH && icmp_type != ICMP_TIME_EXCEEDED && icmp_type != ICMP_PARAMETERPROB {
        return None;
    }
    let inner: Ipv4Hdr = ctx.load(l4 + ICMP_HLEN).ok()?;
    let ihl = usize::from(inner.version_ihl & 0x0f) * 4;
    if inner.version_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let (sport, dport) = ports(ctx, inner.proto, l4 + ICMP_HLEN + ihl).unwrap_or((0, 0));
    Some(Tuple { saddr: inner.saddr, daddr: inner.daddr, sport, dport, proto: inner.proto })
}

/// The pod's egress: what it sends (tcx ingress of its host-side veth).
#[classifier]
pub fn weir_pol_from_pod(ctx: TcContext) -> i32 {
    judge(&ctx, POLICY_EGRESS)
}

/// The pod's ingress: what it is sent (tcx egress of its host-side veth).
#[classifier]
pub fn weir_pol_to_pod(ctx: TcContext) -> i32 {
    judge(&ctx, POLICY_INGRESS)
}

#[inline(always)]
fn judge(ctx: &TcContext, direction: u8) -> i32 {
    let Some(flow) = parse(ctx) else { return OK };
    let (pod, peer, isolate) = if direction == POLICY_EGRESS {
        (flow.saddr, flow.daddr, ENDPOINT_ISOLATE_EGRESS)
    } else {
        (flow.daddr, flow.saddr, ENDPOINT_ISOLATE_INGRESS)
    };
    // SAFETY: copied out at once; the agent replaces values whole.
    let Some(endpoint) = (unsafe { ENDPOINTS.get(&pod) }).copied() else { return OK };
    let key = ct_key(&flow, direction, endpoint.id);
    if endpoint.flags & isolate == 0 {
        // Free this way, but isolated the other: remember the connection,
        // or its replies would meet the other direction's rules (a pod
        // isolated for ingress must still get answers to what it sends).
        if endpoint.flags != 0 && !flow.later && CT.get_ptr(&key).is_none() {
            remember(&key, RULE_NONE);
        }
        return OK;
    }
    if flow.later {
        // No ports: only a datagram whose first fragment passed.
        let frag_key = PolicyCtKey { sport: flow.frag_id.unwrap_or(0), dport: 0, ..key };
        return if CT.get_ptr(&frag_key).is_some() { OK } else { deny(ctx, &flow, direction, endpoint.id) };
    }
    let other = if direction == POLICY_EGRESS { POLICY_INGRESS } else { POLICY_EGRESS };
    let reply = PolicyCtKey {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: flow.sport,
        direction: other,
        ..key
    };
    // Every lookup below is made only when the ones before missed: two map
    // results combined unconditionally (`a | b`) are refused by the verifier.
    if CT.get_ptr(&key).is_some() || CT.get_ptr(&reply).is_some() {
        remember_fragment(&flow, &key, RULE_NONE);
        return OK;
    }
    if let Some(about) = flow.quoted
        && related(&about, direction, other, endpoint.id)
    {
        return OK;
    }
    if direction == POLICY_INGRESS && HOSTS.get_ptr(&flow.saddr).is_some() {
        remember_fragment(&flow, &key, RULE_NONE);
        return OK;
    }
    let Some(rule) = allowed_by(&flow, direction, endpoint.id, peer) else {
        return deny(ctx, &flow, direction, endpoint.id);
    };
    remember(&key, rule);
    remember_fragment(&flow, &key, rule);
    if CONFIG.get(0).is_some_and(|c| c.flags & POLICY_LOG_ALLOWS != 0) {
        report(ctx, &flow, direction, endpoint.id, VERDICT_ALLOW, rule);
    }
    OK
}

/// Whether the packet an ICMP error quotes belongs to a known connection:
/// one the other direction allowed (the quoted packet went out as that
/// connection's request), or one this direction allowed (it was a reply).
#[inline(always)]
fn related(about: &Tuple, direction: u8, other: u8, endpoint: u16) -> bool {
    let request = PolicyCtKey {
        saddr: about.saddr,
        daddr: about.daddr,
        sport: about.sport,
        dport: about.dport,
        proto: about.proto,
        direction: other,
        endpoint,
    };
    let reply = PolicyCtKey {
        saddr: about.daddr,
        daddr: about.saddr,
        sport: about.dport,
        dport: about.sport,
        direction,
        ..request
    };
    CT.get_ptr(&request).is_some() || CT.get_ptr(&reply).is_some()
}

/// The rule that allows `flow` for the endpoint in `direction`, if any.
#[inline(always)]
fn allowed_by(flow: &Flow, direction: u8, endpoint: u16, peer: u32) -> Option<u16> {
    let data = PolicyRuleKey { endpoint: endpoint.to_be_bytes(), direction, pad: 0, peer };
    let value: &PolicyRuleValue = RULES.get(&Key::new(64, data))?;
    let dport = u16::from_be(flow.dport);
    let count = usize::from(value.count);
    for i in 0..POLICY_MAX_PORT_RANGES {
        if i >= count {
            break;
        }
        let range = value.ranges[i];
        if (range.proto == PROTO_ANY || range.proto == flow.proto) && range.first <= dport && dport <= range.last {
            return Some(range.rule);
        }
    }
    None
}

#[inline(always)]
fn ct_key(flow: &Flow, direction: u8, endpoint: u16) -> PolicyCtKey {
    PolicyCtKey {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        direction,
        endpoint,
    }
}

/// After a first fragment passed: lets the datagram's later fragments in.
#[inline(always)]
fn remember_fragment(flow: &Flow, key: &PolicyCtKey, rule: u16) {
    if let Some(id) = flow.frag_id {
        remember(&PolicyCtKey { sport: id, dport: 0, ..*key }, rule);
    }
}

/// Records an allowed connection (or fragment train). A full table evicts
/// its oldest entry (LRU); if the insert still fails, this packet passes and
/// a reply may be judged by rules.
#[inline(always)]
fn remember(key: &PolicyCtKey, rule: u16) {
    // SAFETY: bpf_ktime_get_ns takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = CT.insert(key, &PolicyCtValue { created_ns: now, rule, pad: [0; 6] }, 0);
}

#[inline(always)]
fn deny(ctx: &TcContext, flow: &Flow, direction: u8, endpoint: u16) -> i32 {
    report(ctx, flow, direction, endpoint, VERDICT_DROP, RULE_NONE);
    SHOT
}

/// Puts a verdict on the ring buffer; a full buffer loses it (the packet's
/// fate does not depend on the log).
#[inline(always)]
fn report(ctx: &TcContext, flow: &Flow, direction: u8, endpoint: u16, verdict: u8, rule: u16) {
    // SAFETY: the context of a TC program is an `__sk_buff`.
    let ifindex = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex };
    let event = PolicyVerdict {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        direction,
        verdict,
        pad: 0,
        endpoint,
        rule,
        ifindex,
    };
    let _ = VERDICTS.output(&event, 0);
}
