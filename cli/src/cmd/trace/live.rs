//! [`SelectionState`] over the live node: the pinned affinity and Maglev
//! maps, `CLOCK_MONOTONIC`, and the cookie of the source's netns (found the
//! way `--probe` finds where to connect from).

use std::cell::OnceCell;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData};
use weir_common::Service4Key;
use weir_common::lb::{AFFINITY_MAP, Affinity4Key, Affinity4Value, MAGLEV_MAP, MaglevTable};

use super::pick::SelectionState;
use super::probe;
use crate::cmd::bpf::decode;

/// The live state, read on demand (most traces need none of it).
pub struct LiveSelection {
    bpffs: PathBuf,
    source: Ipv4Addr,
    netns: Option<PathBuf>,
    /// Where the source is, found once (a walk of /proc and /run/netns)
    /// for both the affinity key and `--probe`.
    origin: OnceCell<Result<probe::Origin, String>>,
    cookie: OnceCell<Option<u64>>,
}

impl LiveSelection {
    /// For a trace from `source` (in `netns`, when given) on the node whose
    /// maps are pinned under `bpffs`.
    pub fn new(bpffs: &Path, source: Ipv4Addr, netns: Option<&Path>) -> Self {
        Self {
            bpffs: bpffs.to_owned(),
            source,
            netns: netns.map(Path::to_owned),
            origin: OnceCell::new(),
            cookie: OnceCell::new(),
        }
    }

    /// Where the source's connections start (see [`probe::origin`]).
    pub fn origin(&self) -> anyhow::Result<probe::Origin> {
        self.origin
            .get_or_init(|| probe::origin(self.source, self.netns.as_deref()).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }
}

impl SelectionState for LiveSelection {
    fn affinity(&self, key: &Affinity4Key) -> Option<Affinity4Value> {
        let data = decode::open(&self.bpffs, AFFINITY_MAP).ok()?;
        // An LRU hash: aya's HashMap reads both flavours.
        let map: HashMap<MapData, Affinity4Key, Affinity4Value> =
            HashMap::try_from(Map::from_map_data(data).ok()?).ok()?;
        map.get(key, 0).ok()
    }

    fn maglev(&self, master: &Service4Key) -> Option<MaglevTable> {
        let data = decode::open(&self.bpffs, MAGLEV_MAP).ok()?;
        let map: HashMap<MapData, Service4Key, MaglevTable> =
            HashMap::try_from(Map::from_map_data(data).ok()?).ok()?;
        map.get(master, 0).ok()
    }

    fn now_ns(&self) -> u64 {
        decode::monotonic_now_ns().unwrap_or(0)
    }

    fn netns_cookie(&self) -> Option<u64> {
        *self.cookie.get_or_init(|| {
            let origin = self.origin().ok()?;
            probe::netns_cookie(&origin).ok()
        })
    }
}
