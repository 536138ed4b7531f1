//! cgroup sock_addr hooks: socket-level load balancing.
//!
//! `connect4` (TCP and connected UDP) and `sendmsg4` (unconnected UDP)
//! rewrite a frontend to a backend before the kernel routes anything.
//! `recvmsg4` and `getpeername4` translate the backend back to the frontend,
//! so the application only ever sees the address it dialled — DNS clients
//! check that replies come from the server they asked.

use aya_ebpf::EbpfContext as _;
use aya_ebpf::bindings::bpf_sock_addr;
use aya_ebpf::helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval};
use aya_ebpf::macros::{cgroup_sock_addr, map};
use aya_ebpf::maps::LruHashMap;
use aya_ebpf::programs::SockAddrContext;
use weir_common::IPPROTO_UDP;
use weir_common::lb::{REVERSE_SK_MAP_CAPACITY, ReverseSockKey, ReverseSockValue};

use crate::lb::{Verdict, select_backend};

#[map(name = "weir_lb4_reverse_sk_v1")]
static REVERSE_SK: LruHashMap<ReverseSockKey, ReverseSockValue> =
    LruHashMap::pinned(REVERSE_SK_MAP_CAPACITY, 0);

/// Return value of a cgroup sock_addr program that lets the call proceed.
const ALLOW: i32 = 1;
/// Return value that makes the syscall fail (with the errno set by
/// `bpf_set_retval`, EPERM otherwise).
const REJECT: i32 = 0;
/// A frontend without backends refuses at once, as a closed port would:
/// clients fail fast instead of hanging (kube-proxy answers with an ICMP
/// reject for the same reason).
const ECONNREFUSED: i32 = 111;

/// `connect()` on an IPv4 socket.
#[cgroup_sock_addr(connect4)]
pub fn weir_connect4(ctx: SockAddrContext) -> i32 {
    translate_forward(&ctx)
}

/// `sendmsg()` / `sendto()` on an unconnected IPv4 UDP socket.
#[cgroup_sock_addr(sendmsg4)]
pub fn weir_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate_forward(&ctx)
}

/// `recvmsg()` / `recvfrom()` on an IPv4 UDP socket: backend → frontend.
#[cgroup_sock_addr(recvmsg4)]
pub fn weir_recvmsg4(ctx: SockAddrContext) -> i32 {
    translate_reverse(&ctx)
}

/// `getpeername()` on an IPv4 socket: backend → frontend.
#[cgroup_sock_addr(getpeername4)]
pub fn weir_getpeername4(ctx: SockAddrContext) -> i32 {
    translate_reverse(&ctx)
}

/// The destination as the kernel hands it over: address and port in network
/// byte order, and the protocol.
#[inline(always)]
fn destination(sa: &bpf_sock_addr) -> (u32, u16, u8) {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "user_port holds a network-order u16 in its low bytes; protocol is < 256"
    )]
    (sa.user_ip4, sa.user_port as u16, sa.protocol as u8)
}

#[inline(always)]
fn translate_forward(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid bpf_sock_addr to sock_addr programs.
    let sa = unsafe { &mut *ctx.sock_addr };
    let (address, port, proto) = destination(sa);
    // The client, for session affinity: its network namespace (one per pod).
    // SAFETY: valid context pointer.
    let client = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    match select_backend(address, port, proto, client, false, None) {
        Verdict::NotAService => ALLOW,
        Verdict::NoBackend => {
            // SAFETY: sets this syscall's return value; no memory involved.
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            REJECT
        }
        Verdict::Backend(backend) => {
            // Remember the way back before the socket can see a reply.
            // TCP needs it only for getpeername(); UDP for every recvmsg().
            let key = ReverseSockKey {
                // SAFETY: valid context pointer, as above.
                cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
                address: backend.address,
                port: backend.port,
                pad: 0,
            };
            let frontend = ReverseSockValue { address, port, pad: 0 };
            if REVERSE_SK.insert(&key, &frontend, 0).is_err() && proto == IPPROTO_UDP {
                // Without the reverse entry UDP replies would come from an
                // address the application never used; better to fail now.
                return REJECT;
            }
            sa.user_ip4 = backend.address;
            sa.user_port = u32::from(backend.port);
            ALLOW
        }
    }
}

#[inline(always)]
fn translate_reverse(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid bpf_sock_addr to sock_addr programs.
    let sa = unsafe { &mut *ctx.sock_addr };
    let (address, port, _) = destination(sa);
    let key = ReverseSockKey {
        // SAFETY: valid context pointer.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address,
        port,
        pad: 0,
    };
    // SAFETY: copied out at once.
    if let Some(frontend) = unsafe { REVERSE_SK.get(&key) } {
        sa.user_ip4 = frontend.address;
        sa.user_port = u32::from(frontend.port);
    }
    // recvmsg and getpeername hooks must allow; they only rewrite.
    ALLOW
}
