//! `weir status`: what the agent on this node says about itself — health,
//! node, datapath mode, counts, map fill, last sync and what it skipped.

use std::fmt::Write as _;

use serde::Serialize;
use weir_agent::ops::api::StatusDoc;

use crate::Args;
use crate::output::{self, Render, Table};

/// The agent's `/v1/status`, shown as it is (its field names are the
/// stable interface of `-o json|yaml`).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Status(pub StatusDoc);

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    let doc: StatusDoc = crate::agent::get_json(&args.agent, "/v1/status")?;
    output::print(&Status(doc), args.output)?;
    Ok(crate::exit::OK)
}

/// `entries/capacity (n%)`.
fn fill(entries: u64, capacity: u64) -> String {
    if capacity == 0 {
        return format!("{entries}/0");
    }
    // Two decimals are enough to tell an empty map from a filling one.
    #[expect(clippy::cast_precision_loss, reason = "a percentage for people")]
    let percent = entries as f64 * 100.0 / capacity as f64;
    format!("{entries}/{capacity} ({percent:.1}%)")
}

impl Render for Status {
    fn table(&self) -> String {
        let s = &self.0;
        let or_none = |v: Option<&str>| v.unwrap_or("(unknown)").to_owned();
        let health = match (s.healthy, s.ready) {
            (true, true) => "healthy, ready".to_owned(),
            (healthy, false) => format!(
                "{}, NOT READY: {}",
                if healthy { "healthy" } else { "STALLED" },
                s.not_ready_reason.as_deref().unwrap_or("")
            ),
            (false, true) => "STALLED, ready".to_owned(),
        };
        let addresses: Vec<String> = s.node.addresses.iter().map(ToString::to_string).collect();
        let mode = if s.agent.tc_devices.is_empty() {
            s.agent.datapath.clone()
        } else {
            format!("{} on {}", s.agent.datapath, s.agent.tc_devices.join(", "))
        };
        let c = &s.counts;
        let mut kv = Table::new(&["", ""]);
        let rows: [(&str, String); 10] = [
            ("Agent", format!("{health} (weir-agent {})", s.agent.version)),
            ("Node", or_none(s.node.name.as_deref())),
            (
                "Node IPs",
                if addresses.is_empty() {
                    "(unknown)".into()
                } else {
                    addresses.join(", ")
                },
            ),
            ("Pod CIDR", or_none(s.node.pod_cidr.as_deref())),
            ("IP family", s.agent.ip_family.clone()),
            ("Datapath", mode),
            ("LB algorithm", s.agent.lb_algorithm.clone()),
            ("Source", s.agent.source.clone()),
            (
                "Last sync",
                match &s.last_sync {
                    Some(t) => format!("{t} (generation {})", s.generation),
                    None => "never".into(),
                },
            ),
            (
                "Counts",
                format!(
                    "{} services, {} frontends, {} backends, {} policies, {} endpoints",
                    c.services, c.frontends, c.backends, c.policies, c.endpoints
                ),
            ),
        ];
        for (key, value) in rows {
            kv.row(vec![format!("{key}:"), value]);
        }
        // The header row of a key/value block is empty: drop its line.
        let rendered = kv.render();
        let mut out = rendered
            .split_once('\n')
            .map_or_else(String::new, |(_, rest)| rest.to_owned());
        let mut maps = Table::new(&["MAP", "ENTRIES/CAPACITY"]);
        for m in &s.maps {
            maps.row(vec![m.map.clone(), fill(m.entries, m.capacity)]);
        }
        out.push('\n');
        out.push_str(&maps.render());
        if !s.skipped.is_empty() {
            let _ = writeln!(out, "\nSkipped objects ({}):", s.skipped.len());
            for e in &s.skipped {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use weir_agent::ops::api::MapFill;

    use super::*;

    #[test]
    fn table_shows_fill_and_reason() {
        let mut doc = StatusDoc {
            healthy: true,
            not_ready_reason: Some("load balancer: map full".into()),
            ..StatusDoc::default()
        };
        doc.node.name = Some("node-1".into());
        doc.maps.push(MapFill {
            map: "services".into(),
            entries: 1,
            capacity: 8,
        });
        let table = Status(doc).table();
        assert!(table.contains("NOT READY: load balancer: map full"), "{table}");
        assert!(table.contains("Node:"), "{table}");
        assert!(table.contains("services  1/8 (12.5%)"), "{table}");
        assert!(table.contains("Last sync:     never"), "{table}");
    }
}
