//! One NetworkPolicy resolved against the cluster: the local pods it
//! selects, for which directions, and its rules as peer sets and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};

use super::cluster::Cluster;
use super::ids::RuleIds;
use super::ports::{PortSpec, parse_ports};
use super::selector::Selector;
use super::{Direction, PolicyName, RuleRef};
use crate::desired::Reason;

/// A rule's peers (`from`/`to`) and ports.
type RuleParts<'a> = (Option<&'a [NetworkPolicyPeer]>, Option<&'a [NetworkPolicyPort]>);

/// An ipBlock: `cidr` minus `excepts` (each inside `cidr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The block.
    pub cidr: Ipv4Network,
    /// Holes in it.
    pub excepts: Vec<Ipv4Network>,
}

impl Block {
    /// Everything: an empty `from`/`to`.
    pub const ALL: Block = Block {
        cidr: Ipv4Network::new_checked(Ipv4Addr::UNSPECIFIED, 0).unwrap(),
        excepts: Vec::new(),
    };

    /// Whether the block holds every address of `prefix` that no longer
    /// prefix (of the trie) claims: `prefix` lies in the cidr and in no
    /// except. (An except strictly inside `prefix` is a longer trie entry.)
    pub fn covers(&self, prefix: Ipv4Network) -> bool {
        let within =
            |outer: &Ipv4Network| outer.prefix() <= prefix.prefix() && outer.contains(prefix.network());
        within(&self.cidr) && !self.excepts.iter().any(within)
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(ip) && !self.excepts.iter().any(|x| x.contains(ip))
    }
}

/// One ingress or egress rule.
#[derive(Clone, Debug, Default)]
pub struct CompiledRule {
    /// Its id in the rule table.
    pub id: u16,
    /// Peer pods (by selector).
    pub pods: BTreeSet<Ipv4Addr>,
    /// Peer ipBlocks; [`Block::ALL`] for an empty `from`/`to`.
    pub blocks: Vec<Block>,
    /// Its ports: numbers, and (ingress) names the selected pod resolves.
    pub ports: Vec<PortSpec>,
    /// Egress named ports resolved against each peer pod that has them
    /// (by selector or inside a block): pod → (protocol, port).
    pub peer_named: BTreeMap<Ipv4Addr, Vec<(u8, u16)>>,
}

/// A policy as it applies to this node.
#[derive(Debug, Default)]
pub struct CompiledPolicy {
    /// `namespace/name`.
    pub name: PolicyName,
    /// Local endpoints it selects.
    pub selected: Vec<Ipv4Addr>,
    /// Rules per direction it isolates (empty: it allows nothing, also
    /// when it could not be compiled).
    pub directions: BTreeMap<Direction, Vec<CompiledRule>>,
    /// Why it could not be compiled; non-empty means it allows nothing.
    pub errors: Vec<Reason>,
}

/// Resolves `policy`. Any error leaves the policy isolating what it selects
/// for its directions while allowing nothing (fail closed).
pub fn compile(policy: &NetworkPolicy, cluster: &Cluster<'_>, ids: &mut RuleIds<'_>) -> CompiledPolicy {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
    let name = PolicyName {
        namespace: namespace.to_owned(),
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    let spec = policy.spec.clone().unwrap_or_default();
    let mut out = CompiledPolicy {
        name,
        ..CompiledPolicy::default()
    };

    // A selector that cannot be evaluated selects every pod of the
    // namespace: isolating too many is safe, too few is not.
    let selector = spec
        .pod_selector
        .as_ref()
        .map(Selector::parse)
        .transpose()
        .unwrap_or_else(|e| {
            out.errors.push(e);
            None
        })
        .unwrap_or_default();
    out.selected = cluster
        .pods
        .iter()
        .filter(|p| p.local && p.namespace == namespace && selector.matches(p.labels))
        .map(|p| p.ip)
        .collect();

    let ingress = spec.ingress.unwrap_or_default();
    let egress = spec.egress.unwrap_or_default();
    let mut directions = BTreeSet::new();
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => {
            for t in types {
                match t.as_str() {
                    "Ingress" => directions.insert(Direction::Ingress),
                    "Egress" => directions.insert(Direction::Egress),
                    other => {
                        // The API server refuses this; which direction was
                        // meant is unknowable, so both are isolated.
                        out.errors.push(Reason::UnknownPolicyType(other.into()));
                        directions.extend([Direction::Ingress, Direction::Egress]);
                        true
                    }
                };
            }
        }
        _ => {
            directions.insert(Direction::Ingress);
            if !egress.is_empty() {
                directions.insert(Direction::Egress);
            }
        }
    }

    for direction in directions {
        let rules: Vec<RuleParts<'_>> = match direction {
            Direction::Ingress => ingress
                .iter()
                .map(|r| (r.from.as_deref(), r.ports.as_deref()))
                .collect(),
            Direction::Egress => egress
                .iter()
                .map(|r| (r.to.as_deref(), r.ports.as_deref()))
                .collect(),
        };
        let mut compiled = Vec::new();
        for (index, (peers, ports)) in rules.into_iter().enumerate() {
            let id = ids.id(RuleRef {
                policy: out.name.clone(),
                direction,
                index,
            });
            match compile_rule(id, direction, namespace, peers, ports, cluster) {
                Ok(rule) => compiled.push(rule),
                Err(e) => out.errors.push(e),
            }
        }
        out.directions.insert(direction, compiled);
    }
    if !out.errors.is_empty() {
        out.directions.values_mut().for_each(Vec::clear);
    }
    out
}

