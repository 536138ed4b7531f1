//! How desired state is laid out in the maps: byte orders, slots, ids.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weir_common::lb::{
    BACKEND_LOCAL, MAGLEV_MAX_TABLE_SIZE, MaglevTable, SVC_FLAG_AFFINITY, SVC_FLAG_EXTERNAL, SVC_FLAG_MAGLEV,
};

use super::maglev;
use weir_common::{Backend4, BackendId, Service4Key, Service4Value};

use crate::desired::{DesiredState, FrontendState, L4Addr, Protocol};

/// Map entries that express a [`DesiredState`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Service map: master entries (slot 0) and backend slots.
    pub services: BTreeMap<Service4Key, Service4Value>,
    /// Backend map.
    pub backends: BTreeMap<BackendId, Backend4>,
    /// Maglev tables of the frontends that use Maglev and have backends.
    pub maglev: BTreeMap<Service4Key, MaglevTable>,
}

/// The service map key of a frontend's slot. Address and port go into the
/// map in network byte order, as the kernel hands them to the program.
#[must_use]
pub fn service_key(frontend: &L4Addr, backend_slot: u16) -> Service4Key {
    Service4Key {
        address: u32::from_ne_bytes(frontend.ip.octets()),
        port: frontend.port.to_be(),
        backend_slot,
        proto: frontend.proto.number(),
        pad: [0; 3],
    }
}

/// The backend map value of a backend; `local` if it runs on this node.
#[must_use]
pub fn backend_value(backend: &L4Addr, local: bool) -> Backend4 {
    Backend4 {
        address: u32::from_ne_bytes(backend.ip.octets()),
        port: backend.port.to_be(),
        proto: backend.proto.number(),
        flags: if local { BACKEND_LOCAL } else { 0 },
    }
}

/// The backend a backend map value describes, if its protocol is known.
#[must_use]
pub fn backend_addr(value: &Backend4) -> Option<L4Addr> {
    Some(L4Addr {
        ip: Ipv4Addr::from(value.address.to_ne_bytes()),
        port: u16::from_be(value.port),
        proto: Protocol::from_number(value.proto)?,
    })
}

/// Backend ids by address: ids of backends already in the map are kept so
/// live entries are not rewritten, and new backends get the lowest free id.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    by_addr: BTreeMap<L4Addr, BackendId>,
    /// Ids below `next` that nothing holds.
    free: BTreeSet<BackendId>,
    next: BackendId,
}

impl Ids {
    /// The ids `backends` hold.
    #[must_use]
    pub fn of(backends: &BTreeMap<BackendId, Backend4>) -> Self {
        let by_addr: BTreeMap<L4Addr, BackendId> = backends
            .iter()
            .filter_map(|(id, value)| Some((backend_addr(value)?, *id)))
            .collect();
        let next = backends.keys().next_back().map_or(1, |max| max + 1);
        let free = (1..next).filter(|id| !backends.contains_key(id)).collect();
        Self { by_addr, free, next }
    }

    /// The id of `backend`, given one if it has none.
    pub fn id(&mut self, backend: &L4Addr) -> BackendId {
        if let Some(id) = self.by_addr.get(backend) {
            return *id;
        }
        let id = self.free.pop_first().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.by_addr.insert(*backend, id);
        id
    }

    /// `backend` left the map: its id is free again.
    pub fn release(&mut self, backend: &L4Addr) {
        if let Some(id) = self.by_addr.remove(backend) {
            self.free.insert(id);
        }
    }

    /// The backends at address `ip`, with their ids.
    pub fn at(&self, ip: Ipv4Addr) -> impl Iterator<Item = (&L4Addr, &BackendId)> {
        let first = L4Addr {
            ip,
            port: 0,
            proto: Protocol::Tcp,
        };
        let last = L4Addr {
            ip,
            port: u16::MAX,
            proto: Protocol::Udp,
        };
        self.by_addr.range(first..=last)
    }
}

/// One frontend's entries: its master, its slots (slot 1 first) and its
/// Maglev table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendLayout {
    /// The master entry (slot 0).
    pub master: Service4Value,
    /// Backend slots 1..=count.
    pub slots: Vec<Service4Value>,
    /// The Maglev table, for a Maglev frontend with backends.
    pub maglev: Option<MaglevTable>,
}

/// The backends a frontend's slots name: a frontend with more than 65535
/// (the slot count is a u16) keeps the first 65535, sorted, which no real
/// Service reaches.
#[must_use]
pub fn slotted(state: &FrontendState) -> &[L4Addr] {
    &state.backends[..state.backends.len().min(usize::from(u16::MAX))]
}

/// Lays out one frontend, giving its backends ids from `ids`.
#[must_use]
pub fn frontend(state: &FrontendState, ids: &mut Ids) -> FrontendLayout {
    let backends = slotted(state);
    let backend_ids: Vec<BackendId> = backends.iter().map(|b| ids.id(b)).collect();
    let slots = backend_ids
        .iter()
        .map(|id| Service4Value {
            backend_id: *id,
            count: 0,
            flags: 0,
        })
        .collect();
    #[expect(clippy::cast_possible_truncation, reason = "capped at u16::MAX by `slotted`")]
    let master = Service4Value {
        // With affinity, the master's backend_id carries the timeout.
        backend_id: state.affinity_timeout.unwrap_or(0),
        count: backends.len() as u16,
        flags: master_flags(state),
    };
    let maglev = state
        .maglev
        .filter(|_| !backends.is_empty())
        .map(|size| maglev_table(backends, &backend_ids, size));
    FrontendLayout {
        master,
        slots,
        maglev,
    }
}

/// Lays out `desired`, keeping the ids of backends already in the map
/// (`current_backends`) so live entries are not rewritten, and giving new
/// backends the lowest free ids.
#[must_use]
pub fn layout(desired: &DesiredState, current_backends: &BTreeMap<BackendId, Backend4>) -> Layout {
    let mut ids = Ids::of(current_backends);
    let mut out = Layout::default();
    for (addr, state) in &desired.frontends {
        let entries = frontend(state, &mut ids);
        for (backend, slot) in slotted(state).iter().zip(&entries.slots) {
            let local = desired.local_backends.contains(&backend.ip);
            out.backends
                .insert(slot.backend_id, backend_value(backend, local));
        }
        for (slot, value) in (1u16..).zip(entries.slots) {
            out.services.insert(service_key(addr, slot), value);
        }
        out.services.insert(service_key(addr, 0), entries.master);
        if let Some(table) = entries.maglev {
            out.maglev.insert(service_key(addr, 0), table);
        }
    }
    out
}

/// The Maglev table of a frontend: backends named by their address so every
/// node computes the same table.
fn maglev_table(backends: &[L4Addr], ids: &[BackendId], size: u32) -> MaglevTable {
    let names: Vec<String> = backends.iter().map(ToString::to_string).collect();
    let mut table = MaglevTable {
        size,
        pad: 0,
        backends: [0; MAGLEV_MAX_TABLE_SIZE as usize],
    };
    for (slot, index) in table.backends.iter_mut().zip(maglev::table(&names, size)) {
        *slot = ids[index];
    }
    table
}

/// Flags of a frontend's master entry.
fn master_flags(state: &FrontendState) -> u16 {
    let mut flags = 0;
    if state.affinity_timeout.is_some() {
        flags |= SVC_FLAG_AFFINITY;
    }
    if state.external {
        flags |= SVC_FLAG_EXTERNAL;
    }
    if state.maglev.is_some() {
        flags |= SVC_FLAG_MAGLEV;
    }
    flags
}
