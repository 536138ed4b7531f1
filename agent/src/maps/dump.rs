//! A deterministic, read-only dump of the maps the agent writes: frontends
//! with their slots and Maglev tables, backends, and the masquerade
//! settings. The maps the datapath writes (NAT, session affinity, reverse
//! sockets) change with traffic and appear only as entry counts, on request.
//!
//! Two renderings: [`MapDump`] is `Serialize` (for the `weir` CLI's JSON and
//! tables), [`MapDump::to_text`] is the canonical text that tests compare
//! with checked-in expectations. Everything is sorted; addresses are dotted
//! quads, ports host-order numbers, protocols and flags by name. Backend ids
//! are shown on purpose: a restart must reuse them (live entries are never
//! rewritten), and a dump taken before and after proves it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::desired::protocol_name;
use aya::Pod;
use aya::maps::{HashMap, Map, MapData};
use ipnetwork::Ipv4Network;
use serde::Serialize;
use weir_common::lb::{
    AFFINITY_MAP, Affinity4Key, Affinity4Value, BACKEND_LOCAL, BACKENDS_MAP, MAGLEV_MAP, MaglevTable,
    REVERSE_SK_MAP, ReverseSockKey, ReverseSockValue, SERVICES_MAP, SVC_FLAG_AFFINITY, SVC_FLAG_EXTERNAL,
    SVC_FLAG_MAGLEV,
};
use weir_common::nat::{MASQ_CONFIG_MAP, MASQ_ENABLED, MASQ_SKIP_MAP, NAT_MAP};
use weir_common::{Backend4, BackendId, MasqConfig, Nat4Entry, Nat4Key, Service4Key, Service4Value};

use super::pinned::map_err;
use super::{LbMaps, MasqMaps, PinnedLbMaps, PinnedMasqMaps, Result};

/// Everything the dump shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MapDump {
    /// Frontends, by address, port and protocol.
    pub frontends: Vec<Frontend>,
    /// Backends, by id.
    pub backends: Vec<Backend>,
    /// Masquerade configuration and skip list.
    pub masquerade: Masquerade,
    /// Entry counts of the datapath-written maps, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicCounts>,
}

/// One frontend: its master entry, slots and Maglev table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frontend {
    /// Frontend address.
    pub address: Ipv4Addr,
    /// Frontend port.
    pub port: u16,
    /// `TCP`, `UDP`, or the protocol number.
    pub protocol: String,
    /// The master entry's slot count; `None` when slots exist without a
    /// master entry (a torn state the reconciler's order never leaves).
    pub count: Option<u16>,
    /// The master entry's flags by name (`affinity`, `external`, `maglev`;
    /// unknown bits as hex).
    pub flags: Vec<String>,
    /// Session-affinity timeout in seconds (`affinity` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_timeout: Option<u32>,
    /// Backend slots, by slot number.
    pub slots: Vec<Slot>,
    /// The Maglev table, if one is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
}

/// One backend slot of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// Slot number, from 1.
    pub slot: u16,
    /// The backend it names.
    pub backend: BackendId,
}

/// A Maglev table, summarised: a thousand ids say less than their counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Maglev {
    /// Entries in use.
    pub size: u32,
    /// Entries per backend id.
    pub slots_per_backend: BTreeMap<BackendId, u32>,
    /// FNV-1a (64 bit) of the entries in use, as hex: equal tables, equal digests.
    pub digest: String,
}

/// One backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// Its id in the backend map.
    pub id: BackendId,
    /// Address.
    pub address: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// `TCP`, `UDP`, or the protocol number.
    pub protocol: String,
    /// Flags by name (`local`).
    pub flags: Vec<String>,
}

/// The masquerade maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Masquerade {
    /// The node address NodePort SNAT and masquerading use (unset: none).
    pub node_ip: Option<Ipv4Addr>,
    /// Whether pods are masqueraded.
    pub enabled: bool,
    /// The pod CIDR whose sources are masqueraded (`a.b.c.d/n`).
    pub pod_cidr: Option<String>,
    /// Destinations never masqueraded (`a.b.c.d/n`), in address order.
    pub skip: Vec<String>,
}

/// Entries in the maps the datapath writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DynamicCounts {
    /// NAT / conntrack entries.
    pub nat: usize,
    /// Session-affinity entries.
    pub affinity: usize,
    /// Reverse-translation entries of the socket layer.
    pub reverse_sk: usize,
}

