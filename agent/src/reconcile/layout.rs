//! How desired state is laid out in the maps: byte orders, slots, ids.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use weir_common::lb::{
    BACKEND_LOCAL, MAGLEV_MAX_TABLE_SIZE, MaglevTable, SVC_FLAG_AFFINITY, SVC_FLAG_EXTERNAL, SVC_FLAG_MAGLEV,
};

use super::maglev;
use weir_common::{Backend4, BackendId, Service4Key, Service4Value};

use crate::desired::{DesiredState, L4Addr, Protocol};

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

/// Lays out `desired`, keeping the ids of backends already in the map
/// (`current_backends`) so live entries are not rewritten, and giving new
/// backends the lowest free ids.
#[must_use]
pub fn layout(desired: &DesiredState, current_backends: &BTreeMap<BackendId, Backend4>) -> Layout {
    let mut ids: BTreeMap<L4Addr, BackendId> = current_backends
        .iter()
        .filter_map(|(id, value)| Some((backend_addr(value)?, *id)))
        .collect();
    let mut used: std::collections::BTreeSet<BackendId> = current_backends.keys().copied().collect();
    let mut next_free = 1;
    let mut out = Layout::default();

    for (frontend, state) in &desired.frontends {
        // The slot count is a u16; a frontend with more backends than that
        // keeps the first 65535 (sorted), which no real Service reaches.
        let backends = &state.backends[..state.backends.len().min(usize::from(u16::MAX))];
        for (slot, backend) in (1u16..).zip(backends) {
            let id = *ids.entry(*backend).or_insert_with(|| {
                while used.contains(&next_free) {
                    next_free += 1;
                }
                used.insert(next_free);
                next_free
            });
            out.backends.insert(
                id,
                backend_value(backend, desired.local_backends.contains(&backend.ip)),
            );
            let slot_value = Service4Value {
                backend_id: id,
                count: 0,
                flags: 0,
            };
            out.services.insert(service_key(frontend, slot), slot_value);
        }
        #[expect(clippy::cast_possible_truncation, reason = "capped at u16::MAX above")]
        let master = Service4Value {
            // With affinity, the master's backend_id carries the timeout.
            backend_id: state.affinity_timeout.unwrap_or(0),
            count: backends.len() as u16,
            flags: master_flags(state),
        };
        out.services.insert(service_key(frontend, 0), master);
        if let Some(size) = state.maglev
            && !backends.is_empty()
        {
            let ids: Vec<BackendId> = backends.iter().map(|b| ids[b]).collect();
            out.maglev
                .insert(service_key(frontend, 0), maglev_table(backends, &ids, size));
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
fn master_flags(state: &crate::desired::FrontendState) -> u16 {
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
