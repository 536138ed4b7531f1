//! NetworkPolicy (`networking.k8s.io/v1`) compiled into what the policy
//! maps hold (layout and design in `weir_common::policy`).
//!
//! [`compile`] takes every NetworkPolicy, Namespace and Pod of the cluster
//! and this node's name, and yields a [`PolicyState`]: an endpoint per local
//! pod (its id and which directions some policy isolates), the rule trie
//! entries of each isolated endpoint and direction, the rule table the
//! verdict log names rules with, and the errors of policies that could not
//! be compiled. `crate::reconcile::policy::reconcile` then writes it.
//!
//! Semantics follow the API documentation: an empty `podSelector` selects
//! the whole namespace; `policyTypes` defaults to Ingress, plus Egress when
//! egress rules exist; peers in one rule combine with OR, a podSelector and a
//! namespaceSelector in one peer combine with AND; an empty `from`/`to` is every
//! address and an empty `ports` every port of every protocol; a named port
//! is resolved against the pod that owns it (the selected pod for ingress,
//! each peer pod for egress); several policies on a pod are a union.
//! Host-network pods are neither endpoints nor selector peers (their address
//! is the node's), as upstream; ipBlocks match them like any address.
//!
//! Fail closed: a policy with any error still isolates the pods it selects
//! for its directions but allows nothing, and the error is reported.
//!
//! Everything is recomputed on every pass, from all objects, so there is no
//! incremental state to get wrong; the cost is linear in pods × peers per
//! policy, and the reconciler writes only the entries that changed — a pod
//! whose labels change rewrites the entries that name its address, nothing
//! else. The same objects always give the same state (`BTreeMap`s only).

mod cluster;
mod compile;
mod ids;
mod ports;
mod rules;
mod selector;
mod trie;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests_ids;
#[cfg(test)]
mod tests_ipblock;
#[cfg(test)]
mod tests_ports;
#[cfg(test)]
mod tests_semantics;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use weir_common::policy::{
    ENDPOINT_ISOLATE_EGRESS, ENDPOINT_ISOLATE_INGRESS, POLICY_EGRESS, POLICY_INGRESS, PolicyEndpoint,
    PolicyRuleValue,
};

pub use compile::{PolicyInput, compile};
pub use ids::IdHints;
pub use selector::Selector;

use super::ObjectError;
use crate::maps::RuleKey;

/// Which way traffic goes, seen from the selected pod (`ingress` /
/// `egress` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Traffic to the pod.
    Ingress,
    /// Traffic from the pod.
    Egress,
}

impl Direction {
    /// `POLICY_INGRESS` / `POLICY_EGRESS`, as the maps spell it.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Direction::Ingress => POLICY_INGRESS,
            Direction::Egress => POLICY_EGRESS,
        }
    }

    /// The direction of a map or verdict value.
    #[must_use]
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            POLICY_INGRESS => Some(Direction::Ingress),
            POLICY_EGRESS => Some(Direction::Egress),
            _ => None,
        }
    }

    /// The endpoint flag that isolates this direction.
    #[must_use]
    pub fn flag(self) -> u8 {
        match self {
            Direction::Ingress => ENDPOINT_ISOLATE_INGRESS,
            Direction::Egress => ENDPOINT_ISOLATE_EGRESS,
        }
    }

    /// `ingress` or `egress`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `namespace/name` of a NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One rule of one policy: what a rule id in the maps and the verdict log
/// stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// The policy.
    pub policy: PolicyName,
    /// `ingress` or `egress` rules.
    pub direction: Direction,
    /// Index in the policy's `spec.ingress` / `spec.egress`.
    pub index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.policy, self.direction, self.index)
    }
}

/// A local pod as the verdict log reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Policies that select it for ingress, sorted.
    pub ingress: Vec<PolicyName>,
    /// Policies that select it for egress, sorted.
    pub egress: Vec<PolicyName>,
}

impl EndpointInfo {
    /// The policies that isolate it in `direction`: for a drop, "no rule of
    /// policies A, B matched".
    #[must_use]
    pub fn policies(&self, direction: Direction) -> &[PolicyName] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Everything the policy maps should hold, and what the ids in them mean.
#[derive(Debug, Default)]
pub struct PolicyState {
    /// Endpoint map: every local pod (flags 0 when no policy selects it).
    pub endpoints: BTreeMap<Ipv4Addr, PolicyEndpoint>,
    /// Rule trie entries of the isolated endpoints and directions.
    pub rules: BTreeMap<RuleKey, PolicyRuleValue>,
    /// Rule id → rule, for the verdict log.
    pub rule_table: BTreeMap<u16, RuleRef>,
    /// Endpoint id → pod and the policies selecting it.
    pub endpoint_info: BTreeMap<u16, EndpointInfo>,
    /// Policies that select at least one local pod.
    pub policies: BTreeSet<PolicyName>,
    /// Policies (or parts) that could not be compiled; each still isolates
    /// what it selects.
    pub errors: Vec<ObjectError>,
}

impl PolicyState {
    /// The rule a verdict names, if any.
    #[must_use]
    pub fn rule(&self, id: u16) -> Option<&RuleRef> {
        self.rule_table.get(&id)
    }
}