/// Opens the maps pinned in `bpffs` and dumps them; with `counts`, the
/// datapath-written maps' entry counts too. Nothing is written.
pub fn dump_pinned(bpffs: &Path, counts: bool) -> Result<MapDump> {
    let open = |name| super::pinned::open_pinned(bpffs, name);
    let lb = PinnedLbMaps::new(
        Some(open(SERVICES_MAP)?),
        Some(open(BACKENDS_MAP)?),
        Some(open(AFFINITY_MAP)?),
        Some(open(MAGLEV_MAP)?),
    )?;
    let masq = PinnedMasqMaps::new(
        Some(open(MASQ_CONFIG_MAP)?),
        Some(open(MASQ_SKIP_MAP)?),
        Some(open(NAT_MAP)?),
    )?;
    let mut dump = dump(&lb, &masq)?;
    if counts {
        dump.dynamic = Some(DynamicCounts {
            nat: count::<Nat4Key, Nat4Entry>(bpffs, NAT_MAP)?,
            affinity: count::<Affinity4Key, Affinity4Value>(bpffs, AFFINITY_MAP)?,
            reverse_sk: count::<ReverseSockKey, ReverseSockValue>(bpffs, REVERSE_SK_MAP)?,
        });
    }
    Ok(dump)
}

/// Entries in the hash map pinned as `name`.
fn count<K: Pod, V: Pod>(bpffs: &Path, name: &'static str) -> Result<usize> {
    let map: HashMap<MapData, K, V> = MapData::from_pin(bpffs.join(name))
        .and_then(Map::from_map_data)
        .and_then(HashMap::try_from)
        .map_err(map_err(name, "open"))?;
    map.keys()
        .try_fold(0, |n, key| key.map(|_| n + 1))
        .map_err(map_err(name, "iterate"))
}

/// Dumps what `lb` and `masq` hold.
pub fn dump(lb: &impl LbMaps, masq: &impl MasqMaps) -> Result<MapDump> {
    let mut frontends: BTreeMap<(Ipv4Addr, u16, u8), Frontend> = BTreeMap::new();
    for (key, value) in lb.services()? {
        let frontend = entry(&mut frontends, &key);
        if key.backend_slot == 0 {
            master(frontend, value);
        } else {
            frontend.slots.push(Slot {
                slot: key.backend_slot,
                backend: value.backend_id,
            });
        }
    }
    for (key, table) in lb.maglev_tables()? {
        entry(&mut frontends, &key).maglev = Some(maglev(&table));
    }
    let mut frontends: Vec<Frontend> = frontends.into_values().collect();
    for frontend in &mut frontends {
        frontend.slots.sort_unstable_by_key(|s| s.slot);
    }
    let mut backends: Vec<Backend> = lb.backends()?.iter().map(|(id, b)| backend(*id, *b)).collect();
    backends.sort_unstable_by_key(|b| b.id);
    Ok(MapDump {
        frontends,
        backends,
        masquerade: masquerade(&masq.config()?, &masq.skipped()?.into_iter().collect::<Vec<_>>()),
        dynamic: None,
    })
}

/// The frontend of `key`, created empty on first sight.
fn entry<'a>(
    frontends: &'a mut BTreeMap<(Ipv4Addr, u16, u8), Frontend>,
    key: &Service4Key,
) -> &'a mut Frontend {
    let address = Ipv4Addr::from(key.address.to_ne_bytes());
    let port = u16::from_be(key.port);
    frontends
        .entry((address, port, key.proto))
        .or_insert_with(|| Frontend {
            address,
            port,
            protocol: protocol_name(key.proto),
            count: None,
            flags: Vec::new(),
            affinity_timeout: None,
            slots: Vec::new(),
            maglev: None,
        })
}

