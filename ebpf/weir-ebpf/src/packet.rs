//! Reading IPv4 TCP/UDP headers from a TC packet and rewriting addresses and
//! ports with their checksums.
//!
//! Headers are read straight from the packet when they sit in its linear
//! part (nearly always: no helper call per field), and with
//! `bpf_skb_load_bytes` otherwise. Writes go through `bpf_skb_store_bytes`
//! and the L4 checksum helper, never direct packet pointers: a direct write
//! would make the verifier unclone every packet the program sees, rewritten
//! or not, and only the helper knows how to update a `CHECKSUM_PARTIAL`
//! packet's (veth traffic from pods) or a `CHECKSUM_COMPLETE` one's
//! checksum state.

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR};
use aya_ebpf::programs::TcContext;
use weir_common::{IPPROTO_TCP, IPPROTO_UDP, Nat4Key, NatRewrite};

/// Ethernet header length: TC sees L2 frames on Ethernet-like devices.
pub(crate) const ETH_HLEN: usize = 14;
/// `ETH_P_IP`, as it appears on the wire.
pub(crate) const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
/// Offsets inside the IPv4 header.
const IP_CHECK: usize = ETH_HLEN + 10;
/// Where the L4 header starts when the IPv4 header has no options: its ports
/// then directly follow the addresses.
const L4_NO_OPTIONS: usize = ETH_HLEN + 20;

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
    /// The IPv4 header checksum as read, so a rewrite can store the updated
    /// one together with the addresses.
    ip_check: u16,
}

/// Parses an unfragmented IPv4 TCP/UDP packet; anything else is `None` and
/// passes untouched. Fragments are left alone: only the first carries ports,
/// and translating it without the rest would corrupt the datagram.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Packet> {
    match parse_linear(ctx) {
        Linear::Parsed(packet) => packet,
        Linear::Beyond => parse_copied(ctx),
    }
}

/// What the packet's linear part tells.
enum Linear {
    /// The headers were all there: the answer.
    Parsed(Option<Packet>),
    /// They reach past the linear part (or the packet is truncated): read
    /// them with copies, which see the whole packet.
    Beyond,
}

/// [`parse`] on the packet's linear part, by direct reads: three helper
/// calls fewer than [`parse_copied`] on every packet.
#[inline(always)]
fn parse_linear(ctx: &TcContext) -> Linear {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + L4_NO_OPTIONS > end {
        return Linear::Beyond;
    }
    // SAFETY: the Ethernet and the first 20 bytes of the IPv4 header are
    // within [data, end), checked above (and by the verifier).
    let (ethertype, ip) = unsafe { (*((data + 12) as *const u16), *((data + ETH_HLEN) as *const Ipv4Hdr)) };
    let Some((l4, proto)) = ip_header(ethertype, &ip) else {
        return Linear::Parsed(None);
    };
    if data + l4 + 4 > end {
        return Linear::Beyond;
    }
    // SAFETY: the four port bytes are within [data, end), checked above.
    let ports = unsafe { *((data + l4) as *const [u16; 2]) };
    Linear::Parsed(Some(packet(&ip, l4, proto, ports)))
}

/// [`parse`] with `bpf_skb_load_bytes`, for headers outside the linear part.
#[inline(always)]
fn parse_copied(ctx: &TcContext) -> Option<Packet> {
    let ethertype: u16 = ctx.load(12).ok()?;
    let ip: Ipv4Hdr = ctx.load(ETH_HLEN).ok()?;
    let (l4, proto) = ip_header(ethertype, &ip)?;
    let ports: [u16; 2] = ctx.load(l4).ok()?;
    Some(packet(&ip, l4, proto, ports))
}

/// The L4 offset and protocol of an unfragmented IPv4 TCP/UDP header.
#[inline(always)]
fn ip_header(ethertype: u16, ip: &Ipv4Hdr) -> Option<(usize, u8)> {
    if ethertype != ETH_P_IP_BE {
        return None;
    }
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    // More-fragments flag or a fragment offset: a fragment.
    if ip.version_ihl >> 4 != 4 || ihl < 20 || u16::from_be(ip.frag_off) & 0x3fff != 0 {
        return None;
    }
    if ip.proto != IPPROTO_TCP && ip.proto != IPPROTO_UDP {
        return None;
    }
    Some((ETH_HLEN + ihl, ip.proto))
}

#[inline(always)]
fn packet(ip: &Ipv4Hdr, l4: usize, proto: u8, ports: [u16; 2]) -> Packet {
    Packet { l4, saddr: ip.saddr, daddr: ip.daddr, sport: ports[0], dport: ports[1], proto, ip_check: ip.check }
}

