//! Pinned maps of an older layout or another capacity are migrated, not
//! flushed: an upgrade or a `--map-size-*` change keeps every NAT entry
//! (every established NodePort and masqueraded flow).
//!
//! The older agent is played by the test: it creates `weir_nat4_v1` (LRU
//! hash, 16-byte key, 12-byte value) with raw `bpf(2)` in the node's bpffs
//! and fills it, as a v1 datapath would have.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapInfo};
use weir_common::nat::{NAT_EGRESS, NAT_F_MIGRATED, NAT_INGRESS, NAT_MAP, NAT_MAP_V1, NAT_ORIGIN_UNKNOWN};
use weir_common::{IPPROTO_TCP, IPPROTO_UDP, Nat4Entry, Nat4Key, NatRewrite};
use weir_tests::Node;
use weir_tests::bpfmap::{BPF_MAP_TYPE_LRU_HASH, RawMap};

use crate::common::empty_node;

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// A NodePort flow to a remote backend (both entries) and a masqueraded
/// UDP flow's reply entry, as a v1 datapath wrote them.
fn v1_entries() -> Vec<(Nat4Key, NatRewrite)> {
    let client = be(Ipv4Addr::new(198, 18, 0, 100));
    let node = be(Ipv4Addr::new(198, 18, 0, 11));
    let backend = be(Ipv4Addr::new(10, 244, 2, 7));
    let key = |saddr, daddr, sport: u16, dport: u16, proto, direction| Nat4Key {
        saddr,
        daddr,
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        direction,
        pad: [0; 2],
    };
    let rewrite = |saddr, daddr, sport: u16, dport: u16| NatRewrite {
        saddr,
        daddr,
        sport: sport.to_be(),
        dport: dport.to_be(),
    };
    vec![
        (
            key(client, node, 40_000, 30_080, IPPROTO_TCP, NAT_INGRESS),
            rewrite(node, backend, 40_000, 8080),
        ),
        (
            key(backend, node, 8080, 40_000, IPPROTO_TCP, NAT_INGRESS),
            rewrite(node, client, 30_080, 40_000),
        ),
        (
            key(
                be(Ipv4Addr::new(10, 244, 1, 3)),
                client,
                5353,
                53,
                IPPROTO_UDP,
                NAT_EGRESS,
            ),
            rewrite(node, client, 41_234, 53),
        ),
    ]
}

/// A key's bytes as the kernel stores them (`repr(C)`, no implicit padding).
fn key_bytes(key: &Nat4Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend(key.saddr.to_ne_bytes());
    out.extend(key.daddr.to_ne_bytes());
    out.extend(key.sport.to_ne_bytes());
    out.extend(key.dport.to_ne_bytes());
    out.extend([key.proto, key.direction, key.pad[0], key.pad[1]]);
    out
}

/// A v1 value's bytes.
fn rewrite_bytes(rewrite: &NatRewrite) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend(rewrite.saddr.to_ne_bytes());
    out.extend(rewrite.daddr.to_ne_bytes());
    out.extend(rewrite.sport.to_ne_bytes());
    out.extend(rewrite.dport.to_ne_bytes());
    out
}

/// Pins a v1 NAT table with `entries` where the agent will look for it.
fn pin_v1_table(bpffs: &Path, entries: &[(Nat4Key, NatRewrite)]) {
    let map = RawMap::create_pinned(
        BPF_MAP_TYPE_LRU_HASH,
        16,
        12,
        1024,
        "weir_nat4_v1",
        &bpffs.join(NAT_MAP_V1),
    )
    .unwrap_or_else(|e| panic!("creating the v1 NAT table: {e:#}"));
    for (key, value) in entries {
        map.update(&key_bytes(key), &rewrite_bytes(value))
            .unwrap_or_else(|e| panic!("filling the v1 NAT table: {e:#}"));
    }
}

