//! The reconciler: the only writer of the load-balancer maps.
//!
//! Each pass diffs the desired layout against what the maps hold and writes
//! only the difference, in an order that keeps every intermediate state
//! consistent for the datapath:
//!
//! 1. new or changed backends (nothing points at them yet);
//! 2. new or changed backend slots and Maglev tables (not reachable until
//!    the master count or flag says so);
//! 3. master entries (a frontend appears, or its count changes);
//! 4. stale master entries (a frontend disappears as one write);
//! 5. stale slots and Maglev tables (no master points at them any more);
//! 6. stale backends (no slot names them any more);
//! 7. session-affinity entries whose backend left their frontend (the
//!    datapath trusts a sticky backend it finds, so it must still be valid).
//!
//! A failed pass leaves the maps in one of those consistent states and is
//! simply run again: every write is idempotent.
//!
//! What the maps hold is read back from the kernel on the first pass, after
//! a failed one, and every [`FULL_READ_EVERY`] passes; in between, a pass
//! diffs against what the last complete pass wrote. Reading every entry
//! back costs two syscalls per entry — half a second at 30k Services — and
//! would make a one-endpoint change cost as much as programming everything.
//! The periodic read still prunes what someone else wrote into the maps.

mod incremental;
pub mod layout;
pub mod maglev;
pub mod masq;
pub mod policy;

use std::collections::BTreeMap;

use weir_common::lb::SVC_FLAG_AFFINITY;
use weir_common::{Backend4, Service4Key};

use crate::desired::{Changes, DesiredState};
use crate::maps::{self, LbMaps};

pub use layout::Layout;

/// What one reconcile pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Frontends now programmed.
    pub frontends: usize,
    /// Backends now programmed.
    pub backends: usize,
    /// Entries now in the service map (masters and slots).
    pub service_entries: usize,
    /// Maglev tables now in their map.
    pub maglev_tables: usize,
    /// Entries inserted or replaced.
    pub updated: usize,
    /// Entries deleted.
    pub deleted: usize,
    /// Backends that left the maps: connectionless flows still pinned to
    /// them (UDP in the NAT table) should be forgotten, as kube-proxy clears
    /// their conntrack entries.
    pub removed_backends: Vec<Backend4>,
}

/// Passes between two reads of the maps' full contents.
pub const FULL_READ_EVERY: u32 = 100;

/// The load-balancer maps' contents, as read or as last written.
#[derive(Debug, Default)]
struct Contents {
    services: BTreeMap<Service4Key, weir_common::Service4Value>,
    backends: BTreeMap<weir_common::BackendId, Backend4>,
    maglev: BTreeMap<Service4Key, weir_common::lb::MaglevTable>,
}

/// What the last complete pass wrote, with what an incremental pass needs
/// to change it without looking at the rest.
#[derive(Debug)]
struct Written {
    contents: Contents,
    /// The backends' ids by address.
    ids: layout::Ids,
    /// How many slots name each backend id: at zero it leaves the map.
    refs: std::collections::HashMap<weir_common::BackendId, u32>,
}

impl Written {
    fn new(contents: Contents) -> Self {
        let ids = layout::Ids::of(&contents.backends);
        let mut refs = std::collections::HashMap::new();
        for value in contents
            .services
            .iter()
            .filter(|(k, _)| k.backend_slot != 0)
            .map(|(_, v)| v)
        {
            *refs.entry(value.backend_id).or_default() += 1;
        }
        Self { contents, ids, refs }
    }
}

/// Owns the maps and brings them to the desired state.
pub struct Reconciler<M> {
    maps: M,
    /// What the last complete pass left in the maps; `None`: read them.
    written: Option<Written>,
    /// Passes since the maps were last read in full.
    passes_since_read: u32,
}

impl<M: LbMaps> Reconciler<M> {
    /// A reconciler over `maps`. Nothing is written until [`Self::reconcile`].
    pub fn new(maps: M) -> Self {
        Self {
            maps,
            written: None,
            passes_since_read: 0,
        }
    }

    /// The maps, for inspection.
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// The maps, to arrange a test.
    #[cfg(test)]
    pub(crate) fn maps_mut(&mut self) -> &mut M {
        // Whatever the test changes, the next pass must see.
        self.written = None;
        &mut self.maps
    }

    /// What the written state says the maps hold, if it is to be trusted
    /// for this pass; otherwise `None`, and the next read is the kernel's.
    fn trusted(&mut self) -> Option<Written> {
        // Taken: a pass that fails part-way leaves `written` empty, so the
        // next one reads what actually got into the maps.
        let written = self.written.take()?;
        if self.passes_since_read + 1 < FULL_READ_EVERY {
            self.passes_since_read += 1;
            Some(written)
        } else {
            None
        }
    }

