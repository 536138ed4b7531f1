//! Forwarding a translated packet ourselves.
//!
//! A packet arriving on the uplink that leaves with this node's address as
//! its source (NodePort SNAT to a backend on another node, or that
//! backend's reply going back to the client) would be dropped by the
//! kernel's input path as a martian: a packet from outside claiming a local
//! source. So the program looks up the route itself and redirects the packet
//! to the egress device, with the neighbour subsystem filling in the L2
//! addresses — the stack's input validation is never involved.

use aya_ebpf::EbpfContext as _;
use aya_ebpf::bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, __sk_buff, bpf_fib_lookup};
use aya_ebpf::helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect_neigh};
use aya_ebpf::programs::TcContext;
use weir_common::NatRewrite;

/// `AF_INET`.
const AF_INET: u8 = 2;

/// Redirects the (already rewritten) packet along the route to its new
/// destination. `None` if there is no usable route: the caller lets the
/// stack have the packet (which will then report or drop it).
#[inline(always)]
pub fn redirect(ctx: &TcContext, proto: u8, to: &NatRewrite) -> Option<i32> {
    let mut params = core::mem::MaybeUninit::<bpf_fib_lookup>::uninit();
    // Zeroed word by word (u32: the struct's alignment is 4): `mem::zeroed`
    // becomes a call to a byte-at-a-time memset loop on this target.
    let words = params.as_mut_ptr().cast::<u32>();
    for k in 0..core::mem::size_of::<bpf_fib_lookup>() / 4 {
        // SAFETY: within the 64-byte struct; volatile keeps the stores from
        // being turned back into a memset call.
        unsafe { words.add(k).write_volatile(0) };
    }
    // SAFETY: an all-zero bpf_fib_lookup is a valid request skeleton.
    // Borrowed in place: moving it out would copy the zeros again.
    let params = unsafe { params.assume_init_mut() };
    params.family = AF_INET;
    params.l4_protocol = proto;
    params.sport = to.sport;
    params.dport = to.dport;
    // SAFETY: TC programs get a valid __sk_buff.
    params.ifindex = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ingress_ifindex };
    params.__bindgen_anon_3.ipv4_src = to.saddr;
    params.__bindgen_anon_4.ipv4_dst = to.daddr;
    #[expect(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "a 64-byte struct")]
    let size = core::mem::size_of::<bpf_fib_lookup>() as i32;
    // SAFETY: params is a valid, writable bpf_fib_lookup of `size` bytes.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), &raw mut *params, size, 0) };
    #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
    let found = rc >= 0 && (rc as u32 == BPF_FIB_LKUP_RET_SUCCESS || rc as u32 == BPF_FIB_LKUP_RET_NO_NEIGH);
    if !found {
        return None;
    }
    // SAFETY: no parameters: the helper resolves the next hop itself.
    #[expect(clippy::cast_possible_truncation, reason = "redirect verdicts are small")]
    let verdict = unsafe { bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) } as i32;
    Some(verdict)
}
