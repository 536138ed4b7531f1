//! NodePort, externalIPs and LoadBalancer IPs: connections from outside the
//! node, translated per packet at the uplink's ingress.
//!
//! A local backend gets the client's own address (its reply is rewritten
//! back on the uplink's egress). A backend on another node gets the
//! connection from this node's address and a reserved port, so its reply
//! comes back here to be rewritten (externalTrafficPolicy Cluster; with
//! Local the agent programs local backends only and nothing is SNATed).

use weir_common::lb::{AFFINITY_CLIENT_IP_TAG, BACKEND_LOCAL, flow_hash};
use weir_common::nat::{NAT_EGRESS, NAT_F_REPLY, NAT_F_SNAT, NAT_INGRESS, NAT_ORIGIN_NODEPORT};
use weir_common::{MasqConfig, Nat4Key, NatRewrite};

use crate::lb::{Verdict, select_backend};
use crate::nat;
use crate::packet::Packet;

/// What to do with a packet arriving on the uplink that no NAT entry knows.
pub enum Outcome {
    /// Not for an external frontend: leave it.
    Pass,
    /// A new connection to a backend: rewrite it like this.
    Rewrite(NatRewrite),
    /// No state could be kept for the connection.
    Drop,
}

/// Starts translating a new connection to an external frontend.
#[inline(always)]
pub fn new_flow(packet: &Packet, config: &MasqConfig) -> Outcome {
    let client = AFFINITY_CLIENT_IP_TAG | u64::from(packet.saddr);
    let hash = flow_hash(packet.saddr, packet.daddr, packet.sport, packet.dport, packet.proto);
    let backend = match select_backend(packet.daddr, packet.dport, packet.proto, client, true, Some(hash)) {
        // No backend: the kernel gets the packet as it is and answers like a
        // closed port (TCP RST / ICMP port unreachable for a node address,
        // ICMP unreachable for an address it does not route) — clients are
        // refused at once instead of hanging.
        Verdict::NotAService | Verdict::NoBackend => return Outcome::Pass,
        Verdict::Backend(backend) => backend,
    };
    let now = nat::now();
    // What the reply must become: from the frontend to the client.
    let reply = NatRewrite { saddr: packet.daddr, daddr: packet.saddr, sport: packet.dport, dport: packet.sport };
    // The forward entry, and whether it moves the source to the node.
    let (forward, flags) = if backend.flags & BACKEND_LOCAL != 0 {
        // The reply leaves through the uplink as backend → client.
        let reply_key = Nat4Key {
            saddr: backend.address,
            daddr: packet.saddr,
            sport: backend.port,
            dport: packet.sport,
            proto: packet.proto,
            direction: NAT_EGRESS,
            pad: [0; 2],
        };
        if nat::insert(&reply_key, &nat::entry(&reply, NAT_ORIGIN_NODEPORT, NAT_F_REPLY, now)).is_err() {
            return Outcome::Drop;
        }
        let forward = NatRewrite { saddr: packet.saddr, daddr: backend.address, sport: packet.sport, dport: backend.port };
        (forward, 0)
    } else {
        // The reply arrives on the uplink as backend → node:port.
        let Some(port) = nat::reserve_port(
            config.node_ip,
            backend.address,
            backend.port,
            packet.proto,
            packet.sport,
            NAT_INGRESS,
            &reply,
            NAT_ORIGIN_NODEPORT,
            NAT_F_SNAT,
            now,
        ) else {
            return Outcome::Drop;
        };
        let forward = NatRewrite { saddr: config.node_ip, daddr: backend.address, sport: port, dport: backend.port };
        (forward, NAT_F_SNAT)
    };
    if nat::insert(&packet.key(NAT_INGRESS), &nat::entry(&forward, NAT_ORIGIN_NODEPORT, flags, now)).is_err() {
        return Outcome::Drop;
    }
    Outcome::Rewrite(forward)
}
