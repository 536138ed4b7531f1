//! `weir bpf policy get POD`: one local pod's NetworkPolicy state as the
//! per-pod programs see it — its endpoint (id, which directions are
//! isolated) and the rule trie entries of each direction: peer prefix →
//! what the peers of that prefix may use (the longest matching prefix wins,
//! so an `except` shows as its own prefix, often `deny`).

use std::net::Ipv4Addr;

use anyhow::Context as _;
use ipnetwork::Ipv4Network;
use serde::Serialize;
use weir_agent::maps::{PinnedPolicyMaps, PolicyMaps, RuleKey};
use weir_common::policy::{
    ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, POLICY_EGRESS, POLICY_INGRESS, PolicyRuleValue,
    RULE_NONE,
};

use super::decode::{ip, protocol, stored_ip};
use super::endpoints::{self, AgentEndpoint};
use crate::Args;
use crate::exit::Failure;
use crate::output::{Render, Table, print};

/// The `bpf policy` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A local pod's endpoint and rules, by pod IP or NAMESPACE/NAME (names
    /// are resolved through the agent).
    ///
    /// Examples:
    ///   weir bpf policy get 10.244.1.3
    ///   weir bpf policy get x/a -o json
    #[command(verbatim_doc_comment)]
    Get {
        /// Pod IP, or NAMESPACE/NAME.
        pod: String,
    },
}

/// `weir bpf policy get`.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    /// `namespace/name`, when the agent could say.
    pub pod: Option<String>,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Its endpoint id (the first part of its rule keys).
    pub endpoint_id: u16,
    /// Whether some policy isolates its ingress (else all is allowed in).
    pub ingress_isolated: bool,
    /// Whether some policy isolates its egress (else all is allowed out).
    pub egress_isolated: bool,
    /// Rule trie entries for traffic to the pod, by peer prefix.
    pub ingress: Vec<RuleEntry>,
    /// Rule trie entries for traffic from the pod, by peer prefix.
    pub egress: Vec<RuleEntry>,
}

/// One rule trie entry: what peers in `peer` may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleEntry {
    /// Peer prefix (`a.b.c.d/n`).
    pub peer: String,
    /// The peer pod's `namespace/name` (a /32 of a pod on any node, named
    /// by the agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pod: Option<String>,
    /// No range allowed: peers of this prefix are denied (an `except`).
    pub deny: bool,
    /// The allowed ranges.
    pub allow: Vec<PortAllow>,
}

/// Ports of one protocol a peer may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortAllow {
    /// `tcp`, `udp`, `sctp`, or `any` (a rule without ports).
    pub protocol: String,
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
    /// The agent's id of the rule allowing it; `null` if none recorded.
    pub rule: Option<u16>,
}

/// Runs the command.
pub fn run(args: &Args, command: &Command) -> anyhow::Result<()> {
    let Command::Get { pod } = command;
    let (address, mut name, known) = resolve(args, pod)?;
    let maps = PinnedPolicyMaps::from_pins(&args.bpffs).map_err(super::open_failure(&args.bpffs))?;
    let endpoints = maps.endpoints().context("reading the policy endpoints")?;
    let (_, endpoint) = endpoints
        .iter()
        .find(|(stored, _)| *stored == stored_ip(address))
        .ok_or_else(|| Failure::NotFound(format!("policy endpoint for {pod} ({address}) on this node")))?;
    let known = known.unwrap_or_else(|| endpoints::fetch_or_none(&args.agent));
    if name.is_none() {
        name = endpoints::name_of(&known, address);
    }
    let rules = maps.rules().context("reading the policy rules")?;
    let mut view = PolicyView {
        pod: name,
        ip: address,
        endpoint_id: endpoint.id,
        ingress_isolated: endpoint.flags & ENDPOINT_ISOLATE_INGRESS != 0,
        egress_isolated: endpoint.flags & ENDPOINT_ISOLATE_EGRESS != 0,
        ingress: entries(&rules, endpoint.id, POLICY_INGRESS),
        egress: entries(&rules, endpoint.id, POLICY_EGRESS),
    };
    // Peers are pods of any node: the agent knows them all.
    let mut everyone = endpoints::fetch_pods_or_none(&args.agent);
    everyone.extend(known);
    for entry in view.ingress.iter_mut().chain(view.egress.iter_mut()) {
        if let Some(peer) = entry.peer.strip_suffix("/32").and_then(|p| p.parse().ok()) {
            entry.peer_pod = endpoints::name_of(&everyone, peer);
        }
    }
    print(&view, args.output)
}

