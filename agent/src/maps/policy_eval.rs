//! What the NetworkPolicy programs would decide for a new connection, from
//! the contents of the policy maps — the one place both `weir trace` and
//! the agent's `/v1/policy/verdict` compute it, so the two can never
//! disagree with each other (and both mirror `weir_pol_*` in the eBPF
//! crate: endpoint lookup, not-isolated → allow, node addresses into pods,
//! longest prefix at 64 bits, first matching port range).
//!
//! Conntrack is deliberately left out: a prediction is about a *new*
//! connection, which no conntrack entry covers yet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;
use weir_common::policy::{
    ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, PROTO_ANY, PolicyEndpoint, PolicyRuleValue,
};

use super::policy::{PolicyMaps, RuleKey};
use super::{PinnedPolicyMaps, Result};
pub use crate::desired::policy::Direction;

/// The policy maps' contents, read once.
#[derive(Debug, Clone, Default)]
pub struct PolicySnapshot {
    /// Local pod IP (network byte order) → endpoint.
    pub endpoints: BTreeMap<u32, PolicyEndpoint>,
    /// Rule trie entries.
    pub rules: Vec<(RuleKey, PolicyRuleValue)>,
    /// The node's own addresses (network byte order).
    pub hosts: BTreeSet<u32>,
}

impl PolicySnapshot {
    /// Reads everything `maps` holds.
    pub fn read(maps: &impl PolicyMaps) -> Result<Self> {
        Ok(Self {
            endpoints: maps.endpoints()?.into_iter().collect(),
            rules: maps.rules()?,
            hosts: maps.hosts()?.into_iter().collect(),
        })
    }

    /// Reads the maps pinned under `bpffs`.
    pub fn read_pinned(bpffs: &Path) -> Result<Self> {
        Self::read(&PinnedPolicyMaps::from_pins(bpffs)?)
    }

    /// Whether `address` is a pod the policy programs of this node guard.
    #[must_use]
    pub fn is_endpoint(&self, address: Ipv4Addr) -> bool {
        self.endpoints.contains_key(&u32::from_ne_bytes(address.octets()))
    }

    /// The verdict for a new connection `src → dst:port/proto`, judged by
    /// `direction`'s policy of the pod on this node it concerns (`src` for
    /// egress, `dst` for ingress).
    #[must_use]
    pub fn evaluate(&self, flow: &Flow, direction: Direction) -> Evaluation {
        let (pod, peer, isolate) = match direction {
            Direction::Egress => (flow.src, flow.dst, ENDPOINT_ISOLATE_EGRESS),
            Direction::Ingress => (flow.dst, flow.src, ENDPOINT_ISOLATE_INGRESS),
        };
        let allow = |endpoint, reason| Evaluation {
            allowed: true,
            endpoint,
            rule: None,
            reason,
        };
        let Some(endpoint) = self.endpoints.get(&be(pod)).copied() else {
            return allow(None, Reason::NotAnEndpoint);
        };
        if endpoint.flags & isolate == 0 {
            return allow(Some(endpoint.id), Reason::NotIsolated);
        }
        if direction == Direction::Ingress && self.hosts.contains(&be(flow.src)) {
            return allow(Some(endpoint.id), Reason::FromNode);
        }
        let deny = |reason| Evaluation {
            allowed: false,
            endpoint: Some(endpoint.id),
            rule: None,
            reason,
        };
        let Some((key, value)) = self.longest_match(endpoint.id, direction.number(), peer) else {
            return deny(Reason::NoPrefix);
        };
        let prefix = format!(
            "{}/{}",
            Ipv4Addr::from(key.data.peer.to_ne_bytes()),
            key.peer_prefix_len
        );
        let count = usize::from(value.count).min(value.ranges.len());
        value.ranges[..count]
            .iter()
            .find(|r| {
                (r.proto == PROTO_ANY || r.proto == flow.proto) && r.first <= flow.port && flow.port <= r.last
            })
            .map_or_else(
                || {
                    deny(Reason::NoPort {
                        prefix: prefix.clone(),
                    })
                },
                |range| Evaluation {
                    allowed: true,
                    endpoint: Some(endpoint.id),
                    rule: Some(range.rule),
                    reason: Reason::Rule {
                        prefix: prefix.clone(),
                    },
                },
            )
    }

    /// The trie entry a 64-bit lookup finds: same endpoint and direction,
    /// the longest peer prefix containing `peer`.
    fn longest_match(
        &self,
        endpoint: u16,
        direction: u8,
        peer: Ipv4Addr,
    ) -> Option<&(RuleKey, PolicyRuleValue)> {
        let peer = u32::from(peer);
        self.rules
            .iter()
            .filter(|(key, _)| key.data.endpoint == endpoint.to_be_bytes() && key.data.direction == direction)
            .filter(|(key, _)| {
                let len = u32::from(key.peer_prefix_len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let prefix = u32::from(Ipv4Addr::from(key.data.peer.to_ne_bytes()));
                prefix & mask == peer & mask
            })
            .max_by_key(|(key, _)| key.peer_prefix_len)
    }
}

/// An address as the maps key it: network byte order in a native `u32`.
fn be(address: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(address.octets())
}

/// A new connection's first packet, after any load-balancer translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (host order; 0 for protocols without ports).
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
}

/// A predicted verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Whether the connection passes.
    pub allowed: bool,
    /// The endpoint id whose policy judged (`None`: not a pod of this node).
    pub endpoint: Option<u16>,
    /// The rule id that allows it.
    pub rule: Option<u16>,
    /// Why.
    pub reason: Reason,
}

/// Why a verdict is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The pod is not in the endpoint map: nothing here enforces policy for it.
    NotAnEndpoint,
    /// No policy selects the pod for this direction.
    NotIsolated,
    /// From one of the node's own addresses (always allowed into pods).
    FromNode,
    /// Isolated, and no rule prefix contains the peer.
    NoPrefix,
    /// The peer's longest prefix allows no range with this port and protocol.
    NoPort {
        /// The prefix that matched (`a.b.c.d/n`).
        prefix: String,
    },
    /// A rule allows it.
    Rule {
        /// The prefix that matched (`a.b.c.d/n`).
        prefix: String,
    },
}

#[cfg(test)]
#[path = "policy_eval_tests.rs"]
mod tests;
