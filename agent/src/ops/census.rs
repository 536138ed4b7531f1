//! Entries and capacity of the pinned maps, read from bpffs at scrape time.
//!
//! Counting walks each map's keys (one `BPF_MAP_GET_NEXT_KEY` a key, about
//! a microsecond each: ~0.3 s for a full default NAT table of 262 144
//! entries), so it runs on the blocking pool, only when /metrics is
//! scraped, never in the sync loop. The maps are opened by their pins, not
//! through the reconciler: the counts then include what the datapath itself
//! writes (NAT, affinity), and a scrape never waits for a sync pass.

use std::path::{Path, PathBuf};

use aya::Pod;
use aya::maps::{HashMap, Map, MapData, MapError};
use weir_common::lb::{
    AFFINITY_MAP, Affinity4Key, Affinity4Value, BACKENDS_MAP, MAGLEV_MAP, MaglevTable, SERVICES_MAP,
};
use weir_common::nat::{NAT_MAP, Nat4Entry, Nat4Key};
use weir_common::{Backend4, BackendId, Service4Key, Service4Value};

/// One map: its label and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapCount {
    /// Short name (the `map` label).
    pub map: &'static str,
    /// Entries now.
    pub entries: u64,
    /// `max_entries`.
    pub capacity: u64,
}

/// The maps counted, by short name.
const MAPS: [(&str, &str); 5] = [
    ("services", SERVICES_MAP),
    ("backends", BACKENDS_MAP),
    ("maglev", MAGLEV_MAP),
    ("affinity", AFFINITY_MAP),
    ("nat", NAT_MAP),
];

/// Finds the maps pinned under one bpffs directory.
#[derive(Debug, Clone)]
pub struct MapCensus {
    bpffs: PathBuf,
}

impl MapCensus {
    /// The maps pinned under `bpffs` (where the datapath pins them).
    #[must_use]
    pub fn new(bpffs: &Path) -> Self {
        Self {
            bpffs: bpffs.to_owned(),
        }
    }

    /// Counts every map; a map that cannot be read is left out (and logged
    /// at debug level: a scrape must not fail for one map).
    #[must_use]
    pub fn count(&self) -> Vec<MapCount> {
        MAPS.iter()
            .filter_map(|(label, pin)| {
                let path = self.bpffs.join(pin);
                let counted = match *label {
                    "services" => count::<Service4Key, Service4Value>(&path),
                    "backends" => count::<BackendId, Backend4>(&path),
                    "maglev" => count::<Service4Key, MaglevTable>(&path),
                    "affinity" => count::<Affinity4Key, Affinity4Value>(&path),
                    _ => count::<Nat4Key, Nat4Entry>(&path),
                };
                counted
                    .inspect_err(|e| tracing::debug!(map = pin, error = %e, "cannot count map"))
                    .ok()
                    .map(|(entries, capacity)| MapCount {
                        map: label,
                        entries,
                        capacity,
                    })
            })
            .collect()
    }
}

/// (entries, capacity) of the hash map pinned at `path`.
fn count<K: Pod, V: Pod>(path: &Path) -> Result<(u64, u64), MapError> {
    let data = MapData::from_pin(path)?;
    let capacity = u64::from(data.info()?.max_entries());
    let map: HashMap<MapData, K, V> = HashMap::try_from(Map::from_map_data(data)?)?;
    // A key deleted between two steps of the walk ends it early: the count
    // is a snapshot, as any count of a live map is.
    let entries = map.keys().flatten().count() as u64;
    Ok((entries, capacity))
}
