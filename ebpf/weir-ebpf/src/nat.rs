//! The NAT table (weir's connection tracking) and the node configuration
//! shared by the uplink programs.

use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, LruHashMap};
use weir_common::nat::{NAT_F_REPLY, NAT_MAP_CAPACITY, NAT_PORT_MAX, NAT_PORT_MIN, NAT_REFRESH_NS};
use weir_common::{MasqConfig, Nat4Entry, Nat4Key, NatRewrite};

#[map(name = "weir_nat4_v2")]
static NAT: LruHashMap<Nat4Key, Nat4Entry> = LruHashMap::pinned(NAT_MAP_CAPACITY, 0);

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

/// The rewrite for a packet's tuple at one hook, if its flow is known; the
/// entry's last-seen time is refreshed (at most once per `NAT_REFRESH_NS`,
/// so a busy flow does not dirty its cache line on every packet).
///
/// Whether to refresh is decided on the coarse clock (the same
/// `CLOCK_MONOTONIC`, as of the last tick): reading it costs a fraction of
/// the precise one, which is then read only for the time actually
/// recorded — once a second per flow instead of on every packet. Lagging by
/// up to a tick, the coarse time can be below a `last_seen_ns` recorded
/// within the last tick: that is no time elapsed (saturating), not a wrap.
#[inline(always)]
pub fn lookup(key: &Nat4Key) -> Option<NatRewrite> {
    let entry = NAT.get_ptr_mut(key)?;
    // SAFETY: no arguments, cannot fail.
    let coarse = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a map value stays valid for the program's run. Only
    // `last_seen_ns` is written in place (an aligned 8-byte store, so readers
    // see the old or the new time); the rewrite is only ever replaced whole.
    unsafe {
        if coarse.saturating_sub((*entry).last_seen_ns) > NAT_REFRESH_NS {
            (*entry).last_seen_ns = now();
        }
        Some((*entry).rewrite)
    }
}

/// The time a new flow is set up at: one clock read for all its entries.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: bpf_ktime_get_ns takes no arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The table entry of a new flow's `rewrite`, created `now` (see [`now`]).
#[inline(always)]
pub fn entry(rewrite: &NatRewrite, origin: u8, flags: u8, now: u64) -> Nat4Entry {
    Nat4Entry { rewrite: *rewrite, origin, flags, pad: [0; 2], created_ns: now, last_seen_ns: now }
}

/// Records a rewrite; fails if the table refuses it.
#[inline(always)]
pub fn insert(key: &Nat4Key, entry: &Nat4Entry) -> Result<(), i32> {
    NAT.insert(key, entry, 0)
}

/// Reserves a node port for a flow whose packets leave as `node_ip:port →
/// peer:peer_port`, so that the reply (`peer → node_ip:port`, seen at
/// `reply_direction`) is rewritten by `reply`. Tries `preferred` first, then
/// random ports of the ephemeral range. The reply entry is inserted with
/// `BPF_NOEXIST`, which is what makes a port reserved: two CPUs racing for
/// one port cannot both win. An existing reply entry with the same rewrite
/// is the same flow (its other entry was evicted) and is reused. The reply
/// entry records `origin` and `flags` (plus [`NAT_F_REPLY`]), created `now`.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "a flow's tuple, taken apart for the verifier")]
pub fn reserve_port(
    node_ip: u32,
    peer: u32,
    peer_port: u16,
    proto: u8,
    preferred: u16,
    reply_direction: u8,
    reply: &NatRewrite,
    origin: u8,
    flags: u8,
    now: u64,
) -> Option<u16> {
    let value = entry(reply, origin, flags | NAT_F_REPLY, now);
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
        if NAT.insert(&key, &value, u64::from(BPF_NOEXIST)).is_ok() || lookup(&key).is_some_and(|r| r == *reply) {
            return Some(port);
        }
    }
    None
}
