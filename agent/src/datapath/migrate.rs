//! Pinned maps an earlier agent left in an older layout or another capacity,
//! carried over into the maps of the object being loaded.
//!
//! A map's pin is its identity across restarts: the loader reuses a pin of
//! the same name, layout and capacity, and the datapath carries on with its
//! entries. Two things break that reuse, and neither may cost live state —
//! the NAT table is the node's connection tracking, and dropping it breaks
//! every NodePort and masqueraded flow in the middle of an upgrade:
//!
//! - a **layout change** renames the map (`weir_nat4_v1` → `weir_nat4_v2`):
//!   the old pin is read, each entry converted ([`LAYOUTS`]), written into
//!   the new map, and only then is the old pin removed;
//! - a **capacity change** (`--map-size-*`) keeps the name: the old pin is
//!   moved aside (`{name}_resizing`) before the load so the loader creates a
//!   map of the new size, its entries are copied over, and the aside pin is
//!   removed. Entries that do not fit stop the start with an error, never a
//!   silent loss; the old pin is then put back.
//!
//! Copies run twice: once after the object is loaded and before its
//! programs take over the hooks (so they find every flow at once), and once
//! more after (`BPF_NOEXIST`, so nothing newer is overwritten), picking up
//! the flows the old programs created in between. An interrupted migration
//! leaves the source pin in place and the next start finishes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aya::Pod;
use aya::maps::{HashMap, Map, MapData, MapError, MapInfo};
use tracing::info;
use weir_common::lb::{
    AFFINITY_MAP, Affinity4Key, Affinity4Value, BACKENDS_MAP, SERVICES_MAP, Service4Key, Service4Value,
};
use weir_common::nat::{NAT_MAP, NAT_MAP_V1};
use weir_common::{Backend4, BackendId, Nat4Entry, Nat4Key, NatRewrite};

use super::MapSizes;

/// Suffix of a pin moved aside for a capacity change (bpffs refuses names
/// with a dot: they are reserved for its own files).
const RESIZING: &str = "_resizing";

/// `BPF_NOEXIST`: insert only if the key is absent.
const NOEXIST: u64 = 1;

/// Why a migration failed. The source pin is always left in place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pin could not be opened, moved or removed.
    #[error("cannot {op} the pinned map {pin}")]
    Pin {
        /// The pin.
        pin: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// Why.
        #[source]
        source: Box<MapError>,
    },
    /// A pin could not be removed.
    #[error("cannot remove the pin {pin}")]
    Remove {
        /// The pin.
        pin: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing entries failed.
    #[error("cannot {op} entries of {map} while migrating {from}")]
    Copy {
        /// The target map.
        map: &'static str,
        /// The source pin.
        from: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// Why.
        #[source]
        source: Box<MapError>,
    },
    /// The target map is too small for the entries.
    #[error(
        "{map} cannot take the {entries} entries of {from}: it holds {held} of {capacity}; raise its --map-size-* and restart"
    )]
    DoesNotFit {
        /// The target map.
        map: &'static str,
        /// The source pin.
        from: PathBuf,
        /// Entries to carry over.
        entries: usize,
        /// Entries the target already held.
        held: usize,
        /// The target's capacity.
        capacity: u32,
    },
    /// Entries were written but are not in the target (an LRU map evicted
    /// them for lack of room).
    #[error(
        "{missing} entries of {from} did not survive the copy into {map}; raise its --map-size-* and restart"
    )]
    Lost {
        /// The target map.
        map: &'static str,
        /// The source pin.
        from: PathBuf,
        /// How many.
        missing: usize,
    },
}

/// Result of migrations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What happened to one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Converted from an older layout, pinned as `from`.
    Layout {
        /// The old map's pin name.
        from: &'static str,
    },
    /// Copied into a map of another capacity.
    Resize {
        /// The old capacity.
        from: u32,
        /// The new one.
        to: u32,
    },
}

