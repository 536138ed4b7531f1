//! `weir bpf maps`: every weir map pinned in bpffs, what the kernel says of
//! it (type, capacity, key and value sizes) and how full it is. Entries are
//! counted with the agent's census code (one key walk per map), so a map's
//! count here and in `/metrics` agree.

use std::path::Path;

use aya::maps::{MapData, MapType};
use serde::Serialize;
use weir_agent::ops::census::count_entries;

use super::decode::or_dash;
use crate::Args;
use crate::output::{Render, Table, print};

/// `weir bpf maps`.
#[derive(Debug, Serialize)]
pub struct MapList {
    /// The maps, by name.
    pub maps: Vec<MapRow>,
}

/// One pinned map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapRow {
    /// Pinned name (`weir_nat4_v2`).
    pub name: String,
    /// `hash`, `lru_hash`, `lpm_trie`, `array`, `ringbuf`, …
    #[serde(rename = "type")]
    pub map_type: String,
    /// Entries now; `null` where not counted (ring buffers; maps weir does
    /// not know the layout of). Arrays count as full.
    pub entries: Option<u64>,
    /// `max_entries` (for a ring buffer: its size in bytes).
    pub capacity: u64,
    /// Layout version, from the `_vN` suffix of the name.
    pub version: Option<u32>,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    print(&list(&args.bpffs)?, args.output)
}

/// Every weir map pinned directly under `bpffs` (links and programs pinned
/// beside them are skipped: they are not maps).
pub fn list(bpffs: &Path) -> anyhow::Result<MapList> {
    let dir = std::fs::read_dir(bpffs).map_err(|e| super::unreachable(bpffs, e))?;
    let mut maps = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| super::unreachable(bpffs, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !name.starts_with("weir_") {
            continue;
        }
        let Ok(data) = MapData::from_pin(entry.path()) else {
            continue;
        };
        let Ok(info) = data.info() else { continue };
        let map_type = info.map_type().ok();
        let capacity = u64::from(info.max_entries());
        let entries = match map_type {
            Some(MapType::RingBuf) => None,
            Some(MapType::Array | MapType::PerCpuArray) => Some(capacity),
            _ => count_entries(data, &name)
                .map_err(|e| anyhow::anyhow!("counting the entries of {name}: {e}"))?,
        };
        maps.push(MapRow {
            map_type: map_type.map_or_else(|| "unknown".to_owned(), type_name),
            entries,
            capacity,
            version: version(&name),
            key_size: info.key_size(),
            value_size: info.value_size(),
            name,
        });
    }
    maps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(MapList { maps })
}

/// The layout version of a pinned name: `weir_nat4_v2` → 2.
pub fn version(name: &str) -> Option<u32> {
    name.rsplit_once("_v")?.1.parse().ok()
}

/// A map type by its kernel name, without the `BPF_MAP_TYPE_` prefix.
pub fn type_name(map_type: MapType) -> String {
    let name = match map_type {
        MapType::Hash => "hash",
        MapType::LruHash => "lru_hash",
        MapType::PerCpuHash => "percpu_hash",
        MapType::LruPerCpuHash => "lru_percpu_hash",
        MapType::Array => "array",
        MapType::PerCpuArray => "percpu_array",
        MapType::LpmTrie => "lpm_trie",
        MapType::RingBuf => "ringbuf",
        MapType::PerfEventArray => "perf_event_array",
        MapType::ProgramArray => "prog_array",
        MapType::SockMap => "sockmap",
        MapType::SockHash => "sockhash",
        MapType::Queue => "queue",
        MapType::Stack => "stack",
        other => return format!("{other:?}").to_lowercase(),
    };
    name.to_owned()
}

impl Render for MapList {
    fn table(&self) -> String {
        let mut table = Table::new(&[
            "NAME", "TYPE", "ENTRIES", "CAPACITY", "FILL", "VERSION", "KEY", "VALUE",
        ]);
        for m in &self.maps {
            #[expect(
                clippy::cast_precision_loss,
                reason = "a fill percentage needs no exact counts"
            )]
            let fill = match (m.entries, m.map_type.as_str()) {
                (Some(n), "hash" | "lru_hash" | "lpm_trie") if m.capacity > 0 => {
                    format!("{:.1}%", n as f64 * 100.0 / m.capacity as f64)
                }
                _ => String::new(),
            };
            table.row(vec![
                m.name.clone(),
                m.map_type.clone(),
                m.entries.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                m.capacity.to_string(),
                or_dash(fill),
                m.version.map_or_else(|| "-".to_owned(), |v| format!("v{v}")),
                m.key_size.to_string(),
                m.value_size.to_string(),
            ]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_suffix() {
        assert_eq!(version("weir_nat4_v2"), Some(2));
        assert_eq!(version("weir_lb4_services_v1"), Some(1));
        assert_eq!(version("weir_thing"), None);
        assert_eq!(version("weir_thing_vx"), None);
    }

    #[test]
    fn types_have_kernel_names() {
        assert_eq!(type_name(MapType::LruHash), "lru_hash");
        assert_eq!(type_name(MapType::LpmTrie), "lpm_trie");
        assert_eq!(type_name(MapType::RingBuf), "ringbuf");
    }

    #[test]
    fn the_table_shows_fill_for_counted_maps_only() {
        let row = |name: &str, map_type: &str, entries: Option<u64>| MapRow {
            name: name.into(),
            map_type: map_type.into(),
            entries,
            capacity: 200,
            version: version(name),
            key_size: 16,
            value_size: 32,
        };
        let list = MapList {
            maps: vec![
                row("weir_nat4_v2", "lru_hash", Some(3)),
                row("weir_pol_verdicts_v1", "ringbuf", None),
            ],
        };
        let table = list.table();
        assert!(
            table.contains("weir_nat4_v2          lru_hash  3        200       1.5%"),
            "{table}"
        );
        assert!(
            table.contains("weir_pol_verdicts_v1  ringbuf   -        200       -     v1"),
            "{table}"
        );
    }
}
