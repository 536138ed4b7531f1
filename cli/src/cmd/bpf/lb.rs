//! `weir bpf lb list`: frontends → backends, as the datapath will pick them
//! (the agent's own dump of the pinned maps, with slots resolved to the
//! backends they name).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;
use weir_agent::maps::MapDump;
use weir_agent::maps::dump::{Backend, Frontend};

use super::decode::or_dash;
use crate::Args;
use crate::output::{Render, Table, print};

/// The `bpf lb` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every frontend (VIP:port/proto) with its flags and backends.
    ///
    /// Example:
    ///   weir bpf lb list -o json
    #[command(verbatim_doc_comment)]
    List,
}

/// `weir bpf lb list`.
#[derive(Debug, Serialize)]
pub struct LbList {
    /// Frontends by address, port and protocol.
    pub frontends: Vec<LbFrontend>,
}

/// One frontend.
#[derive(Debug, Serialize)]
pub struct LbFrontend {
    /// Frontend address (ClusterIP, node address of a NodePort, externalIP…).
    pub address: Ipv4Addr,
    /// Frontend port.
    pub port: u16,
    /// `TCP`, `UDP`, `SCTP`, or the protocol number.
    pub protocol: String,
    /// `external` (also served on the uplink: NodePort / externalIP /
    /// LoadBalancer IP), `affinity` (ClientIP session affinity), `maglev`.
    pub flags: Vec<String>,
    /// Backend slots the master entry announces (`null`: slots without a
    /// master entry, a state the agent never leaves behind).
    pub backend_count: Option<u16>,
    /// Session-affinity timeout in seconds (`affinity` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_timeout: Option<u32>,
    /// The backends, in slot order.
    pub backends: Vec<LbBackend>,
}

/// One backend of a frontend.
#[derive(Debug, Serialize)]
pub struct LbBackend {
    /// Slot number, from 1.
    pub slot: u16,
    /// Backend id in the backend map.
    pub id: u32,
    /// Backend address; `null` when the slot names a missing backend.
    pub address: Option<Ipv4Addr>,
    /// Backend port.
    pub port: Option<u16>,
    /// Whether the backend runs on this node.
    pub local: bool,
}

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<()> {
    let Command::List = command;
    let dump = weir_agent::maps::dump_pinned(&args.bpffs, false).map_err(super::open_failure(&args.bpffs))?;
    print(&list(&dump), args.output)
}

/// The frontends of `dump`, slots resolved to backends.
pub fn list(dump: &MapDump) -> LbList {
    let backends: BTreeMap<u32, &Backend> = dump.backends.iter().map(|b| (b.id, b)).collect();
    LbList {
        frontends: dump.frontends.iter().map(|f| frontend(f, &backends)).collect(),
    }
}

fn frontend(f: &Frontend, backends: &BTreeMap<u32, &Backend>) -> LbFrontend {
    LbFrontend {
        address: f.address,
        port: f.port,
        protocol: f.protocol.clone(),
        flags: f.flags.clone(),
        backend_count: f.count,
        affinity_timeout: f.affinity_timeout,
        backends: f
            .slots
            .iter()
            .map(|slot| {
                let backend = backends.get(&slot.backend);
                LbBackend {
                    slot: slot.slot,
                    id: slot.backend,
                    address: backend.map(|b| b.address),
                    port: backend.map(|b| b.port),
                    local: backend.is_some_and(|b| b.flags.iter().any(|f| f == "local")),
                }
            })
            .collect(),
    }
}

impl Render for LbList {
    fn table(&self) -> String {
        let mut table = Table::new(&["FRONTEND", "FLAGS", "BACKENDS", "ID", "BACKEND", "LOCAL"]);
        for f in &self.frontends {
            let count = f
                .backend_count
                .map_or_else(|| "no master".to_owned(), |c| c.to_string());
            let head = vec![
                format!("{}:{}/{}", f.address, f.port, f.protocol),
                or_dash(f.flags.join(",")),
                count,
            ];
            if f.backends.is_empty() {
                let mut row = head.clone();
                row.extend(["-".into(), "(none: refused)".into()]);
                table.row(row);
            }
            for (i, b) in f.backends.iter().enumerate() {
                let mut row = if i == 0 {
                    head.clone()
                } else {
                    vec![String::new(); 3]
                };
                let address = match (b.address, b.port) {
                    (Some(a), Some(p)) => format!("{a}:{p}"),
                    _ => "(missing backend)".to_owned(),
                };
                row.extend([
                    b.id.to_string(),
                    address,
                    if b.local { "yes" } else { "" }.to_owned(),
                ]);
                table.row(row);
            }
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use weir_agent::maps::dump::Slot;

    use super::*;

    #[test]
    fn slots_resolve_to_backends_and_missing_ones_show() {
        let dump = MapDump {
            frontends: vec![Frontend {
                address: Ipv4Addr::new(10, 96, 0, 10),
                port: 80,
                protocol: "TCP".into(),
                count: Some(2),
                flags: vec!["external".into()],
                affinity_timeout: None,
                slots: vec![Slot { slot: 1, backend: 3 }, Slot { slot: 2, backend: 9 }],
                maglev: None,
            }],
            backends: vec![Backend {
                id: 3,
                address: Ipv4Addr::new(10, 244, 1, 3),
                port: 8080,
                protocol: "TCP".into(),
                flags: vec!["local".into()],
            }],
            ..MapDump::default()
        };
        let list = list(&dump);
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json["frontends"][0]["backend_count"], 2);
        assert_eq!(json["frontends"][0]["backends"][0]["address"], "10.244.1.3");
        assert_eq!(json["frontends"][0]["backends"][0]["local"], true);
        assert_eq!(
            json["frontends"][0]["backends"][1]["address"],
            serde_json::Value::Null
        );
        let table = list.table();
        assert!(table.contains("10.96.0.10:80/TCP  external  2"), "{table}");
        assert!(table.contains("(missing backend)"), "{table}");
    }
}
