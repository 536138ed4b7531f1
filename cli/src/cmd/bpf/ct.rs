//! `weir bpf ct list`: connection tracking as weir keeps it. There is no
//! single conntrack table: the uplink's NAT table (`weir_nat4_v2`) tracks
//! the flows it translates (NodePort / externalIP / masquerade), and the
//! policy table (`weir_pol_ct_v1`) the connections a NetworkPolicy check
//! allowed, so their replies pass. Both are shown, a `table` column saying
//! which; in-cluster Service traffic is translated at `connect()` and needs
//! neither.

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::{HashMap, Map, MapData};
use serde::Serialize;
use weir_common::nat::{NAT_INGRESS, NAT_MAP, Nat4Entry, Nat4Key};
use weir_common::policy::{POLICY_CT_MAP, POLICY_INGRESS, PolicyCtKey, PolicyCtValue, RULE_NONE};

use super::decode::{Proto, age_secs, age_text, endpoint, ip, monotonic_now_ns, port, protocol};
use super::nat::{Rewrite, flags, origin};
use crate::Args;
use crate::output::{Render, Table, print};

/// The `bpf ct` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tracked connections of both tables, oldest first.
    ///
    /// Examples:
    ///   weir bpf ct list
    ///   weir bpf ct list --address 10.244.1.3 --proto tcp
    ///   weir bpf ct list --port 30080 -o json
    ///   weir bpf ct list --count
    #[command(verbatim_doc_comment)]
    List(Filter),
}

/// Which entries to show.
#[derive(Debug, Default, clap::Args)]
pub struct Filter {
    /// Only entries with this address (source, destination or rewritten).
    #[arg(long)]
    pub address: Option<Ipv4Addr>,
    /// Only entries with this port (source, destination or rewritten).
    #[arg(long)]
    pub port: Option<u16>,
    /// Only entries of this protocol.
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// Print only how many entries match, per table.
    #[arg(long)]
    pub count: bool,
}

/// `weir bpf ct list`.
#[derive(Debug, Serialize)]
pub struct CtList {
    /// Matching entries, by table, then age (oldest first).
    pub entries: Vec<CtEntry>,
}

/// `weir bpf ct list --count`.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct CtCounts {
    /// Matching entries of the NAT table (two per translated flow).
    pub nat: usize,
    /// Matching entries of the policy table.
    pub policy: usize,
}

/// One tracked connection (one direction's entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CtEntry {
    /// `nat` (`weir_nat4_v2`) or `policy` (`weir_pol_ct_v1`).
    pub table: &'static str,
    /// `tcp`, `udp`, `sctp`, `icmp`, or the number.
    pub protocol: String,
    /// Source address of the packets the entry matches.
    pub source: Ipv4Addr,
    /// Their source port (0 without ports).
    pub source_port: u16,
    /// Their destination address.
    pub destination: Ipv4Addr,
    /// Their destination port (0 without ports).
    pub destination_port: u16,
    /// `nat`: the uplink hook that matches it (`ingress`: arriving,
    /// `egress`: leaving). `policy`: the endpoint's direction.
    pub direction: &'static str,
    /// Seconds since the flow was set up; `null` when unknown (migrated).
    pub age_secs: Option<u64>,
    /// `nat`: seconds since its last packet (refreshed at most every second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
    /// `nat`: what the packets become.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// `nat`: why the flow is translated (`nodeport`, `masquerade`, `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'static str>,
    /// `nat`: `reply`, `snat`, `migrated`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// `policy`: the endpoint (local pod) id whose policy allowed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<u16>,
    /// `policy`: the rule id that allowed it; absent when none was needed
    /// (a reply, node traffic, a direction not isolated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u16>,
}

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<()> {
    let Command::List(filter) = command;
    let now = monotonic_now_ns()?;
    let mut entries: Vec<CtEntry> = nat_entries(&args.bpffs)?
        .iter()
        .map(|(k, v)| nat_entry(k, v, now))
        .chain(
            policy_entries(&args.bpffs)?
                .iter()
                .map(|(k, v)| policy_entry(k, v, now)),
        )
        .filter(|e| filter.matches(e))
        .collect();
    entries.sort_by_key(CtEntry::order);
    if filter.count {
        return print(&counts(&entries), args.output);
    }
    print(&CtList { entries }, args.output)
}

impl CtEntry {
    /// Listing order: by table, oldest first (unknown ages last), then by
    /// tuple, so equal runs list alike.
    pub(super) fn order(&self) -> impl Ord + use<> {
        (
            self.table,
            std::cmp::Reverse(self.age_secs),
            (self.source, self.source_port),
            (self.destination, self.destination_port),
            self.direction,
        )
    }
}

