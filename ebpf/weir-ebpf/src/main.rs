//! weir's eBPF programs.
//!
//! Socket-level load balancing: a cgroup `connect4` hook rewrites the
//! destination of a `connect()` to a ClusterIP frontend into one of its
//! backends before the kernel routes anything. The packet never carries the
//! VIP, so no per-packet NAT or conntrack is needed for this path.
//!
//! Per-packet path: TC programs on the node's uplink load-balance NodePort,
//! externalIP and LoadBalancer-IP connections from outside, masquerade pod
//! traffic leaving the cluster, and translate the replies of both, with one
//! LRU NAT table as connection tracking.
//!
//! NetworkPolicy: TC programs on each pod's host-side veth judge what the
//! pod sends and is sent, statefully (see `policy`).
//!
//! The crate is meant for `bpfel-unknown-none` (`cargo xtask build`). On any
//! other target it compiles to an empty program, so workspace-wide commands
//! such as `cargo clippy --workspace` keep working.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod fib;
#[cfg(target_arch = "bpf")]
mod lb;
#[cfg(target_arch = "bpf")]
mod masq;
#[cfg(target_arch = "bpf")]
mod nat;
#[cfg(target_arch = "bpf")]
mod nodeport;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod policy;
#[cfg(target_arch = "bpf")]
mod tc;
#[cfg(target_arch = "bpf")]
mod sock;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is
    // never called at run time; it only satisfies `no_std`.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("weir-ebpf is an eBPF object: build it with `cargo xtask build`");
}
