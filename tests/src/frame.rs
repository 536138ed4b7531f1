//! Building and reading IPv4 TCP/UDP frames for `BPF_PROG_TEST_RUN`, with
//! the checksums a real stack would write, so a test can tell a correct
//! incremental checksum update from a broken one.

use std::net::{Ipv4Addr, SocketAddrV4};

/// TCP flags of [`tcp_frame`].
pub const SYN: u8 = 0x02;
/// TCP flags of [`tcp_frame`].
pub const ACK: u8 = 0x10;

/// IP protocol numbers.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

const ETH: usize = 14;
const IP: usize = 20;

/// An Ethernet + IPv4 + TCP SYN (or UDP datagram) frame from `src` to
/// `dst`, with a 4-byte payload.
#[must_use]
pub fn frame(proto: u8, src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    build(proto, src, dst, SYN, b"weir")
}

/// An Ethernet + IPv4 + TCP frame with `flags` and `payload`.
#[must_use]
pub fn tcp_frame(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, payload: &[u8]) -> Vec<u8> {
    build(TCP, src, dst, flags, payload)
}

fn build(proto: u8, src: SocketAddrV4, dst: SocketAddrV4, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4_len = if proto == TCP { 20 } else { 8 } + payload.len();
    let mut f = vec![0u8; ETH + IP + l4_len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[ETH..ETH + IP];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&u16::try_from(IP + l4_len).unwrap_or(u16::MAX).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let l4 = &mut f[ETH + IP..];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    if proto == TCP {
        l4[12] = 5 << 4; // data offset
        l4[13] = flags;
        l4[14..16].copy_from_slice(&64_240u16.to_be_bytes());
        l4[20..].copy_from_slice(payload);
    } else {
        l4[4..6].copy_from_slice(&u16::try_from(l4_len).unwrap_or(u16::MAX).to_be_bytes());
        l4[8..].copy_from_slice(payload);
    }
    let ip_sum = checksum(&f[ETH..ETH + IP], 0);
    f[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let l4_sum = l4_checksum(&f);
    let at = ETH + IP + if proto == TCP { 16 } else { 6 };
    f[at..at + 2].copy_from_slice(&l4_sum.to_be_bytes());
    f
}

/// Source and destination of a frame.
#[must_use]
pub fn tuple(f: &[u8]) -> (SocketAddrV4, SocketAddrV4) {
    let addr = |ip: &[u8], port: &[u8]| {
        SocketAddrV4::new(
            Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
            u16::from_be_bytes([port[0], port[1]]),
        )
    };
    let l4 = ETH + IP;
    (
        addr(&f[ETH + 12..ETH + 16], &f[l4..l4 + 2]),
        addr(&f[ETH + 16..ETH + 20], &f[l4 + 2..l4 + 4]),
    )
}

/// Whether the IP and L4 checksums of a frame verify.
#[must_use]
pub fn checksums_ok(f: &[u8]) -> bool {
    checksum(&f[ETH..ETH + IP], 0) == 0 && l4_checksum_verifies(f)
}

fn l4_checksum_verifies(f: &[u8]) -> bool {
    // Summing a segment whose checksum field is in place gives 0.
    pseudo_and_segment(f) == 0
}

fn l4_checksum(f: &[u8]) -> u16 {
    pseudo_and_segment(f)
}

fn pseudo_and_segment(f: &[u8]) -> u16 {
    let segment = &f[ETH + IP..];
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&f[ETH + 12..ETH + 20]);
    pseudo.push(0);
    pseudo.push(f[ETH + 9]);
    pseudo.extend_from_slice(&u16::try_from(segment.len()).unwrap_or(u16::MAX).to_be_bytes());
    checksum(segment, sum(&pseudo))
}

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// The Internet checksum of `data`, starting from a partial sum.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut s = initial + sum(data);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !u16::try_from(s).unwrap_or(0)
}
