//! Entries and capacity of the pinned maps, read from bpffs at scrape time.
//!
//! Counting walks each map's keys (one `BPF_MAP_GET_NEXT_KEY` a key, about
//! a microsecond each: ~0.3 s for a full default NAT table of 262 144
//! entries), so it runs on the blocking pool, only when /metrics is
//! scraped, never in the sync loop. The maps are opened by their pins, not
//! through the reconciler: the counts then include what the datapath itself
//! writes (NAT, affinity), and a scrape never waits for a sync pass.
//!
//! The load-balancer maps only the agent writes: their counts come from
//! what its last pass wrote ([`MapCensus::written`]) instead of a walk —
//! at 10k Services and 100k endpoints the walk of those two maps alone
//! took a fifth of a second of kernel time per scrape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aya::Pod;
use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{HashMap, Map, MapData, MapError};
use weir_common::lb::{
    AFFINITY_MAP, Affinity4Key, Affinity4Value, BACKENDS_MAP, MAGLEV_MAP, MaglevTable, REVERSE_SK_MAP,
    ReverseSockKey, ReverseSockValue, SERVICES_MAP,
};
use weir_common::nat::{MASQ_SKIP_MAP, NAT_MAP, NAT_MAP_V1, Nat4Entry, Nat4Key, NatRewrite};
use weir_common::policy::{
    POLICY_CT_MAP, POLICY_ENDPOINTS_MAP, POLICY_HOSTS_MAP, POLICY_RULES_MAP, PolicyCtKey, PolicyCtValue,
    PolicyEndpoint, PolicyRuleKey, PolicyRuleValue,
};
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
    /// Entries of the maps only the agent writes, by pin name, as its
    /// last complete pass left them.
    written: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl MapCensus {
    /// The maps pinned under `bpffs` (where the datapath pins them).
    #[must_use]
    pub fn new(bpffs: &Path) -> Self {
        Self {
            bpffs: bpffs.to_owned(),
            written: Arc::default(),
        }
    }

    /// The agent's last pass left `entries` in the map pinned as `pin`.
    pub fn written(&self, pin: &'static str, entries: usize) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.insert(pin, entries as u64);
    }

    /// The bpffs directory the maps are pinned under (`/v1/policy/verdict`
    /// reads the policy maps from there).
    #[must_use]
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// Counts every map; a map that cannot be read is left out (and logged
    /// at debug level: a scrape must not fail for one map).
    #[must_use]
    pub fn count(&self) -> Vec<MapCount> {
        let written = self
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        MAPS.iter()
            .filter_map(|(label, pin)| {
                count(&self.bpffs.join(pin), pin, written.get(pin).copied())
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

/// (entries, capacity) of the map pinned at `path` as `pin`; `known`: its
/// entries, if they need no walk.
fn count(path: &Path, pin: &str, known: Option<u64>) -> Result<(u64, u64), MapError> {
    let data = MapData::from_pin(path)?;
    let capacity = u64::from(data.info()?.max_entries());
    let entries = match known {
        Some(entries) => entries,
        None => count_entries(data, pin)?.unwrap_or(capacity),
    };
    Ok((entries, capacity))
}

/// Entries now in `data`, a map pinned as `pin`, walking its keys with the
/// layout `weir_common` gives that name (the kernel checks key and value
/// sizes, so a map of another layout is an error, not a wrong count).
/// `None` for a map whose entries are not counted: arrays (always full),
/// ring buffers, names weir does not know. Shared with the `weir` CLI.
///
/// A key deleted between two steps of the walk ends it early: the count is
/// a snapshot, as any count of a live map is.
pub fn count_entries(data: MapData, pin: &str) -> Result<Option<u64>, MapError> {
    let map = Map::from_map_data(data)?;
    let entries = match pin {
        SERVICES_MAP => hash_keys::<Service4Key, Service4Value>(map)?,
        BACKENDS_MAP => hash_keys::<BackendId, Backend4>(map)?,
        MAGLEV_MAP => hash_keys::<Service4Key, MaglevTable>(map)?,
        AFFINITY_MAP => hash_keys::<Affinity4Key, Affinity4Value>(map)?,
        REVERSE_SK_MAP => hash_keys::<ReverseSockKey, ReverseSockValue>(map)?,
        NAT_MAP => hash_keys::<Nat4Key, Nat4Entry>(map)?,
        NAT_MAP_V1 => hash_keys::<Nat4Key, NatRewrite>(map)?,
        POLICY_ENDPOINTS_MAP => hash_keys::<u32, PolicyEndpoint>(map)?,
        POLICY_CT_MAP => hash_keys::<PolicyCtKey, PolicyCtValue>(map)?,
        POLICY_HOSTS_MAP => hash_keys::<u32, u8>(map)?,
        POLICY_RULES_MAP => trie_keys::<PolicyRuleKey, PolicyRuleValue>(map)?,
        MASQ_SKIP_MAP => trie_keys::<u32, u8>(map)?,
        _ => return Ok(None),
    };
    Ok(Some(entries))
}

/// Keys of a hash (or LRU hash) map.
fn hash_keys<K: Pod, V: Pod>(map: Map) -> Result<u64, MapError> {
    let map: HashMap<MapData, K, V> = HashMap::try_from(map)?;
    Ok(map.keys().flatten().count() as u64)
}

/// Keys of an LPM trie.
fn trie_keys<K: Pod, V: Pod>(map: Map) -> Result<u64, MapError> {
    let map: LpmTrie<MapData, K, V> = LpmTrie::try_from(map)?;
    Ok(map.keys().flatten().count() as u64)
}
