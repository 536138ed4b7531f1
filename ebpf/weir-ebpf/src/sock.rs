//! cgroup sock_addr hooks: socket-level load balancing.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::lb::{Verdict, select_backend};

/// Return value of a cgroup sock_addr program that lets the call proceed.
const ALLOW: i32 = 1;
/// Return value that makes the syscall fail (EPERM for connect()).
const REJECT: i32 = 0;

/// `connect()` on an IPv4 socket: rewrite a ClusterIP frontend to a backend.
#[cgroup_sock_addr(connect4)]
pub fn weir_connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: the kernel passes a valid bpf_sock_addr to sock_addr programs.
    let sa = unsafe { &mut *ctx.sock_addr };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "user_port holds a network-order u16 in its low bytes; protocol is < 256"
    )]
    let (port, proto) = (sa.user_port as u16, sa.protocol as u8);
    match select_backend(sa.user_ip4, port, proto) {
        Verdict::NotAService => Ok(ALLOW),
        Verdict::NoBackend => Err(REJECT),
        Verdict::Backend(backend) => {
            sa.user_ip4 = backend.address;
            sa.user_port = u32::from(backend.port);
            Ok(ALLOW)
        }
    }
}