impl Packet {
    #[inline(always)]
    fn l4_check(&self) -> usize {
        if self.proto == IPPROTO_TCP { self.l4 + 16 } else { self.l4 + 6 }
    }

    /// UDP's checksum is optional (0 = none); keep a 0 a 0.
    #[inline(always)]
    fn mangled_flag(&self) -> u64 {
        if self.proto == IPPROTO_UDP { u64::from(BPF_F_MARK_MANGLED_0) } else { 0 }
    }

    /// Rewrites the packet's addresses and ports to `to`, fixing the IP
    /// checksum and the L4 checksum (whose pseudo-header covers the
    /// addresses). Fields already equal keep their value.
    ///
    /// The L4 checksum gets one helper call for all address changes (as a
    /// pseudo-header change) and one for all port changes, each with the
    /// summed difference; the IP checksum, never offloaded, is computed here
    /// and stored with the addresses — and with the ports too when they
    /// follow (no IP options): one store.
    #[inline(always)]
    pub fn rewrite(&self, ctx: &TcContext, to: &NatRewrite) -> Result<(), i64> {
        let addresses = self.saddr != to.saddr || self.daddr != to.daddr;
        let ports = self.sport != to.sport || self.dport != to.dport;
        let (old_ports, new_ports) = (ports_word(self.sport, self.dport), ports_word(to.sport, to.dport));
        if addresses {
            let diff = csum_diff(&[self.saddr, self.daddr], &[to.saddr, to.daddr]);
            let flags = u64::from(BPF_F_PSEUDO_HDR) | self.mangled_flag();
            ctx.l4_csum_replace(self.l4_check(), 0, u64::from(diff), flags)?;
        }
        if ports {
            let diff = csum_diff(&[old_ports], &[new_ports]);
            ctx.l4_csum_replace(self.l4_check(), 0, u64::from(diff), self.mangled_flag())?;
        }
        if addresses {
            let check = ip_check(self.ip_check, &[self.saddr, self.daddr], &[to.saddr, to.daddr]);
            #[expect(clippy::cast_possible_truncation, reason = "the halves of each address, as they sit in memory")]
            let (s, d) = ((to.saddr as u16, (to.saddr >> 16) as u16), (to.daddr as u16, (to.daddr >> 16) as u16));
            if ports && self.l4 == L4_NO_OPTIONS {
                return ctx.store(IP_CHECK, &[check, s.0, s.1, d.0, d.1, to.sport, to.dport], 0);
            }
            ctx.store(IP_CHECK, &[check, s.0, s.1, d.0, d.1], 0)?;
        }
        if ports {
            ctx.store(self.l4, &[to.sport, to.dport], 0)?;
        }
        Ok(())
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

/// Both ports as one word, as they sit in memory.
#[inline(always)]
fn ports_word(sport: u16, dport: u16) -> u32 {
    u32::from(sport) | u32::from(dport) << 16
}

/// The ones'-complement difference of replacing the words `old` by `new`,
/// as `bpf_csum_diff` would give it (32-bit, end-around carry).
#[inline(always)]
fn csum_diff<const N: usize>(old: &[u32; N], new: &[u32; N]) -> u32 {
    let mut sum = 0_u64;
    for k in 0..N {
        sum += u64::from(!old[k]) + u64::from(new[k]);
    }
    fold32(sum)
}

/// The IPv4 header checksum `check` after the words `old` became `new`,
/// computed exactly as the kernel's `csum_replace4` does it (the same
/// result, to the bit, as a `bpf_l3_csum_replace` per word).
#[inline(always)]
fn ip_check<const N: usize>(check: u16, old: &[u32; N], new: &[u32; N]) -> u16 {
    // ~csum_unfold(check): the 32-bit complement of the zero-extended field.
    let mut sum = u64::from(!u32::from(check));
    for k in 0..N {
        sum += u64::from(!old[k]) + u64::from(new[k]);
    }
    let mut sum = fold32(sum);
    // csum_fold: to 16 bits, end-around carry, complemented.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    #[expect(clippy::cast_possible_truncation, reason = "folded to 16 bits above")]
    let folded = sum as u16;
    !folded
}

/// A 64-bit sum of 32-bit words folded to 32 bits with end-around carry.
#[inline(always)]
fn fold32(mut sum: u64) -> u32 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    #[expect(clippy::cast_possible_truncation, reason = "folded to 32 bits above")]
    let folded = sum as u32;
    folded
}
