//! Which backend the datapath would choose itself, where the choice is not
//! random: the client's session-affinity entry (`sessionAffinity:
//! ClientIP`, read from the live affinity map with its timeout), or the
//! frontend's Maglev table indexed by the flow hash (per-packet path only;
//! the hash covers the client's source port, so it needs `--source-port`).
//! The order and the keys are those of `weir_ebpf::lb::select_backend`; the
//! hash is the datapath's own function (`weir_common::lb::flow_hash`).

use std::net::Ipv4Addr;

use serde::Serialize;
use weir_agent::maps::MapDump;
use weir_agent::maps::dump::Frontend;
use weir_agent::maps::policy_eval::Flow;
use weir_common::lb::{AFFINITY_CLIENT_IP_TAG, Affinity4Key, Affinity4Value, MaglevTable, flow_hash};
use weir_common::{BackendId, Service4Key};

/// What the choice reads beyond the dump: the maps the datapath writes or
/// keeps whole (affinity, Maglev tables), the clock, the source's netns.
pub trait SelectionState {
    /// The affinity entry under `key`, if any.
    fn affinity(&self, key: &Affinity4Key) -> Option<Affinity4Value>;
    /// The Maglev table of the frontend with master key `master`, if written.
    fn maglev(&self, master: &Service4Key) -> Option<MaglevTable>;
    /// Now, on the clock the datapath stamps affinity entries with.
    fn now_ns(&self) -> u64;
    /// The network namespace cookie of the source (the socket layer's
    /// affinity client), if its namespace is found on this node.
    fn netns_cookie(&self) -> Option<u64>;
}

/// How the backend is chosen, and which one when that is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pick {
    /// `affinity` (the client's remembered backend), `maglev` (by the flow
    /// hash) or `random`.
    pub by: String,
    /// `ip:port` of the backend the datapath will use; `None` when it will
    /// choose at random (or the Maglev input is not known).
    pub backend: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// The choice for a new connection `flow` to frontend `frontend`.
/// `socket_path`: translated at `connect()` (affinity client: the netns
/// cookie; no Maglev) rather than per packet (client: its address).
pub fn pick(
    state: &dyn SelectionState,
    lb: &MapDump,
    frontend: &Frontend,
    (flow, source_port): (&Flow, Option<u16>),
    socket_path: bool,
) -> Pick {
    let has = |flag: &str| frontend.flags.iter().any(|f| f == flag);
    let mut notes = Vec::new();
    // The datapath's order: a live affinity entry first, then Maglev.
    if has("affinity") {
        match affinity(state, lb, frontend, flow, socket_path) {
            Ok(pick) => return pick,
            Err(note) => notes.push(note),
        }
    }
    if has("maglev") && !socket_path {
        match maglev(state, lb, flow, source_port) {
            Ok(pick) => return pick,
            Err(note) => notes.push(note),
        }
    }
    let count = frontend.count.unwrap_or(0);
    let mut reason = format!("uniformly at random among {count} backend slot(s)");
    for note in notes {
        reason.push_str("; ");
        reason.push_str(&note);
    }
    Pick {
        by: "random".to_owned(),
        backend: None,
        reason,
    }
}

/// The client's remembered backend, or why there is none.
fn affinity(
    state: &dyn SelectionState,
    lb: &MapDump,
    frontend: &Frontend,
    flow: &Flow,
    socket_path: bool,
) -> Result<Pick, String> {
    let timeout = frontend.affinity_timeout.unwrap_or(0);
    let client = if socket_path {
        state.netns_cookie()
    } else {
        Some(AFFINITY_CLIENT_IP_TAG | u64::from(stored(flow.src)))
    };
    let client = client.ok_or_else(|| {
        "the source's network namespace is not on this node: its affinity entry cannot be read".to_owned()
    })?;
    let key = Affinity4Key {
        client,
        address: stored(flow.dst),
        port: flow.port.to_be(),
        proto: flow.proto,
        pad: 0,
    };
    let entry = state.affinity(&key).ok_or_else(|| {
        format!("no affinity entry for this client yet; the first backend is remembered for {timeout} s")
    })?;
    let idle = state.now_ns().saturating_sub(entry.last_used_ns) / 1_000_000_000;
    let backend = backend_at(lb, entry.backend_id).ok_or_else(|| {
        format!(
            "the client's affinity entry names backend {} that is gone",
            entry.backend_id
        )
    })?;
    if idle > u64::from(timeout) {
        return Err(format!(
            "the client's affinity entry expired ({idle} s idle, timeout {timeout} s)"
        ));
    }
    Ok(Pick {
        by: "affinity".to_owned(),
        backend: Some(backend),
        reason: format!("the client's backend, last used {idle} s ago (timeout {timeout} s)"),
    })
}

/// The backend the frontend's Maglev table holds for the flow's hash, or
/// why it cannot be named.
fn maglev(
    state: &dyn SelectionState,
    lb: &MapDump,
    flow: &Flow,
    source_port: Option<u16>,
) -> Result<Pick, String> {
    let Some(sport) = source_port else {
        return Ok(Pick {
            by: "maglev".to_owned(),
            backend: None,
            reason: "by a hash of the connection's tuple, which includes the client's source port: \
                     give --source-port to name the backend"
                .to_owned(),
        });
    };
    let master = Service4Key {
        address: stored(flow.dst),
        port: flow.port.to_be(),
        backend_slot: 0,
        proto: flow.proto,
        pad: [0; 3],
    };
    let table = state
        .maglev(&master)
        .filter(|t| t.size > 0)
        .ok_or_else(|| "no Maglev table is written for the frontend yet".to_owned())?;
    // The first packet's tuple as the uplink program sees it.
    let hash = flow_hash(
        stored(flow.src),
        master.address,
        sport.to_be(),
        master.port,
        flow.proto,
    );
    let index = hash % table.size;
    let id = table.backends.get(index as usize).copied().unwrap_or_default();
    let backend = backend_at(lb, id)
        .ok_or_else(|| format!("the Maglev entry {index} names backend {id} that is gone"))?;
    Ok(Pick {
        by: "maglev".to_owned(),
        backend: Some(backend),
        reason: format!(
            "Maglev table entry {index} of {} for source port {sport}",
            table.size
        ),
    })
}

/// `ip:port` of backend `id`.
fn backend_at(lb: &MapDump, id: BackendId) -> Option<String> {
    lb.backends
        .iter()
        .find(|b| b.id == id)
        .map(|b| format!("{}:{}", b.address, b.port))
}

/// An address as the maps store it (network byte order in a native u32).
fn stored(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}
