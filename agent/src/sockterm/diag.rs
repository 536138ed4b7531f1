//! The `NETLINK_SOCK_DIAG` messages socket termination needs: a dump of the
//! IPv4 UDP sockets of one network namespace, and `SOCK_DESTROY` of one of
//! them. Layouts from `include/uapi/linux/inet_diag.h` and `netlink.h`; all
//! integers are host order except the addresses and ports of the socket id,
//! which are network order.

use std::net::{Ipv4Addr, SocketAddrV4};

/// `SOCK_DIAG_BY_FAMILY`: a dump request, and each socket of its answer.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `SOCK_DESTROY`: close one socket as if with an error (`ECONNABORTED`).
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
/// `TCP_ESTABLISHED`, the state of a connected UDP socket.
const STATE_ESTABLISHED: u32 = 1;

const HEADER_LEN: usize = 16;
/// `struct inet_diag_sockid`.
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg` up to and including the socket id.
const MSG_ID_END: usize = 4 + SOCKID_LEN;

/// One socket as the kernel identifies it (`struct inet_diag_sockid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketId {
    /// Its own address.
    pub local: SocketAddrV4,
    /// The address it is connected to.
    pub remote: SocketAddrV4,
    /// Bound device index (0: none).
    pub interface: u32,
    /// The socket cookie, as `bpf_get_socket_cookie` returns it.
    pub cookie: u64,
}

/// One message of an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A socket of a dump.
    Socket(SocketId),
    /// An acknowledgement (errno 0) or an error (a positive errno).
    Ack(i32),
    /// The end of a dump.
    Done,
    /// Anything else (skipped).
    Other,
}

fn header(out: &mut Vec<u8>, kind: u16, flags: u16, sequence: u32) {
    let length = u32::try_from(HEADER_LEN + REQUEST_LEN).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0_u32.to_ne_bytes());
}

/// `struct inet_diag_req_v2` for IPv4 UDP sockets in `states`.
fn request(out: &mut Vec<u8>, states: u32, id: &SocketId) {
    out.push(u8::try_from(libc::AF_INET).unwrap_or_default());
    out.push(u8::try_from(libc::IPPROTO_UDP).unwrap_or_default());
    out.extend_from_slice(&[0, 0]); // idiag_ext, pad
    out.extend_from_slice(&states.to_ne_bytes());
    out.extend_from_slice(&id.local.port().to_be_bytes());
    out.extend_from_slice(&id.remote.port().to_be_bytes());
    for address in [id.local.ip(), id.remote.ip()] {
        out.extend_from_slice(&address.octets());
        out.extend_from_slice(&[0; 12]); // the IPv6 rest of the field
    }
    out.extend_from_slice(&id.interface.to_ne_bytes());
    // The cookie is two host-order u32, low half first.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "splitting the u64 into its halves"
    )]
    let halves = [id.cookie as u32, (id.cookie >> 32) as u32];
    for half in halves {
        out.extend_from_slice(&half.to_ne_bytes());
    }
}

/// A dump of the connected IPv4 UDP sockets of the caller's netns.
#[must_use]
pub fn dump_connected_udp(sequence: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    header(
        &mut out,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
    );
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let id = SocketId {
        local: any,
        remote: any,
        interface: 0,
        cookie: 0,
    };
    request(&mut out, 1 << STATE_ESTABLISHED, &id);
    out
}

