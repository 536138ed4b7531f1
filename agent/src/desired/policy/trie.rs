//! The rule trie entries of one endpoint and direction.
//!
//! Every prefix a rule mentions (a peer pod's /32, an ipBlock's cidr, each
//! of its excepts) becomes an entry whose value is the union of the port
//! ranges of every rule that holds **all** of that prefix. For any peer
//! address the datapath's longest match is then the longest mentioned
//! prefix P containing it, and a rule holds that address exactly when it
//! holds P: each rule's boundaries (cidr, excepts, /32s) are themselves
//! mentioned, so none lies strictly between the address and P.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use weir_common::policy::{POLICY_MAX_PORT_RANGES, PolicyRuleKey, PolicyRuleValue, PortRange};

use super::Direction;
use super::cluster::PodView;
use super::ports::{PortSpec, normalize};
use super::rules::{Block, CompiledRule};
use crate::maps::RuleKey;

/// A prefix whose union did not fit in [`POLICY_MAX_PORT_RANGES`]: it is
/// written with no range (denied).
#[derive(Debug)]
pub struct Overflow {
    /// The peer prefix.
    pub prefix: Ipv4Network,
    /// Ranges after merging.
    pub count: usize,
    /// Rules that contributed.
    pub rules: BTreeSet<u16>,
}

/// Adds the entries of `endpoint` (id `id`) for `direction`, given the
/// rules of every policy that selects it for that direction, to `out`.
pub fn entries(
    endpoint: &PodView<'_>,
    id: u16,
    direction: Direction,
    rules: &[&CompiledRule],
    out: &mut BTreeMap<RuleKey, PolicyRuleValue>,
) -> Vec<Overflow> {
    let host = |ip: Ipv4Addr| Ipv4Network::new(ip, 32).expect("/32 is a valid prefix");
    // Pod /32s: a /32 rule holds all of P only when P is that /32.
    let mut exact: BTreeMap<Ipv4Network, Vec<PortRange>> = BTreeMap::new();
    let mut blocks: Vec<(&Block, Vec<PortRange>)> = Vec::new();
    for rule in rules {
        let ranges = ranges_of(rule, endpoint, direction);
        if !ranges.is_empty() {
            for ip in &rule.pods {
                exact.entry(host(*ip)).or_default().extend(&ranges);
            }
            for block in &rule.blocks {
                blocks.push((block, ranges.clone()));
            }
        }
        for (ip, ports) in &rule.peer_named {
            let named = ports
                .iter()
                .map(|(proto, port)| range(*proto, *port, *port, rule.id));
            exact.entry(host(*ip)).or_default().extend(named);
        }
    }

    let mut mentioned: BTreeSet<Ipv4Network> = exact.keys().copied().collect();
    for (block, _) in &blocks {
        mentioned.insert(block.cidr);
        mentioned.extend(&block.excepts);
    }
    let mut overflows = Vec::new();
    for prefix in mentioned {
        let mut union = exact.get(&prefix).cloned().unwrap_or_default();
        for (block, ranges) in &blocks {
            if block.covers(prefix) {
                union.extend(ranges);
            }
        }
        let rule_ids: BTreeSet<u16> = union.iter().map(|r| r.rule).collect();
        let ranges = normalize(union).unwrap_or_else(|count| {
            overflows.push(Overflow {
                prefix,
                count,
                rules: rule_ids,
            });
            Vec::new()
        });
        out.insert(key(id, direction, prefix), value(&ranges));
    }
    overflows
}

/// The ranges `rule` allows: its numbers, and for ingress its names as the
/// selected pod's containers declare them (for egress names resolve per
/// peer, in [`CompiledRule::peer_named`]).
fn ranges_of(rule: &CompiledRule, endpoint: &PodView<'_>, direction: Direction) -> Vec<PortRange> {
    let mut out = Vec::new();
    for port in &rule.ports {
        match port {
            PortSpec::Range { proto, first, last } => out.push(range(*proto, *first, *last, rule.id)),
            PortSpec::Named { proto, name } if direction == Direction::Ingress => {
                for p in endpoint.named_ports(name, *proto) {
                    out.push(range(*proto, p, p, rule.id));
                }
            }
            PortSpec::Named { .. } => {}
        }
    }
    out
}

/// The map's port range of `proto` from `first` to `last`, allowed by `rule`.
pub(super) fn range(proto: u8, first: u16, last: u16, rule: u16) -> PortRange {
    PortRange {
        first,
        last,
        proto,
        pad: 0,
        rule,
    }
}

/// The trie key of `prefix` for endpoint `id` and `direction`.
#[must_use]
pub fn key(id: u16, direction: Direction, prefix: Ipv4Network) -> RuleKey {
    RuleKey {
        peer_prefix_len: prefix.prefix(),
        data: PolicyRuleKey {
            endpoint: id.to_be_bytes(),
            direction: direction.number(),
            pad: 0,
            peer: u32::from_ne_bytes(prefix.network().octets()),
        },
    }
}

/// The trie value holding `ranges` (at most [`POLICY_MAX_PORT_RANGES`]).
fn value(ranges: &[PortRange]) -> PolicyRuleValue {
    let mut value = PolicyRuleValue::default();
    for (slot, r) in value.ranges.iter_mut().zip(ranges) {
        *slot = *r;
    }
    #[expect(clippy::cast_possible_truncation, reason = "normalize caps it at 16")]
    {
        value.count = ranges.len().min(POLICY_MAX_PORT_RANGES) as u8;
    }
    value
}