fn compile_rule(
    id: u16,
    direction: Direction,
    namespace: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    cluster: &Cluster<'_>,
) -> Result<CompiledRule, Reason> {
    let mut rule = CompiledRule {
        id,
        ports: parse_ports(ports)?,
        ..CompiledRule::default()
    };
    let peers = peers.unwrap_or_default();
    if peers.is_empty() {
        rule.blocks.push(Block::ALL);
    }
    for peer in peers {
        match (&peer.ip_block, &peer.pod_selector, &peer.namespace_selector) {
            (Some(block), None, None) => rule.blocks.extend(block_of(block)?),
            (Some(_), _, _) => {
                return Err(Reason::BadPeer(
                    "ipBlock cannot be combined with a selector".into(),
                ));
            }
            (None, None, None) => return Err(Reason::BadPeer("no peer type set".into())),
            (None, pods, namespaces) => {
                let pods = pods.as_ref().map(Selector::parse).transpose()?;
                let namespaces = namespaces.as_ref().map(Selector::parse).transpose()?;
                for pod in &cluster.pods {
                    let in_namespace = match &namespaces {
                        // Alone, a podSelector means the policy's namespace.
                        None => pod.namespace == namespace,
                        Some(ns) => ns.matches(cluster.namespace_labels(pod.namespace)),
                    };
                    if in_namespace && pods.as_ref().is_none_or(|s| s.matches(pod.labels)) {
                        rule.pods.insert(pod.ip);
                    }
                }
            }
        }
    }
    if direction == Direction::Egress {
        let named: Vec<(u8, &str)> = rule
            .ports
            .iter()
            .filter_map(|p| match p {
                PortSpec::Named { proto, name } => Some((*proto, name.as_str())),
                PortSpec::Range { .. } => None,
            })
            .collect();
        if !named.is_empty() {
            for pod in &cluster.pods {
                if !rule.pods.contains(&pod.ip) && !rule.blocks.iter().any(|b| b.contains(pod.ip)) {
                    continue;
                }
                for (proto, name) in &named {
                    for port in pod.named_ports(name, *proto) {
                        rule.peer_named.entry(pod.ip).or_default().push((*proto, port));
                    }
                }
            }
        }
    }
    Ok(rule)
}

/// The IPv4 block of an ipBlock; `None` for an IPv6 one (weir enforces
/// IPv4 only, and an IPv6 block matches no IPv4 peer).
fn block_of(block: &IPBlock) -> Result<Option<Block>, Reason> {
    let Some(cidr) = parse_cidr(&block.cidr)? else {
        return Ok(None);
    };
    let mut excepts = Vec::new();
    for except in block.except.iter().flatten() {
        let outside = || Reason::ExceptOutsideCidr {
            except: except.clone(),
            cidr: block.cidr.clone(),
        };
        let net = parse_cidr(except)?.ok_or_else(outside)?;
        if net.prefix() < cidr.prefix() || !cidr.contains(net.network()) {
            return Err(outside());
        }
        excepts.push(net);
    }
    Ok(Some(Block { cidr, excepts }))
}

/// An `a.b.c.d/n` CIDR with its host bits cleared (the trie compares only
/// the prefix; a canonical key keeps the diff exact); `None` for IPv6.
fn parse_cidr(text: &str) -> Result<Option<Ipv4Network>, Reason> {
    let bad = || Reason::BadCidr(text.to_owned());
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    if addr.contains(':') {
        let ok = addr.parse::<std::net::Ipv6Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 128);
        return if ok { Ok(None) } else { Err(bad()) };
    }
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(bad)?;
    let net = Ipv4Network::new(addr, len).map_err(|_| bad())?;
    Ipv4Network::new(net.network(), len).map(Some).map_err(|_| bad())
}
