//! Reading IPv4 TCP/UDP headers from a TC packet and rewriting addresses and
//! ports with their checksums.
//!
//! Everything goes through `bpf_skb_load_bytes` / `bpf_skb_store_bytes` and
//! the checksum helpers rather than direct packet pointers: the verifier
//! needs no bounds proofs, and the helpers handle `CHECKSUM_PARTIAL` packets
//! (veth traffic from pods) correctly.

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR};
use aya_ebpf::programs::TcContext;
use weir_common::{IPPROTO_TCP, IPPROTO_UDP, Nat4Key, NatRewrite};

/// Ethernet header length: TC sees L2 frames on Ethernet-like devices.
pub(crate) const ETH_HLEN: usize = 14;
/// `ETH_P_IP`, as it appears on the wire.
pub(crate) const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
/// Offsets inside the IPv4 header.
const IP_CHECK: usize = ETH_HLEN + 10;
const IP_SADDR: usize = ETH_HLEN + 12;
const IP_DADDR: usize = ETH_HLEN + 16;

/// The first 20 bytes of an IPv4 header.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Ipv4Hdr {
    pub(crate) version_ihl: u8,
    pub(crate) tos: u8,
    pub(crate) tot_len: u16,
    pub(crate) id: u16,
    pub(crate) frag_off: u16,
    pub(crate) ttl: u8,
    pub(crate) proto: u8,
    pub(crate) check: u16,
    pub(crate) saddr: u32,
    pub(crate) daddr: u32,
}

/// The tuple of an IPv4 TCP or UDP packet; addresses and ports in network
/// byte order.
#[derive(Clone, Copy)]
pub struct Packet {
    /// Offset of the TCP/UDP header.
    l4: usize,
    /// Source address.
    pub saddr: u32,
    /// Destination address.
    pub daddr: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
}

/// Parses an unfragmented IPv4 TCP/UDP packet; anything else is `None` and
/// passes untouched. Fragments are left alone: only the first carries ports,
/// and translating it without the rest would corrupt the datagram.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype: u16 = ctx.load(12).ok()?;
    if ethertype != ETH_P_IP_BE {
        return None;
    }
    let ip: Ipv4Hdr = ctx.load(ETH_HLEN).ok()?;
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    // More-fragments flag or a fragment offset: a fragment.
    if ip.version_ihl >> 4 != 4 || ihl < 20 || u16::from_be(ip.frag_off) & 0x3fff != 0 {
        return None;
    }
    if ip.proto != IPPROTO_TCP && ip.proto != IPPROTO_UDP {
        return None;
    }
    let l4 = ETH_HLEN + ihl;
    let ports: [u16; 2] = ctx.load(l4).ok()?;
    Some(Packet { l4, saddr: ip.saddr, daddr: ip.daddr, sport: ports[0], dport: ports[1], proto: ip.proto })
}

impl Packet {
    fn l4_check(&self) -> usize {
        if self.proto == IPPROTO_TCP { self.l4 + 16 } else { self.l4 + 6 }
    }

    /// UDP's checksum is optional (0 = none); keep a 0 a 0.
    fn mangled_flag(&self) -> u64 {
        if self.proto == IPPROTO_UDP { u64::from(BPF_F_MARK_MANGLED_0) } else { 0 }
    }

    /// Rewrites the packet's addresses and ports to `to`, fixing the IP
    /// checksum and the L4 checksum (whose pseudo-header covers the
    /// addresses). Fields already equal are not touched.
    #[inline(always)]
    pub fn rewrite(&self, ctx: &TcContext, to: &NatRewrite) -> Result<(), i64> {
        self.rewrite_addr(ctx, IP_SADDR, self.saddr, to.saddr)?;
        self.rewrite_addr(ctx, IP_DADDR, self.daddr, to.daddr)?;
        self.rewrite_port(ctx, self.l4, self.sport, to.sport)?;
        self.rewrite_port(ctx, self.l4 + 2, self.dport, to.dport)
    }

    #[inline(always)]
    fn rewrite_addr(&self, ctx: &TcContext, offset: usize, old: u32, new: u32) -> Result<(), i64> {
        if old == new {
            return Ok(());
        }
        let flags = u64::from(BPF_F_PSEUDO_HDR) | self.mangled_flag() | 4;
        ctx.l4_csum_replace(self.l4_check(), u64::from(old), u64::from(new), flags)?;
        ctx.l3_csum_replace(IP_CHECK, u64::from(old), u64::from(new), 4)?;
        ctx.store(offset, &new, 0)
    }

    #[inline(always)]
    fn rewrite_port(&self, ctx: &TcContext, offset: usize, old: u16, new: u16) -> Result<(), i64> {
        if old == new {
            return Ok(());
        }
        ctx.l4_csum_replace(self.l4_check(), u64::from(old), u64::from(new), self.mangled_flag() | 2)?;
        ctx.store(offset, &new, 0)
    }

    /// The key of this packet's tuple as seen at `direction`.
    #[inline(always)]
    pub fn key(&self, direction: u8) -> Nat4Key {
        Nat4Key {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            direction,
            pad: [0; 2],
        }
    }
}