/// One map carried over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The map now holding the entries.
    pub map: &'static str,
    /// What changed.
    pub change: Change,
    /// Entries carried over.
    pub entries: usize,
}

/// Copies the entries of the pinned map at `from` into the one at `to`.
type CopyFn = fn(map: &'static str, from: &Path, to: &Path) -> Result<usize>;

/// A layout migration: an older map's pin name, the map that replaces it
/// and how its entries are converted.
pub struct LayoutMigration {
    /// Pin name of the old layout.
    pub from: &'static str,
    /// Map of the current object.
    pub to: &'static str,
    copy: CopyFn,
}

/// Every older layout the agent can migrate, oldest first.
pub const LAYOUTS: &[LayoutMigration] = &[LayoutMigration {
    from: NAT_MAP_V1,
    to: NAT_MAP,
    copy: |map, from, to| copy_pinned::<Nat4Key, NatRewrite, Nat4Entry>(map, from, to, nat_v1_to_v2),
}];

/// The v1 → v2 conversion of a NAT entry: the key is unchanged, the rewrite
/// kept, the rest marked unknown ([`Nat4Entry::from_v1`]).
#[must_use]
pub fn nat_v1_to_v2(_key: &Nat4Key, value: NatRewrite) -> Nat4Entry {
    Nat4Entry::from_v1(value)
}

/// The maps whose capacity `sizes` sets, and how to copy each.
fn sized_maps(sizes: &MapSizes) -> [(&'static str, u32, CopyFn); 4] {
    [
        (SERVICES_MAP, sizes.services, |m, f, t| {
            copy_pinned::<Service4Key, Service4Value, Service4Value>(m, f, t, same)
        }),
        (BACKENDS_MAP, sizes.backends, |m, f, t| {
            copy_pinned::<BackendId, Backend4, Backend4>(m, f, t, same)
        }),
        (AFFINITY_MAP, sizes.affinity, |m, f, t| {
            copy_pinned::<Affinity4Key, Affinity4Value, Affinity4Value>(m, f, t, same)
        }),
        (NAT_MAP, sizes.nat, |m, f, t| {
            copy_pinned::<Nat4Key, Nat4Entry, Nat4Entry>(m, f, t, same)
        }),
    ]
}

fn same<K, V>(_key: &K, value: V) -> V {
    value
}

/// One map to carry over.
struct Step {
    map: &'static str,
    change: Change,
    /// The pin entries are read from (the old layout's, or the aside pin).
    source: PathBuf,
    /// The pin of the object's map.
    target: PathBuf,
    /// For a resize this run moved aside: where the old pin came from.
    restore: Option<PathBuf>,
    copy: CopyFn,
    entries: usize,
}

/// The migrations of one start; see the module docs for the order of calls.
#[derive(Default)]
pub struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    /// Looks at the pins in `bpffs` before the object is loaded: finds maps
    /// of an older layout, and moves aside maps whose capacity differs from
    /// `sizes` (the loader would refuse them).
    pub fn prepare(bpffs: &Path, sizes: &MapSizes) -> Result<Self> {
        let mut plan = Plan::default();
        for layout in LAYOUTS {
            let source = bpffs.join(layout.from);
            if source.exists() {
                plan.steps.push(Step {
                    map: layout.to,
                    change: Change::Layout { from: layout.from },
                    source,
                    target: bpffs.join(layout.to),
                    restore: None,
                    copy: layout.copy,
                    entries: 0,
                });
            }
        }
        for (map, capacity, copy) in sized_maps(sizes) {
            let pin = bpffs.join(map);
            let aside = bpffs.join(format!("{map}{RESIZING}"));
            let (from, restore) = if aside.exists() {
                // An earlier start was interrupted after moving it aside.
                (info_of(&aside)?.max_entries(), None)
            } else if pin.exists() {
                let old = info_of(&pin)?.max_entries();
                if old == capacity {
                    continue;
                }
                move_pin(&pin, &aside)?;
                (old, Some(pin.clone()))
            } else {
                continue;
            };
            plan.steps.push(Step {
                map,
                change: Change::Resize { from, to: capacity },
                source: aside,
                target: pin,
                restore,
                copy,
                entries: 0,
            });
        }
        Ok(plan)
    }

    /// Whether there is nothing to migrate.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Copies every source's entries into the loaded object's maps.
    pub fn copy(&mut self) -> Result<()> {
        for step in &mut self.steps {
            step.entries = (step.copy)(step.map, &step.source, &step.target)?;
        }
        Ok(())
    }

    /// Undoes what [`Self::prepare`] moved, after a failed load or copy:
    /// each aside pin goes back to its name (the map the load pinned there
    /// is unpinned). Layout sources were never moved. Best effort: returns
    /// the pins it could not restore, for the log.
    #[must_use]
    pub fn rollback(self) -> Vec<PathBuf> {
        let mut failed = Vec::new();
        for step in self.steps {
            let Some(original) = step.restore else { continue };
            let _ = std::fs::remove_file(&original);
            if move_pin(&step.source, &original).is_err() {
                failed.push(step.source);
            }
        }
        failed
    }

    /// After the new programs took over: copies once more (entries the old
    /// programs created meanwhile), then removes the source pins.
    pub fn finish(self) -> Result<Vec<Migrated>> {
        let mut done = Vec::new();
        for step in self.steps {
            let late = (step.copy)(step.map, &step.source, &step.target)?;
            std::fs::remove_file(&step.source).map_err(|source| Error::Remove {
                pin: step.source.clone(),
                source,
            })?;
            let migrated = Migrated {
                map: step.map,
                change: step.change,
                entries: step.entries.max(late),
            };
            info!(
                map = migrated.map,
                change = ?migrated.change,
                entries = migrated.entries,
                from = %step.source.display(),
                "migrated a pinned map"
            );
            done.push(migrated);
        }
        Ok(done)
    }
}

fn info_of(pin: &Path) -> Result<MapInfo> {
    MapInfo::from_pin(pin).map_err(|source| Error::Pin {
        pin: pin.to_owned(),
        op: "open",
        source: Box::new(source),
    })
}

/// Pins the map at `from` as `to` too, then unpins `from` (bpffs has no
/// rename weir can rely on everywhere; a second pin is one syscall).
fn move_pin(from: &Path, to: &Path) -> Result<()> {
    let pin_err = |op| {
        move |source| Error::Pin {
            pin: from.to_owned(),
            op,
            source: Box::new(source),
        }
    };
    let map = MapData::from_pin(from).map_err(pin_err("open"))?;
    map.pin(to)
        .map_err(|e| MapError::PinError { name: None, error: e })
        .map_err(pin_err("move"))?;
    std::fs::remove_file(from).map_err(|source| Error::Remove {
        pin: from.to_owned(),
        source,
    })
}

/// Copies the entries of the hash map pinned at `from` into the one pinned
/// at `to`, converting each value; keys already in `to` are kept (they are
/// newer). Fails before writing if they cannot all fit, and after writing
/// if any is missing. Returns how many entries `from` held.
fn copy_pinned<K: Pod + Ord, V: Pod, W: Pod>(
    map: &'static str,
    from: &Path,
    to: &Path,
    convert: fn(&K, V) -> W,
) -> Result<usize> {
    let copy_err = |op| {
        move |source| Error::Copy {
            map,
            from: from.to_owned(),
            op,
            source: Box::new(source),
        }
    };
    let source: HashMap<MapData, K, V> = open_hash(from).map_err(copy_err("open"))?;
    let target_data = MapData::from_pin(to).map_err(copy_err("open"))?;
    let capacity = target_data.info().map_err(copy_err("open"))?.max_entries();
    let mut target: HashMap<MapData, K, W> = Map::from_map_data(target_data)
        .and_then(HashMap::try_from)
        .map_err(copy_err("open"))?;

    let entries: Vec<(K, V)> = source
        .iter()
        .collect::<Result<_, _>>()
        .map_err(copy_err("read"))?;
    let held: BTreeSet<K> = target
        .keys()
        .collect::<Result<_, _>>()
        .map_err(copy_err("read"))?;
    let new = entries.iter().filter(|(k, _)| !held.contains(k)).count();
    if held.len() + new > capacity as usize {
        return Err(Error::DoesNotFit {
            map,
            from: from.to_owned(),
            entries: entries.len(),
            held: held.len(),
            capacity,
        });
    }
    for (key, value) in &entries {
        if held.contains(key) {
            continue;
        }
        match target.insert(key, &convert(key, *value), NOEXIST) {
            // Written meanwhile by the datapath: that entry is newer.
            Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other.map_err(copy_err("write"))?,
        }
    }
    let missing = entries
        .iter()
        .filter(|(key, _)| target.get(key, 0).is_err())
        .count();
    if missing > 0 {
        return Err(Error::Lost {
            map,
            from: from.to_owned(),
            missing,
        });
    }
    Ok(entries.len())
}

fn open_hash<K: Pod, V: Pod>(pin: &Path) -> Result<HashMap<MapData, K, V>, MapError> {
    HashMap::try_from(Map::from_map_data(MapData::from_pin(pin)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_common::nat::{NAT_F_MIGRATED, NAT_INGRESS, NAT_ORIGIN_UNKNOWN};

    #[test]
    fn a_v1_nat_entry_keeps_its_rewrite_and_is_marked_migrated() {
        let key = Nat4Key {
            saddr: u32::from_ne_bytes([198, 18, 0, 100]),
            daddr: u32::from_ne_bytes([198, 18, 0, 11]),
            sport: 40_000u16.to_be(),
            dport: 30_080u16.to_be(),
            proto: weir_common::IPPROTO_TCP,
            direction: NAT_INGRESS,
            pad: [0; 2],
        };
        let v1 = NatRewrite {
            saddr: u32::from_ne_bytes([198, 18, 0, 11]),
            daddr: u32::from_ne_bytes([10, 244, 2, 7]),
            sport: 41_000u16.to_be(),
            dport: 8080u16.to_be(),
        };
        let v2 = nat_v1_to_v2(&key, v1);
        assert_eq!(v2.rewrite, v1);
        assert_eq!((v2.origin, v2.flags), (NAT_ORIGIN_UNKNOWN, NAT_F_MIGRATED));
        assert_eq!((v2.created_ns, v2.last_seen_ns), (0, 0));
        assert_eq!(v2.pad, [0; 2]);
    }

    #[test]
    fn the_v2_value_starts_with_the_v1_value() {
        // The rewrite sits where v1 had it: a reader of the first 12 bytes
        // (v1 tooling) sees the same rewrite.
        assert_eq!(core::mem::offset_of!(Nat4Entry, rewrite), 0);
        assert_eq!(size_of::<NatRewrite>(), 12);
        assert_eq!(size_of::<Nat4Entry>(), 32);
    }

    #[test]
    fn every_layout_migration_goes_to_a_newer_version_of_the_same_map() {
        let version = |name: &str| {
            name.rsplit_once("_v")
                .map(|(stem, v)| (stem.to_owned(), v.parse::<u32>().unwrap()))
        };
        for layout in LAYOUTS {
            let (from_stem, from) = version(layout.from).unwrap();
            let (to_stem, to) = version(layout.to).unwrap();
            assert_eq!(from_stem, to_stem);
            assert!(from < to, "{} → {}", layout.from, layout.to);
        }
        assert_eq!((LAYOUTS[0].from, LAYOUTS[0].to), (NAT_MAP_V1, NAT_MAP));
    }

    #[test]
    fn nothing_pinned_is_nothing_to_do() {
        let dir = std::env::temp_dir().join(format!("weir-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = Plan::prepare(&dir, &MapSizes::default()).unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.finish().unwrap(), []);
        std::fs::remove_dir(&dir).unwrap();
    }
}