fn master(frontend: &mut Frontend, value: Service4Value) {
    frontend.count = Some(value.count);
    let mut rest = value.flags;
    for (bit, name) in [
        (SVC_FLAG_AFFINITY, "affinity"),
        (SVC_FLAG_EXTERNAL, "external"),
        (SVC_FLAG_MAGLEV, "maglev"),
    ] {
        if rest & bit != 0 {
            frontend.flags.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        frontend.flags.push(format!("{rest:#x}"));
    }
    if value.flags & SVC_FLAG_AFFINITY != 0 {
        frontend.affinity_timeout = Some(value.backend_id);
    }
}

fn maglev(table: &MaglevTable) -> Maglev {
    let used = &table.backends[..(table.size as usize).min(table.backends.len())];
    let mut slots_per_backend = BTreeMap::new();
    // FNV-1a: tiny, stable across releases and platforms (unlike std's hasher).
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for id in used {
        *slots_per_backend.entry(*id).or_insert(0) += 1;
        for byte in id.to_le_bytes() {
            digest = (digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Maglev {
        size: table.size,
        slots_per_backend,
        digest: format!("{digest:016x}"),
    }
}

fn backend(id: BackendId, value: Backend4) -> Backend {
    let mut flags = Vec::new();
    if value.flags & BACKEND_LOCAL != 0 {
        flags.push("local".to_owned());
    }
    let rest = value.flags & !BACKEND_LOCAL;
    if rest != 0 {
        flags.push(format!("{rest:#x}"));
    }
    Backend {
        id,
        address: Ipv4Addr::from(value.address.to_ne_bytes()),
        port: u16::from_be(value.port),
        protocol: protocol_name(value.proto),
        flags,
    }
}

fn masquerade(config: &MasqConfig, skip: &[Ipv4Network]) -> Masquerade {
    let ip = |v: u32| Ipv4Addr::from(v.to_ne_bytes());
    Masquerade {
        node_ip: (config.node_ip != 0).then(|| ip(config.node_ip)),
        enabled: config.flags & MASQ_ENABLED != 0,
        pod_cidr: (config.pod_mask != 0)
            .then(|| Ipv4Network::with_netmask(ip(config.pod_cidr), ip(config.pod_mask)).ok())
            .flatten()
            .map(|net| net.to_string()),
        skip: skip.iter().map(ToString::to_string).collect(),
    }
}

impl MapDump {
    /// The canonical text rendering: one line per entry, sorted, stable.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.frontends {
            let _ = write!(out, "frontend {}:{}/{}", f.address, f.port, f.protocol);
            match f.count {
                Some(count) => {
                    let _ = write!(out, " count={count}");
                }
                None => out.push_str(" NO-MASTER-ENTRY"),
            }
            if !f.flags.is_empty() {
                let _ = write!(out, " flags={}", f.flags.join(","));
            }
            if let Some(timeout) = f.affinity_timeout {
                let _ = write!(out, " affinity-timeout={timeout}s");
            }
            out.push('\n');
            for slot in &f.slots {
                let _ = writeln!(out, "  slot {} -> backend {}", slot.slot, slot.backend);
            }
            if let Some(m) = &f.maglev {
                let per: Vec<String> = m
                    .slots_per_backend
                    .iter()
                    .map(|(id, n)| format!("{id}:{n}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "  maglev size={} per-backend={} digest={}",
                    m.size,
                    per.join(","),
                    m.digest
                );
            }
        }
        for b in &self.backends {
            let _ = write!(out, "backend {} {}:{}/{}", b.id, b.address, b.port, b.protocol);
            if !b.flags.is_empty() {
                let _ = write!(out, " {}", b.flags.join(","));
            }
            out.push('\n');
        }
        let m = &self.masquerade;
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "masquerade node-ip={} enabled={} pod-cidr={}",
            show(m.node_ip.map(|ip| ip.to_string())),
            m.enabled,
            show(m.pod_cidr.clone()),
        );
        for net in &m.skip {
            let _ = writeln!(out, "masquerade-skip {net}");
        }
        if let Some(d) = &self.dynamic {
            let _ = writeln!(
                out,
                "dynamic nat={} affinity={} reverse-sk={}",
                d.nat, d.affinity, d.reverse_sk
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use weir_common::lb::MAGLEV_MAX_TABLE_SIZE;

    use super::*;
    use crate::maps::FakeLbMaps;

    #[derive(Default)]
    struct FakeMasq(MasqConfig, BTreeSet<Ipv4Network>);

    impl MasqMaps for FakeMasq {
        fn config(&self) -> Result<MasqConfig> {
            Ok(self.0)
        }
        fn set_config(&mut self, config: &MasqConfig) -> Result<()> {
            self.0 = *config;
            Ok(())
        }
        fn skipped(&self) -> Result<BTreeSet<Ipv4Network>> {
            Ok(self.1.clone())
        }
        fn add_skipped(&mut self, net: Ipv4Network) -> Result<()> {
            self.1.insert(net);
            Ok(())
        }
        fn delete_skipped(&mut self, net: Ipv4Network) -> Result<()> {
            self.1.remove(&net);
            Ok(())
        }
        fn forget_udp_flows(&mut self, _: &[Backend4]) -> Result<usize> {
            Ok(0)
        }
    }

    fn key(ip: [u8; 4], port: u16, slot: u16, proto: u8) -> Service4Key {
        Service4Key {
            address: u32::from_ne_bytes(ip),
            port: port.to_be(),
            backend_slot: slot,
            proto,
            pad: [0; 3],
        }
    }

    fn value(backend_id: u32, count: u16, flags: u16) -> Service4Value {
        Service4Value {
            backend_id,
            count,
            flags,
        }
    }

    fn backend4(ip: [u8; 4], port: u16, flags: u8) -> Backend4 {
        Backend4 {
            address: u32::from_ne_bytes(ip),
            port: port.to_be(),
            proto: weir_common::IPPROTO_TCP,
            flags,
        }
    }

    #[test]
    fn the_text_dump_is_sorted_decoded_and_names_flags() {
        let tcp = weir_common::IPPROTO_TCP;
        let mut lb = FakeLbMaps::default();
        lb.put_backend(7, &backend4([10, 244, 2, 9], 8080, 0)).unwrap();
        lb.put_backend(3, &backend4([10, 244, 1, 9], 8080, BACKEND_LOCAL))
            .unwrap();
        // Inserted out of order: the dump sorts.
        lb.put_service(&key([198, 18, 0, 11], 30080, 2, tcp), &value(7, 0, 0))
            .unwrap();
        lb.put_service(&key([198, 18, 0, 11], 30080, 1, tcp), &value(3, 0, 0))
            .unwrap();
        lb.put_service(
            &key([198, 18, 0, 11], 30080, 0, tcp),
            &value(0, 2, SVC_FLAG_EXTERNAL | SVC_FLAG_MAGLEV),
        )
        .unwrap();
        lb.put_service(&key([10, 96, 0, 1], 53, 0, 17), &value(600, 0, SVC_FLAG_AFFINITY))
            .unwrap();
        // A slot without its master entry.
        lb.put_service(&key([10, 96, 0, 2], 80, 1, tcp), &value(3, 0, 0))
            .unwrap();
        let mut table = MaglevTable {
            size: 5,
            pad: 0,
            backends: [0; MAGLEV_MAX_TABLE_SIZE as usize],
        };
        table.backends[..5].copy_from_slice(&[3, 7, 3, 7, 3]);
        lb.put_maglev(&key([198, 18, 0, 11], 30080, 0, tcp), &table)
            .unwrap();
        let config = MasqConfig {
            node_ip: u32::from_ne_bytes([198, 18, 0, 11]),
            pod_cidr: u32::from_ne_bytes([10, 244, 0, 0]),
            pod_mask: u32::from_ne_bytes([255, 255, 0, 0]),
            flags: MASQ_ENABLED,
        };
        let mut masq = FakeMasq(config, BTreeSet::new());
        masq.1.insert("198.18.0.12/32".parse().unwrap());
        masq.1.insert("10.244.0.0/16".parse().unwrap());

        let text = dump(&lb, &masq).unwrap().to_text();
        let digest = maglev(&table).digest;
        assert_eq!(
            text,
            format!(
                "frontend 10.96.0.1:53/UDP count=0 flags=affinity affinity-timeout=600s\n\
                 frontend 10.96.0.2:80/TCP NO-MASTER-ENTRY\n\
                 \x20 slot 1 -> backend 3\n\
                 frontend 198.18.0.11:30080/TCP count=2 flags=external,maglev\n\
                 \x20 slot 1 -> backend 3\n\
                 \x20 slot 2 -> backend 7\n\
                 \x20 maglev size=5 per-backend=3:3,7:2 digest={digest}\n\
                 backend 3 10.244.1.9:8080/TCP local\n\
                 backend 7 10.244.2.9:8080/TCP\n\
                 masquerade node-ip=198.18.0.11 enabled=true pod-cidr=10.244.0.0/16\n\
                 masquerade-skip 10.244.0.0/16\n\
                 masquerade-skip 198.18.0.12/32\n"
            )
        );
    }

    #[test]
    fn maglev_digests_differ_by_content_and_ignore_unused_entries() {
        let mut a = MaglevTable {
            size: 3,
            pad: 0,
            backends: [0; MAGLEV_MAX_TABLE_SIZE as usize],
        };
        a.backends[..3].copy_from_slice(&[1, 2, 1]);
        let mut b = a;
        b.backends[10] = 9; // beyond `size`
        assert_eq!(maglev(&a), maglev(&b));
        b.backends[0] = 2;
        assert_ne!(maglev(&a).digest, maglev(&b).digest);
    }

    #[test]
    fn unknown_flag_bits_are_shown_in_hex() {
        let mut frontend = entry(&mut BTreeMap::new(), &key([10, 96, 0, 1], 80, 0, 6)).clone();
        master(&mut frontend, value(0, 1, SVC_FLAG_EXTERNAL | 0x40));
        assert_eq!(frontend.flags, ["external", "0x40"]);
        assert_eq!(
            backend(1, backend4([10, 0, 0, 1], 80, 0x81)).flags,
            ["local", "0x80"]
        );
    }

    #[test]
    fn empty_maps_dump_to_an_unset_masquerade_line() {
        let text = dump(&FakeLbMaps::default(), &FakeMasq::default())
            .unwrap()
            .to_text();
        assert_eq!(text, "masquerade node-ip=- enabled=false pod-cidr=-\n");
    }
}