impl Filter {
    /// Whether `entry` is one to show.
    pub fn matches(&self, entry: &CtEntry) -> bool {
        let rewritten = entry.rewrite.as_ref();
        let address = self.address.is_none_or(|a| {
            entry.source == a
                || entry.destination == a
                || rewritten.is_some_and(|r| r.source == a || r.destination == a)
        });
        let port = self.port.is_none_or(|p| {
            entry.source_port == p
                || entry.destination_port == p
                || rewritten.is_some_and(|r| r.source_port == p || r.destination_port == p)
        });
        let proto = self.proto.is_none_or(|p| entry.protocol == protocol(p.number()));
        address && port && proto
    }
}

/// Entries per table.
pub fn counts(entries: &[CtEntry]) -> CtCounts {
    CtCounts {
        nat: entries.iter().filter(|e| e.table == "nat").count(),
        policy: entries.iter().filter(|e| e.table == "policy").count(),
    }
}

/// Every entry of the pinned NAT table.
pub fn nat_entries(bpffs: &Path) -> anyhow::Result<Vec<(Nat4Key, Nat4Entry)>> {
    entries(bpffs, NAT_MAP)
}

fn policy_entries(bpffs: &Path) -> anyhow::Result<Vec<(PolicyCtKey, PolicyCtValue)>> {
    entries(bpffs, POLICY_CT_MAP)
}

/// Every entry of the hash map pinned as `name`. Entries the datapath
/// evicts during the walk may end it early: a snapshot, as any of a live
/// table is.
fn entries<K: aya::Pod, V: aya::Pod>(bpffs: &Path, name: &str) -> anyhow::Result<Vec<(K, V)>> {
    let map: HashMap<MapData, K, V> = super::decode::open(bpffs, name)
        .and_then(Map::from_map_data)
        .and_then(HashMap::try_from)
        .map_err(|e| super::unreachable(bpffs, format!("{name}: {e}")))?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

/// The view of one NAT table entry.
pub fn nat_entry(key: &Nat4Key, value: &Nat4Entry, now: u64) -> CtEntry {
    CtEntry {
        table: "nat",
        protocol: protocol(key.proto),
        source: ip(key.saddr),
        source_port: port(key.sport),
        destination: ip(key.daddr),
        destination_port: port(key.dport),
        direction: if key.direction == NAT_INGRESS {
            "ingress"
        } else {
            "egress"
        },
        age_secs: age_secs(value.created_ns, now),
        idle_secs: Some(age_secs(value.last_seen_ns, now).unwrap_or(0)),
        rewrite: Some(Rewrite::of(&value.rewrite)),
        origin: Some(origin(value.origin)),
        flags: flags(value.flags),
        endpoint: None,
        rule: None,
    }
}

/// The view of one policy table entry.
pub fn policy_entry(key: &PolicyCtKey, value: &PolicyCtValue, now: u64) -> CtEntry {
    CtEntry {
        table: "policy",
        protocol: protocol(key.proto),
        source: ip(key.saddr),
        source_port: port(key.sport),
        destination: ip(key.daddr),
        destination_port: port(key.dport),
        direction: if key.direction == POLICY_INGRESS {
            "ingress"
        } else {
            "egress"
        },
        age_secs: age_secs(value.created_ns, now),
        idle_secs: None,
        rewrite: None,
        origin: None,
        flags: Vec::new(),
        endpoint: Some(key.endpoint),
        rule: (value.rule != RULE_NONE).then_some(value.rule),
    }
}

impl Render for CtList {
    fn table(&self) -> String {
        let mut table = Table::new(&["TABLE", "PROTO", "DIR", "SOURCE", "DESTINATION", "DETAIL", "AGE"]);
        for e in &self.entries {
            let detail = match (&e.rewrite, e.endpoint) {
                (Some(r), _) => format!(
                    "{} → {}  {} {}",
                    endpoint(r.source, r.source_port),
                    endpoint(r.destination, r.destination_port),
                    e.origin.unwrap_or("-"),
                    e.flags.join(","),
                ),
                (None, Some(id)) => format!(
                    "endpoint {id} rule {}",
                    e.rule.map_or_else(|| "-".to_owned(), |r| r.to_string())
                ),
                (None, None) => String::new(),
            };
            table.row(vec![
                e.table.to_owned(),
                e.protocol.clone(),
                e.direction.to_owned(),
                endpoint(e.source, e.source_port),
                endpoint(e.destination, e.destination_port),
                detail.trim_end().to_owned(),
                age_text(e.age_secs),
            ]);
        }
        table.render()
    }
}

impl Render for CtCounts {
    fn table(&self) -> String {
        let mut table = Table::new(&["TABLE", "ENTRIES"]);
        table.row(vec!["nat".into(), self.nat.to_string()]);
        table.row(vec!["policy".into(), self.policy.to_string()]);
        table.row(vec!["total".into(), (self.nat + self.policy).to_string()]);
        table.render()
    }
}

#[cfg(test)]
#[path = "ct_tests.rs"]
mod tests;
