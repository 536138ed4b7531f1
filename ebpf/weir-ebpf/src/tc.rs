//! The node uplink's TC programs (attached with TCX): per-packet NAT for
//! traffic no socket hook sees.

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_SHOT};
use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;
use weir_common::NatRewrite;
use weir_common::nat::{NAT_EGRESS, NAT_INGRESS};

use crate::packet::{Packet, parse};
use crate::{fib, masq, nat, nodeport};

#[expect(clippy::cast_possible_wrap, reason = "TC verdicts are small constants")]
const OK: i32 = TC_ACT_OK as i32;
#[expect(clippy::cast_possible_wrap, reason = "TC verdicts are small constants")]
const SHOT: i32 = TC_ACT_SHOT as i32;

/// Uplink ingress: known flows (NodePort connections, replies to
/// masqueraded or SNATed flows) are translated; new connections to external
/// frontends are load-balanced.
#[classifier]
pub fn weir_tc_ingress(ctx: TcContext) -> i32 {
    let Some(config) = nat::node_config() else { return OK };
    let Some(packet) = parse(&ctx) else { return OK };
    let rewrite = match nat::lookup(&packet.key(NAT_INGRESS)) {
        Some(rewrite) => rewrite,
        None => match nodeport::new_flow(&packet, &config) {
            nodeport::Outcome::Pass => return OK,
            nodeport::Outcome::Rewrite(rewrite) => rewrite,
            nodeport::Outcome::Drop => return SHOT,
        },
    };
    let verdict = apply(&ctx, &packet, &rewrite);
    // Leaving with our own address as source: forward it ourselves (see fib).
    if verdict == OK && rewrite.saddr == config.node_ip && packet.saddr != config.node_ip {
        return fib::redirect(&ctx, packet.proto, &rewrite).unwrap_or(OK);
    }
    verdict
}

/// Uplink egress: known flows (replies of local NodePort backends,
/// masqueraded flows) are translated; new pod flows leaving the cluster are
/// masqueraded.
#[classifier]
pub fn weir_tc_egress(ctx: TcContext) -> i32 {
    let Some(config) = nat::node_config() else { return OK };
    let Some(packet) = parse(&ctx) else { return OK };
    if let Some(rewrite) = nat::lookup(&packet.key(NAT_EGRESS)) {
        return apply(&ctx, &packet, &rewrite);
    }
    match masq::new_flow(&packet, &config) {
        masq::Outcome::Pass => OK,
        masq::Outcome::Rewrite(rewrite) => apply(&ctx, &packet, &rewrite),
        masq::Outcome::Drop => SHOT,
    }
}

#[inline(always)]
fn apply(ctx: &TcContext, packet: &Packet, rewrite: &NatRewrite) -> i32 {
    match packet.rewrite(ctx, rewrite) {
        Ok(()) => OK,
        Err(_) => SHOT,
    }
}
