//! `weir bpf nat list`: the uplink's translations, original tuple →
//! rewritten tuple, and the masquerade settings that decide which pod flows
//! get one.

use std::net::Ipv4Addr;

use serde::Serialize;
use weir_agent::maps::dump::Masquerade;
use weir_common::nat::{
    NAT_F_MIGRATED, NAT_F_REPLY, NAT_F_SNAT, NAT_ORIGIN_MASQ, NAT_ORIGIN_NODEPORT, NatRewrite,
};

use super::ct::{CtEntry, nat_entries, nat_entry};
use super::decode::{age_text, endpoint, ip, monotonic_now_ns, or_dash, port};
use crate::Args;
use crate::output::{Render, Table, print};

/// The `bpf nat` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every translation and the masquerade configuration.
    ///
    /// Example:
    ///   weir bpf nat list -o yaml
    #[command(verbatim_doc_comment)]
    List,
}

/// What a packet's addresses and ports become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    /// New source address.
    pub source: Ipv4Addr,
    /// New source port.
    pub source_port: u16,
    /// New destination address.
    pub destination: Ipv4Addr,
    /// New destination port.
    pub destination_port: u16,
}

impl Rewrite {
    /// Decodes a stored rewrite (network byte order).
    pub fn of(rewrite: &NatRewrite) -> Self {
        Rewrite {
            source: ip(rewrite.saddr),
            source_port: port(rewrite.sport),
            destination: ip(rewrite.daddr),
            destination_port: port(rewrite.dport),
        }
    }
}

/// [`weir_common::nat::Nat4Entry::origin`] by name.
pub fn origin(origin: u8) -> &'static str {
    match origin {
        NAT_ORIGIN_MASQ => "masquerade",
        NAT_ORIGIN_NODEPORT => "nodeport",
        _ => "unknown",
    }
}

/// [`weir_common::nat::Nat4Entry::flags`] by name; unknown bits in hex.
pub fn flags(bits: u8) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = bits;
    for (bit, name) in [
        (NAT_F_REPLY, "reply"),
        (NAT_F_SNAT, "snat"),
        (NAT_F_MIGRATED, "migrated"),
    ] {
        if rest & bit != 0 {
            names.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names
}

/// `weir bpf nat list`.
#[derive(Debug, Serialize)]
pub struct NatList {
    /// The masquerade settings (node address, pod CIDR, skip list).
    pub masquerade: Masquerade,
    /// The NAT table's entries (same fields as `weir bpf ct list`'s `nat`
    /// rows).
    pub translations: Vec<CtEntry>,
}

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<()> {
    let Command::List = command;
    let dump = weir_agent::maps::dump_pinned(&args.bpffs, false).map_err(super::open_failure(&args.bpffs))?;
    let now = monotonic_now_ns()?;
    let mut translations: Vec<CtEntry> = nat_entries(&args.bpffs)?
        .iter()
        .map(|(k, v)| nat_entry(k, v, now))
        .collect();
    translations.sort_by_key(|e| {
        (
            std::cmp::Reverse(e.age_secs),
            e.source,
            e.source_port,
            e.direction,
        )
    });
    print(
        &NatList {
            masquerade: dump.masquerade,
            translations,
        },
        args.output,
    )
}

impl Render for NatList {
    fn table(&self) -> String {
        let m = &self.masquerade;
        let mut out = format!(
            "masquerade: {}  node address {}  pod CIDR {}  never to {}\n\n",
            if m.enabled { "on" } else { "off" },
            m.node_ip.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            m.pod_cidr.clone().unwrap_or_else(|| "-".to_owned()),
            or_dash(m.skip.join(", ")),
        );
        let mut table = Table::new(&["PROTO", "HOOK", "ORIGINAL", "REWRITTEN", "ORIGIN", "FLAGS", "AGE"]);
        for e in &self.translations {
            let rewritten = e.rewrite.map_or_else(String::new, |r| {
                format!(
                    "{} → {}",
                    endpoint(r.source, r.source_port),
                    endpoint(r.destination, r.destination_port)
                )
            });
            table.row(vec![
                e.protocol.clone(),
                e.direction.to_owned(),
                format!(
                    "{} → {}",
                    endpoint(e.source, e.source_port),
                    endpoint(e.destination, e.destination_port)
                ),
                rewritten,
                e.origin.unwrap_or("-").to_owned(),
                or_dash(e.flags.join(",")),
                age_text(e.age_secs),
            ]);
        }
        out.push_str(&table.render());
        out
    }
}
