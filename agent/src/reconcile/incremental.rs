//! An incremental pass: only the frontends a change touched, against what
//! the last pass wrote. One endpoint change then costs a handful of map
//! writes whatever the number of Services.
//!
//! The writes keep the same order as a full pass (see the module above):
//! backends, Maglev tables, slots, masters, then the deletions in reverse.

use std::collections::BTreeMap;

use weir_common::lb::SVC_FLAG_AFFINITY;
use weir_common::{Backend4, BackendId, Service4Value};

use super::layout::{self, FrontendLayout, backend_value, service_key, slotted};
use super::{Reconciler, Summary, Written};
use crate::desired::{Changes, DesiredState, L4Addr};
use crate::maps::{self, LbMaps};

/// One touched frontend: what it held, and what it is to hold.
struct Touched {
    frontend: L4Addr,
    old_master: Option<Service4Value>,
    old_ids: Vec<BackendId>,
    new: Option<FrontendLayout>,
}

impl<M: LbMaps> Reconciler<M> {
    /// Brings the frontends `changes` names, and the backends at the
    /// addresses whose locality changed, to `desired`.
    pub(super) fn reconcile_touched(
        &mut self,
        mut w: Written,
        desired: &DesiredState,
        changes: &Changes,
    ) -> maps::Result<Summary> {
        let mut summary = Summary::default();
        let (touched, backends) = plan(&mut w, desired, changes);
        self.write(&mut w, &touched, &backends, &mut summary)?;
        self.delete(&mut w, &touched, &mut summary)?;
        let affinity = |m: Option<&Service4Value>| m.is_some_and(|m| m.flags & SVC_FLAG_AFFINITY != 0);
        if touched
            .iter()
            .any(|t| affinity(t.old_master.as_ref()) || affinity(t.new.as_ref().map(|n| &n.master)))
        {
            summary.deleted += self.prune_affinity(&w.contents.services)?;
        }
        summary.frontends = desired.frontends.len();
        summary.backends = w.contents.backends.len();
        summary.service_entries = w.contents.services.len();
        summary.maglev_tables = w.contents.maglev.len();
        self.written = Some(w);
        Ok(summary)
    }

    /// New and changed entries: backends, Maglev tables, slots, masters.
    fn write(
        &mut self,
        w: &mut Written,
        touched: &[Touched],
        backends: &BTreeMap<BackendId, Backend4>,
        summary: &mut Summary,
    ) -> maps::Result<()> {
        for (id, value) in backends {
            if w.contents.backends.get(id) != Some(value) {
                self.maps.put_backend(*id, value)?;
                w.contents.backends.insert(*id, *value);
                summary.updated += 1;
            }
        }
        for t in touched {
            let key = service_key(&t.frontend, 0);
            if let Some(table) = t.new.as_ref().and_then(|n| n.maglev.as_ref())
                && w.contents.maglev.get(&key) != Some(table)
            {
                self.maps.put_maglev(&key, table)?;
                w.contents.maglev.insert(key, *table);
                summary.updated += 1;
            }
        }
        // Slots before masters: a master count never points at an unwritten slot.
        for t in touched {
            let Some(new) = &t.new else { continue };
            for (slot, value) in (1u16..).zip(&new.slots) {
                let key = service_key(&t.frontend, slot);
                if w.contents.services.get(&key) != Some(value) {
                    self.maps.put_service(&key, value)?;
                    w.contents.services.insert(key, *value);
                    summary.updated += 1;
                }
            }
        }
        for t in touched {
            let Some(new) = &t.new else { continue };
            if t.old_master != Some(new.master) {
                let key = service_key(&t.frontend, 0);
                self.maps.put_service(&key, &new.master)?;
                w.contents.services.insert(key, new.master);
                summary.updated += 1;
            }
        }
        Ok(())
    }

    /// Entries no longer wanted: masters, slots, Maglev tables, backends.
    fn delete(&mut self, w: &mut Written, touched: &[Touched], summary: &mut Summary) -> maps::Result<()> {
        // Masters before slots: a frontend disappears in one write.
        for t in touched
            .iter()
            .filter(|t| t.new.is_none() && t.old_master.is_some())
        {
            let key = service_key(&t.frontend, 0);
            self.maps.delete_service(&key)?;
            w.contents.services.remove(&key);
            summary.deleted += 1;
        }
        for t in touched {
            let kept = t.new.as_ref().map_or(0, |n| n.slots.len());
            for slot in (kept + 1)..=t.old_ids.len() {
                let key = service_key(&t.frontend, u16::try_from(slot).unwrap_or(u16::MAX));
                self.maps.delete_service(&key)?;
                w.contents.services.remove(&key);
                summary.deleted += 1;
            }
            let key = service_key(&t.frontend, 0);
            if t.new.as_ref().is_none_or(|n| n.maglev.is_none()) && w.contents.maglev.contains_key(&key) {
                self.maps.delete_maglev(&key)?;
                w.contents.maglev.remove(&key);
                summary.deleted += 1;
            }
        }
        // Backends no slot names any more.
        for id in touched.iter().flat_map(|t| &t.old_ids) {
            let Some(refs) = w.refs.get_mut(id) else { continue };
            *refs -= 1;
            if *refs > 0 {
                continue;
            }
            w.refs.remove(id);
            if let Some(backend) = w.contents.backends.get(id).copied() {
                self.maps.delete_backend(*id)?;
                w.contents.backends.remove(id);
                if let Some(addr) = layout::backend_addr(&backend) {
                    w.ids.release(&addr);
                }
                summary.deleted += 1;
                summary.removed_backends.push(backend);
            }
        }
        Ok(())
    }
}

/// The touched frontends' old and new entries, and the backend values
/// they and the addresses whose locality changed need. New backends get
/// their ids (and every slot its reference) here, before anything is
/// written or released.
fn plan(
    w: &mut Written,
    desired: &DesiredState,
    changes: &Changes,
) -> (Vec<Touched>, BTreeMap<BackendId, Backend4>) {
    let mut touched = Vec::with_capacity(changes.frontends.len());
    let mut backends = BTreeMap::new();
    for frontend in &changes.frontends {
        let old_master = w.contents.services.get(&service_key(frontend, 0)).copied();
        let old_ids = (1..=old_master.map_or(0, |m| m.count))
            .filter_map(|slot| w.contents.services.get(&service_key(frontend, slot)))
            .map(|v| v.backend_id)
            .collect();
        let new = desired.frontends.get(frontend).map(|state| {
            let entries = layout::frontend(state, &mut w.ids);
            for (backend, slot) in slotted(state).iter().zip(&entries.slots) {
                let local = desired.local_backends.contains(&backend.ip);
                backends.insert(slot.backend_id, backend_value(backend, local));
                *w.refs.entry(slot.backend_id).or_default() += 1;
            }
            entries
        });
        touched.push(Touched {
            frontend: *frontend,
            old_master,
            old_ids,
            new,
        });
    }
    for ip in &changes.local {
        let local = desired.local_backends.contains(ip);
        for (backend, id) in w.ids.at(*ip) {
            backends.insert(*id, backend_value(backend, local));
        }
    }
    (touched, backends)
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