/// Destroys the UDP socket `id` (the kernel checks the cookie too, so a
/// socket that closed and whose tuple was reused is left alone).
#[must_use]
pub fn destroy_udp(sequence: u32, id: &SocketId) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    header(&mut out, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, sequence);
    request(&mut out, u32::MAX, id);
    out
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn address_at(bytes: &[u8], at: usize) -> Option<Ipv4Addr> {
    let octets: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// `struct inet_diag_sockid` at `at`.
fn socket_id(bytes: &[u8], at: usize) -> Option<SocketId> {
    let port = |offset| {
        Some(u16::from_be_bytes(
            bytes.get(at + offset..at + offset + 2)?.try_into().ok()?,
        ))
    };
    let low = u64::from(u32_at(bytes, at + 40)?);
    let high = u64::from(u32_at(bytes, at + 44)?);
    Some(SocketId {
        local: SocketAddrV4::new(address_at(bytes, at + 4)?, port(0)?),
        remote: SocketAddrV4::new(address_at(bytes, at + 20)?, port(2)?),
        interface: u32_at(bytes, at + 36)?,
        cookie: low | (high << 32),
    })
}

/// Splits one `recv` worth of netlink messages. A truncated message ends
/// the list (the kernel never sends one).
#[must_use]
pub fn parse(buffer: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut at = 0;
    while let (Some(length), Some(kind)) = (u32_at(buffer, at), u16_at(buffer, at + 4)) {
        let length = length as usize;
        if length < HEADER_LEN {
            break;
        }
        let Some(body) = buffer.get(at + HEADER_LEN..at + length) else {
            break;
        };
        replies.push(match kind {
            SOCK_DIAG_BY_FAMILY if body.len() >= MSG_ID_END => {
                socket_id(body, 4).map_or(Reply::Other, Reply::Socket)
            }
            #[expect(clippy::cast_possible_wrap, reason = "nlmsgerr.error is a signed errno")]
            NLMSG_ERROR => u32_at(body, 0).map_or(Reply::Other, |e| Reply::Ack(-(e as i32))),
            NLMSG_DONE => Reply::Done,
            _ => Reply::Other,
        });
        // Messages are 4-byte aligned.
        at += (length + 3) & !3;
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SocketId {
        SocketId {
            local: "10.244.1.5:40000".parse().unwrap(),
            remote: "10.244.2.3:5353".parse().unwrap(),
            interface: 0,
            cookie: 0x0000_0001_0000_0002,
        }
    }

    #[test]
    fn a_destroy_request_round_trips_through_the_socket_id_layout() {
        let message = destroy_udp(7, &id());
        assert_eq!(message.len(), HEADER_LEN + REQUEST_LEN);
        assert_eq!(u16_at(&message, 4), Some(SOCK_DESTROY));
        assert_eq!(u32_at(&message, 8), Some(7));
        // The id sits after family, protocol, ext, pad and the states word.
        assert_eq!(socket_id(&message, HEADER_LEN + 8), Some(id()));
        // Ports and addresses in network order, as the kernel reads them.
        assert_eq!(
            &message[HEADER_LEN + 8..HEADER_LEN + 12],
            &[0x9c, 0x40, 0x14, 0xe9]
        );
    }

    #[test]
    fn dump_answers_parse_into_sockets_acks_and_done() {
        // A socket message: header, then inet_diag_msg (family, state, timer,
        // retrans, the id, then five u32 the parser skips).
        let mut answer = Vec::new();
        let mut body = vec![2, 1, 0, 0];
        let mut request_body = Vec::new();
        request(&mut request_body, 0, &id());
        body.extend_from_slice(&request_body[8..]);
        body.extend_from_slice(&[0; 20]);
        let length = u32::try_from(HEADER_LEN + body.len()).unwrap();
        answer.extend_from_slice(&length.to_ne_bytes());
        answer.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        answer.extend_from_slice(&[0; 10]);
        answer.extend_from_slice(&body);
        // An error message: -ENOENT then the echoed header (cut short here).
        answer.extend_from_slice(&20_u32.to_ne_bytes());
        answer.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        answer.extend_from_slice(&[0; 10]);
        answer.extend_from_slice(&(-2_i32).to_ne_bytes());
        answer.extend_from_slice(&16_u32.to_ne_bytes());
        answer.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        answer.extend_from_slice(&[0; 10]);
        assert_eq!(parse(&answer), [Reply::Socket(id()), Reply::Ack(2), Reply::Done]);
    }

    #[test]
    fn garbage_ends_the_list_instead_of_panicking() {
        assert_eq!(parse(&[1, 2, 3]), []);
        assert_eq!(parse(&[4, 0, 0, 0, 3, 0]), []);
        let mut short = 8_u32.to_ne_bytes().to_vec();
        short.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&short), [], "a length shorter than the header");
    }
}