/// The v2 table's entries and capacity.
fn v2_table(bpffs: &Path) -> (BTreeMap<Nat4Key, Nat4Entry>, u32) {
    let pin = bpffs.join(NAT_MAP);
    let capacity = MapInfo::from_pin(&pin)
        .unwrap_or_else(|e| panic!("{}: {e}", pin.display()))
        .max_entries();
    let map: HashMap<MapData, Nat4Key, Nat4Entry> = MapData::from_pin(&pin)
        .and_then(Map::from_map_data)
        .and_then(HashMap::try_from)
        .unwrap_or_else(|e| panic!("opening {}: {e}", pin.display()));
    let entries = map
        .iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reading {}: {e}", pin.display()));
    (entries, capacity)
}

fn restart_with_nat_size(node: &mut Node, size: u32) -> anyhow::Result<weir_tests::AgentStatus> {
    if node.agent_running() {
        let stopped = node.stop_agent();
        node.expect(stopped, "stopping the agent");
    }
    let args = node.agent_args_mut();
    args.retain(|a| !a.starts_with("--map-size-nat"));
    args.push(format!("--map-size-nat={size}"));
    node.start_agent()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_v1_nat_table_is_migrated_to_v2_and_survives_resizes() {
    let mut node = empty_node();
    let bpffs = node.bpffs_path().to_owned();
    let v1 = v1_entries();
    pin_v1_table(&bpffs, &v1);

    let started = node.start_agent();
    node.expect(started, "starting the agent on a v1 NAT table");
    assert!(
        !bpffs.join(NAT_MAP_V1).exists(),
        "the v1 pin must be gone after the migration"
    );
    let (entries, capacity) = v2_table(&bpffs);
    assert_eq!(capacity, weir_common::nat::NAT_MAP_CAPACITY);
    let want: BTreeMap<Nat4Key, Nat4Entry> = v1
        .iter()
        .map(|(k, v)| {
            let entry = Nat4Entry {
                rewrite: *v,
                origin: NAT_ORIGIN_UNKNOWN,
                flags: NAT_F_MIGRATED,
                pad: [0; 2],
                created_ns: 0,
                last_seen_ns: 0,
            };
            (*k, entry)
        })
        .collect();
    assert_eq!(entries, want, "the v2 table must hold the converted v1 entries");
    let log = node.agent_log();
    assert!(
        log.contains("migrated a pinned map") && log.contains(NAT_MAP_V1),
        "the migration must be logged:\n{log}"
    );

    // Growing the table keeps the entries.
    let grown = restart_with_nat_size(&mut node, 4096);
    node.expect(grown, "restarting with a larger NAT table");
    let (entries, capacity) = v2_table(&bpffs);
    assert_eq!(capacity, 4096, "the NAT table must have the new capacity");
    assert_eq!(entries, want, "a resize must keep every entry");

    // Too small for what it holds: the agent refuses to start, and the
    // table is left as it was, entries and all.
    let refused = restart_with_nat_size(&mut node, 2);
    let Err(err) = refused else {
        panic!("an agent whose NAT table cannot hold the live flows must not start");
    };
    let message = format!("{err:#}");
    assert!(
        message.contains("cannot take the 3 entries"),
        "the error must say why: {message}"
    );
    let (entries, capacity) = v2_table(&bpffs);
    assert_eq!(capacity, 4096, "a refused resize leaves the old table in place");
    assert_eq!(entries, want, "a refused resize loses nothing");
    let leftovers: Vec<_> = std::fs::read_dir(&bpffs)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with("_resizing"))
        .collect();
    assert!(leftovers.is_empty(), "pins left aside: {leftovers:?}");

    // And back to the default size.
    let shrunk = restart_with_nat_size(&mut node, 1024);
    node.expect(shrunk, "restarting with a smaller NAT table");
    let (entries, capacity) = v2_table(&bpffs);
    assert_eq!(capacity, 1024);
    assert_eq!(entries, want);
}
