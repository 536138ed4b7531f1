//! The NAT table (weir's connection tracking) and the node configuration
//! shared by the uplink programs.

use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::helpers::bpf_get_prandom_u32;
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, LruHashMap};
use weir_common::nat::{NAT_MAP_CAPACITY, NAT_PORT_MAX, NAT_PORT_MIN};
use weir_common::{MasqConfig, Nat4Key, NatRewrite};

#[map(name = "weir_nat4_v1")]
static NAT: LruHashMap<Nat4Key, NatRewrite> = LruHashMap::pinned(NAT_MAP_CAPACITY, 0);

#[map(name = "weir_masq_cfg_v1")]
static NODE_CONFIG: Array<MasqConfig> = Array::pinned(1, 0);

/// How many ports to try before giving up on a new flow.
const PORT_TRIES: u32 = 8;

/// The node configuration, once the agent has written a node address.
#[inline(always)]
pub fn node_config() -> Option<MasqConfig> {
    let config = *NODE_CONFIG.get(0)?;
    (config.node_ip != 0).then_some(config)
}

/// The rewrite for a packet's tuple at one hook, if its flow is known.
#[inline(always)]
pub fn lookup(key: &Nat4Key) -> Option<NatRewrite> {
    // SAFETY: copied out at once; entries are replaced, never mutated.
    unsafe { NAT.get(key) }.copied()
}

/// Records a rewrite; fails if the table refuses it.
#[inline(always)]
pub fn insert(key: &Nat4Key, rewrite: &NatRewrite) -> Result<(), i32> {
    NAT.insert(key, rewrite, 0)
}

/// Reserves a node port for a flow whose packets leave as `node_ip:port →
/// peer:peer_port`, so that the reply (`peer → node_ip:port`, seen at
/// `reply_direction`) is rewritten by `reply`. Tries `preferred` first, then
/// random ports of the ephemeral range. The reply entry is inserted with
/// `BPF_NOEXIST`, which is what makes a port reserved: two CPUs racing for
/// one port cannot both win. An existing reply entry with the same rewrite
/// is the same flow (its other entry was evicted) and is reused.
#[inline(always)]
pub fn reserve_port(
    node_ip: u32,
    peer: u32,
    peer_port: u16,
    proto: u8,
    preferred: u16,
    reply_direction: u8,
    reply: &NatRewrite,
) -> Option<u16> {
    for attempt in 0..PORT_TRIES {
        let port = if attempt == 0 {
            preferred
        } else {
            let span = u32::from(NAT_PORT_MAX - NAT_PORT_MIN) + 1;
            // SAFETY: no arguments, cannot fail.
            let offset = unsafe { bpf_get_prandom_u32() } % span;
            #[expect(clippy::cast_possible_truncation, reason = "offset < span fits the port range")]
            let port = NAT_PORT_MIN + offset as u16;
            port.to_be()
        };
        let key = Nat4Key {
            saddr: peer,
            daddr: node_ip,
            sport: peer_port,
            dport: port,
            proto,
            direction: reply_direction,
            pad: [0; 2],
        };
        if NAT.insert(&key, reply, u64::from(BPF_NOEXIST)).is_ok() || lookup(&key).is_some_and(|r| r == *reply) {
            return Some(port);
        }
    }
    None
}