/// The address of `pod`, its name if it was given one, and the agent's
/// endpoints if they were fetched to find it.
fn resolve(args: &Args, pod: &str) -> anyhow::Result<(Ipv4Addr, Option<String>, Option<Vec<AgentEndpoint>>)> {
    if let Ok(address) = pod.parse::<Ipv4Addr>() {
        return Ok((address, None, None));
    }
    anyhow::ensure!(
        pod.split_once('/')
            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty()),
        "{pod:?} is neither a pod IP nor NAMESPACE/NAME"
    );
    let known = endpoints::fetch(&args.agent).with_context(|| {
        format!("cannot resolve the pod name {pod} without the agent; give the pod's IP instead")
    })?;
    let address = known
        .iter()
        .find(|e| e.pod == pod)
        .map(|e| e.ip)
        .ok_or_else(|| Failure::NotFound(format!("pod {pod} on this node")))?;
    Ok((address, Some(pod.to_owned()), Some(known)))
}

/// The trie entries of `endpoint` in `direction`, by peer prefix.
pub fn entries(rules: &[(RuleKey, PolicyRuleValue)], endpoint: u16, direction: u8) -> Vec<RuleEntry> {
    let mut mine: Vec<(Ipv4Network, RuleEntry)> = rules
        .iter()
        .filter(|(key, _)| key.data.endpoint == endpoint.to_be_bytes() && key.data.direction == direction)
        .filter_map(|(key, value)| {
            let net = Ipv4Network::new(ip(key.data.peer), key.peer_prefix_len).ok()?;
            let used = &value.ranges[..usize::from(value.count).min(value.ranges.len())];
            let allow = used
                .iter()
                .map(|r| PortAllow {
                    protocol: protocol(r.proto),
                    first: r.first,
                    last: r.last,
                    rule: (r.rule != RULE_NONE).then_some(r.rule),
                })
                .collect();
            let entry = RuleEntry {
                peer: net.to_string(),
                peer_pod: None,
                deny: value.count == 0,
                allow,
            };
            Some((net, entry))
        })
        .collect();
    mine.sort_by_key(|(net, _)| (net.network(), net.prefix()));
    mine.into_iter().map(|(_, e)| e).collect()
}

impl Render for PolicyView {
    fn table(&self) -> String {
        let isolation = |on: bool| {
            if on {
                "isolated"
            } else {
                "not isolated (all allowed)"
            }
        };
        let mut out = format!(
            "pod {}  ip {}  endpoint {}\ningress: {}\negress:  {}\n\n",
            self.pod.as_deref().unwrap_or("-"),
            self.ip,
            self.endpoint_id,
            isolation(self.ingress_isolated),
            isolation(self.egress_isolated),
        );
        let mut table = Table::new(&["DIRECTION", "PEER", "POD", "ALLOW"]);
        for (direction, entries) in [("ingress", &self.ingress), ("egress", &self.egress)] {
            for e in entries {
                let allow = if e.deny {
                    "deny".to_owned()
                } else {
                    e.allow.iter().map(allow_text).collect::<Vec<_>>().join(", ")
                };
                table.row(vec![
                    direction.to_owned(),
                    e.peer.clone(),
                    e.peer_pod.clone().unwrap_or_else(|| "-".to_owned()),
                    allow,
                ]);
            }
        }
        out.push_str(&table.render());
        out
    }
}

/// `tcp 80`, `tcp 8000-8080`, `any`, with the rule id: `tcp 80 (rule 3)`.
fn allow_text(a: &PortAllow) -> String {
    let ports = match (a.first, a.last) {
        (0, 65535) => String::new(),
        (f, l) if f == l => format!(" {f}"),
        (f, l) => format!(" {f}-{l}"),
    };
    let rule = a.rule.map_or_else(String::new, |r| format!(" (rule {r})"));
    format!("{}{ports}{rule}", a.protocol)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