    /// What the maps hold, read from the kernel.
    fn read(&mut self) -> maps::Result<Contents> {
        self.passes_since_read = 0;
        Ok(Contents {
            services: self.maps.services()?.into_iter().collect(),
            backends: self.maps.backends()?.into_iter().collect(),
            maglev: self.maps.maglev_tables()?.into_iter().collect(),
        })
    }

    /// Brings the maps to `desired`, of which `changes` says what changed
    /// since the last call: only the frontends it names are looked at,
    /// unless the pass must look at everything (the first, one after a
    /// failure, every [`FULL_READ_EVERY`]th, or `changes.full`).
    pub fn reconcile_changes(&mut self, desired: &DesiredState, changes: &Changes) -> maps::Result<Summary> {
        match self.trusted() {
            Some(written) if !changes.full => self.reconcile_touched(written, desired, changes),
            Some(written) => self.reconcile_from(written.contents, desired),
            None => {
                let current = self.read()?;
                self.reconcile_from(current, desired)
            }
        }
    }

    /// Brings the maps to `desired`. Entries the maps hold but `desired` does
    /// not are pruned, so call this only with a complete desired state.
    pub fn reconcile(&mut self, desired: &DesiredState) -> maps::Result<Summary> {
        let current = match self.trusted() {
            Some(written) => written.contents,
            None => self.read()?,
        };
        self.reconcile_from(current, desired)
    }

    /// A full pass: every entry of `desired` against `current`.
    fn reconcile_from(&mut self, current: Contents, desired: &DesiredState) -> maps::Result<Summary> {
        let Contents {
            services: current_services,
            backends: current_backends,
            maglev: current_maglev,
        } = current;
        let want = layout::layout(desired, &current_backends);
        let mut summary = Summary {
            frontends: want.services.keys().filter(|k| k.backend_slot == 0).count(),
            backends: want.backends.len(),
            ..Summary::default()
        };

        for (id, value) in &want.backends {
            if current_backends.get(id) != Some(value) {
                self.maps.put_backend(*id, value)?;
                summary.updated += 1;
            }
        }
        for (key, table) in &want.maglev {
            if current_maglev.get(key) != Some(table) {
                self.maps.put_maglev(key, table)?;
                summary.updated += 1;
            }
        }
        // Slots before masters: a master count never points at an unwritten slot.
        for master in [false, true] {
            for (key, value) in want
                .services
                .iter()
                .filter(|(k, _)| (k.backend_slot == 0) == master)
            {
                if current_services.get(key) != Some(value) {
                    self.maps.put_service(key, value)?;
                    summary.updated += 1;
                }
            }
        }
        // Masters before slots: a frontend disappears in one write.
        for master in [true, false] {
            for key in current_services
                .keys()
                .filter(|k| (k.backend_slot == 0) == master)
            {
                if !want.services.contains_key(key) {
                    self.maps.delete_service(key)?;
                    summary.deleted += 1;
                }
            }
        }
        for key in current_maglev.keys() {
            if !want.maglev.contains_key(key) {
                self.maps.delete_maglev(key)?;
                summary.deleted += 1;
            }
        }
        for (id, backend) in &current_backends {
            if !want.backends.contains_key(id) {
                self.maps.delete_backend(*id)?;
                summary.deleted += 1;
                summary.removed_backends.push(*backend);
            }
        }
        summary.deleted += self.prune_affinity(&want.services)?;
        summary.service_entries = want.services.len();
        summary.maglev_tables = want.maglev.len();
        self.written = Some(Written::new(Contents {
            services: want.services,
            backends: want.backends,
            maglev: want.maglev,
        }));
        Ok(summary)
    }

    /// Deletes affinity entries that name a frontend without affinity or a
    /// backend no slot of that frontend holds.
    fn prune_affinity(
        &mut self,
        services: &BTreeMap<Service4Key, weir_common::Service4Value>,
    ) -> maps::Result<usize> {
        let valid: std::collections::BTreeSet<(u32, u16, u8, u32)> = services
            .iter()
            .filter(|(k, _)| k.backend_slot != 0)
            .filter(|(k, _)| {
                let master = Service4Key {
                    backend_slot: 0,
                    ..**k
                };
                services
                    .get(&master)
                    .is_some_and(|m| m.flags & SVC_FLAG_AFFINITY != 0)
            })
            .map(|(k, v)| (k.address, k.port, k.proto, v.backend_id))
            .collect();
        let mut deleted = 0;
        for (key, value) in self.maps.affinities()? {
            if !valid.contains(&(key.address, key.port, key.proto, value.backend_id)) {
                self.maps.delete_affinity(&key)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
pub(crate) mod tests;
