//! Objects for the policy tests, and a model of the datapath's lookup
//! (endpoint flags, then the longest prefix, then a range) to ask the
//! compiled state the questions the programs will ask.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use weir_common::policy::{PROTO_ANY, PolicyEndpoint, PolicyRuleValue};
use weir_common::{IPPROTO_TCP, IPPROTO_UDP};

use super::{Direction, IdHints, PolicyInput, PolicyState, compile};
use crate::maps::RuleKey;

/// The node the tests compile for.
pub const NODE: &str = "node-1";
/// TCP.
pub const TCP: u8 = IPPROTO_TCP;
/// UDP.
pub const UDP: u8 = IPPROTO_UDP;

fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("test YAML {yaml}: {e}"))
}

/// A Namespace with `labels` (inline YAML map).
pub fn namespace(name: &str, labels: &str) -> Namespace {
    parse(&format!("metadata: {{name: {name}, labels: {labels}}}"))
}

/// A running pod `ns/name` on `node` at `ip` with `labels` and container
/// `ports` (inline YAML list).
pub fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: &str, ports: &str) -> Pod {
    parse(&format!(
        "metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, ports: {ports}}}]}}\n\
         status: {{phase: Running, podIP: '{ip}', podIPs: [{{ip: '{ip}'}}]}}"
    ))
}

/// A NetworkPolicy `ns/name` with `spec` (inline YAML map).
pub fn policy(ns: &str, name: &str, spec: &str) -> NetworkPolicy {
    parse(&format!(
        "metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}"
    ))
}

/// A cluster: namespaces x (team: a), y (team: b), z (team: a) with pods
/// a (app: a), b (app: b) on node-1 and c (app: c) on node-2 in each.
/// Addresses: x 10.0.1.1-3, y 10.0.2.1-3, z 10.0.3.1-3.
pub struct World {
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// Policies.
    pub policies: Vec<NetworkPolicy>,
}

impl World {
    /// The standard cluster, no policy.
    pub fn new() -> Self {
        let mut pods = Vec::new();
        let mut namespaces = Vec::new();
        for (i, (ns, team)) in [("x", "a"), ("y", "b"), ("z", "a")].into_iter().enumerate() {
            namespaces.push(namespace(ns, &format!("{{team: {team}}}")));
            for (j, (name, node)) in [("a", NODE), ("b", NODE), ("c", "node-2")]
                .into_iter()
                .enumerate()
            {
                let ip = format!("10.0.{}.{}", i + 1, j + 1);
                let ports =
                    "[{name: http, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]";
                pods.push(pod(ns, name, node, &ip, &format!("{{app: {name}}}"), ports));
            }
        }
        Self {
            namespaces,
            pods,
            policies: Vec::new(),
        }
    }

    /// Adds a policy.
    pub fn with(mut self, ns: &str, name: &str, spec: &str) -> Self {
        self.policies.push(policy(ns, name, spec));
        self
    }

    /// Compiles for [`NODE`] without hints.
    pub fn compile(&self) -> PolicyState {
        self.compile_with(&IdHints::default())
    }

    /// Compiles for [`NODE`] with `hints`.
    pub fn compile_with(&self, hints: &IdHints) -> PolicyState {
        compile(
            &PolicyInput {
                policies: &self.policies,
                namespaces: &self.namespaces,
                pods: &self.pods,
                node_name: NODE,
            },
            hints,
        )
    }
}

/// An address of the standard world: `x/a` → 10.0.1.1; anything else is
/// parsed as an address.
pub fn ip(name: &str) -> Ipv4Addr {
    if let Some((ns, pod)) = name.split_once('/') {
        let i = ["x", "y", "z"]
            .iter()
            .position(|n| *n == ns)
            .expect("namespace x, y or z");
        let j = ["a", "b", "c"]
            .iter()
            .position(|n| *n == pod)
            .expect("pod a, b or c");
        return Ipv4Addr::new(10, 0, u8::try_from(i + 1).unwrap(), u8::try_from(j + 1).unwrap());
    }
    name.parse().expect("an address")
}

/// Whether the datapath would let `peer` talk to the endpoint `endpoint`
/// (`None`: not an endpoint) in `direction` on `proto`/`port`.
pub fn allowed_by(
    endpoint: Option<PolicyEndpoint>,
    rules: &BTreeMap<RuleKey, PolicyRuleValue>,
    direction: Direction,
    peer: Ipv4Addr,
    proto: u8,
    port: u16,
) -> bool {
    let Some(ep) = endpoint.filter(|ep| ep.flags & direction.flag() != 0) else {
        return true;
    };
    let peer_bits = u32::from(peer);
    let best = rules
        .iter()
        .filter(|(k, _)| k.data.endpoint == ep.id.to_be_bytes() && k.data.direction == direction.number())
        .filter(|(k, _)| {
            let len = u32::from(k.peer_prefix_len);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(Ipv4Addr::from(k.data.peer.to_ne_bytes())) & mask == peer_bits & mask
        })
        .max_by_key(|(k, _)| k.peer_prefix_len);
    best.is_some_and(|(_, v)| {
        v.ranges[..usize::from(v.count)]
            .iter()
            .any(|r| (r.proto == PROTO_ANY || r.proto == proto) && r.first <= port && port <= r.last)
    })
}

/// Whether `from` may reach `to` on `proto`/`port` through this node's
/// checks: `from`'s egress (if local) and `to`'s ingress (if local).
pub fn reaches(state: &PolicyState, from: &str, to: &str, proto: u8, port: u16) -> bool {
    let (from, to) = (ip(from), ip(to));
    allowed_by(
        state.endpoints.get(&from).copied(),
        &state.rules,
        Direction::Egress,
        to,
        proto,
        port,
    ) && allowed_by(
        state.endpoints.get(&to).copied(),
        &state.rules,
        Direction::Ingress,
        from,
        proto,
        port,
    )
}

/// No pod (for `assert_eq!`).
pub const NONE: [&str; 0] = [];

/// The nine pods of the standard world, `x/a` … `z/c`.
pub const PODS: [&str; 9] = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"];

/// The pods of the standard world that reach `to` on `proto`/`port`.
pub fn sources(state: &PolicyState, to: &str, proto: u8, port: u16) -> Vec<&'static str> {
    PODS.into_iter()
        .filter(|from| reaches(state, from, to, proto, port))
        .collect()
}

/// The pods of the standard world `from` reaches on `proto`/`port`.
pub fn targets(state: &PolicyState, from: &str, proto: u8, port: u16) -> Vec<&'static str> {
    PODS.into_iter()
        .filter(|to| reaches(state, from, to, proto, port))
        .collect()
}
