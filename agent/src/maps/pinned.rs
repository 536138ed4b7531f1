//! [`LbMaps`] over the real eBPF hash maps, pinned in bpffs by the loader.

use aya::maps::{HashMap, Map, MapData, MapError};
use weir_common::lb::{
    AFFINITY_MAP, Affinity4Key, Affinity4Value, BACKENDS_MAP, MAGLEV_MAP, MaglevTable, SERVICES_MAP,
};
use weir_common::{Backend4, BackendId, Service4Key, Service4Value};

use super::{Error, LbMaps, Result};

/// The pinned service and backend maps.
pub struct PinnedLbMaps {
    services: HashMap<MapData, Service4Key, Service4Value>,
    backends: HashMap<MapData, BackendId, Backend4>,
    affinity: HashMap<MapData, Affinity4Key, Affinity4Value>,
    maglev: HashMap<MapData, Service4Key, MaglevTable>,
}

impl PinnedLbMaps {
    /// Wraps the maps taken out of a loaded eBPF object.
    pub fn new(
        services: Option<Map>,
        backends: Option<Map>,
        affinity: Option<Map>,
        maglev: Option<Map>,
    ) -> Result<Self> {
        let maglev = maglev.ok_or(Error::Missing(MAGLEV_MAP))?;
        let services = services.ok_or(Error::Missing(SERVICES_MAP))?;
        let backends = backends.ok_or(Error::Missing(BACKENDS_MAP))?;
        let affinity = affinity.ok_or(Error::Missing(AFFINITY_MAP))?;
        Ok(Self {
            services: HashMap::try_from(services).map_err(map_err(SERVICES_MAP, "open"))?,
            backends: HashMap::try_from(backends).map_err(map_err(BACKENDS_MAP, "open"))?,
            // An LRU hash: aya's HashMap wrapper serves both hash flavours.
            affinity: HashMap::try_from(affinity).map_err(map_err(AFFINITY_MAP, "open"))?,
            maglev: HashMap::try_from(maglev).map_err(map_err(MAGLEV_MAP, "open"))?,
        })
    }
}

/// Opens the map pinned as `name` under `bpffs` (a reader's view: the
/// `weir` CLI and dumps use it while the agent may be down).
pub(super) fn open_pinned(bpffs: &std::path::Path, name: &'static str) -> Result<Map> {
    MapData::from_pin(bpffs.join(name))
        .and_then(Map::from_map_data)
        .map_err(map_err(name, "open"))
}

pub(super) fn map_err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> Error {
    move |source| match &source {
        // E2BIG from an insert: the map has no free entry left.
        MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(E2BIG) => Error::Full { map },
        _ => Error::Map { map, op, source },
    }
}

/// What the kernel answers when a map with all entries in use gets a new key.
const E2BIG: i32 = 7;

/// Deleting a key that is not there is success: it makes deletes idempotent.
pub(super) fn ignore_missing(result: std::result::Result<(), MapError>) -> std::result::Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl LbMaps for PinnedLbMaps {
    fn services(&self) -> Result<Vec<(Service4Key, Service4Value)>> {
        // aya's iterator skips keys deleted between listing and lookup.
        self.services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(SERVICES_MAP, "iterate"))
    }

    fn backends(&self) -> Result<Vec<(BackendId, Backend4)>> {
        self.backends
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(BACKENDS_MAP, "iterate"))
    }

    fn put_service(&mut self, key: &Service4Key, value: &Service4Value) -> Result<()> {
        self.services
            .insert(key, value, 0)
            .map_err(map_err(SERVICES_MAP, "update"))
    }

    fn delete_service(&mut self, key: &Service4Key) -> Result<()> {
        ignore_missing(self.services.remove(key)).map_err(map_err(SERVICES_MAP, "delete"))
    }

    fn put_backend(&mut self, id: BackendId, backend: &Backend4) -> Result<()> {
        self.backends
            .insert(&id, backend, 0)
            .map_err(map_err(BACKENDS_MAP, "update"))
    }

    fn delete_backend(&mut self, id: BackendId) -> Result<()> {
        ignore_missing(self.backends.remove(&id)).map_err(map_err(BACKENDS_MAP, "delete"))
    }

    fn maglev_tables(&self) -> Result<Vec<(Service4Key, MaglevTable)>> {
        self.maglev
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAGLEV_MAP, "iterate"))
    }

    fn put_maglev(&mut self, key: &Service4Key, table: &MaglevTable) -> Result<()> {
        self.maglev
            .insert(key, table, 0)
            .map_err(map_err(MAGLEV_MAP, "update"))
    }

    fn delete_maglev(&mut self, key: &Service4Key) -> Result<()> {
        ignore_missing(self.maglev.remove(key)).map_err(map_err(MAGLEV_MAP, "delete"))
    }

    fn affinities(&self) -> Result<Vec<(Affinity4Key, Affinity4Value)>> {
        self.affinity
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(AFFINITY_MAP, "iterate"))
    }

    fn delete_affinity(&mut self, key: &Affinity4Key) -> Result<()> {
        ignore_missing(self.affinity.remove(key)).map_err(map_err(AFFINITY_MAP, "delete"))
    }
}
