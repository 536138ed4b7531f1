//! The compilation pass: objects in, [`PolicyState`] out.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use weir_common::policy::{POLICY_MAX_PORT_RANGES, PolicyEndpoint};

use super::{Direction, EndpointInfo, IdHints, PolicyName, PolicyState, cluster, ids, rules, trie};
use crate::desired::{ObjectError, ObjectRef, Reason};

/// What policies are compiled from.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    /// Every NetworkPolicy of the cluster.
    pub policies: &'a [NetworkPolicy],
    /// Every Namespace (for namespaceSelectors).
    pub namespaces: &'a [Namespace],
    /// Every Pod of the cluster (peers), not only this node's.
    pub pods: &'a [Pod],
    /// This node: its non-host-network pods are the endpoints.
    pub node_name: &'a str,
}

/// Compiles `input` into the policy maps' contents, keeping the ids in
/// `hints` (see [`IdHints`]).
#[must_use]
pub fn compile(input: &PolicyInput<'_>, hints: &IdHints) -> PolicyState {
    let cluster = cluster::Cluster::new(input.pods, input.namespaces, input.node_name);
    // Two local pods claiming one address: the first by namespace/name is
    // the endpoint (the other is on its way out).
    let mut local = BTreeMap::new();
    for pod in cluster.pods.iter().filter(|p| p.local) {
        local.entry(pod.ip).or_insert(pod);
    }
    let ids = ids::endpoint_ids(local.keys().copied(), hints);

    let mut sorted: Vec<&NetworkPolicy> = input.policies.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |p: &NetworkPolicy| (p.metadata.namespace.clone(), p.metadata.name.clone());
        key(a).cmp(&key(b))
    });
    let mut rule_ids = ids::RuleIds::new(&hints.rules);
    let mut compiled: Vec<rules::CompiledPolicy> = sorted
        .into_iter()
        .map(|p| rules::compile(p, &cluster, &mut rule_ids))
        .collect();

    let mut state = PolicyState {
        rule_table: rule_ids.into_table(),
        ..PolicyState::default()
    };
    let object = |name: &PolicyName| ObjectRef {
        kind: "NetworkPolicy",
        namespace: Some(name.namespace.clone()),
        name: name.name.clone(),
    };
    for policy in &mut compiled {
        for reason in std::mem::take(&mut policy.errors) {
            state.errors.push(ObjectError {
                object: object(&policy.name),
                reason,
            });
        }
    }

    for (ip, pod) in &local {
        let Some(&id) = ids.get(ip) else { continue };
        let mut info = EndpointInfo {
            pod: format!("{}/{}", pod.namespace, pod.name),
            ip: *ip,
            ingress: Vec::new(),
            egress: Vec::new(),
        };
        let mut flags = 0;
        for direction in [Direction::Ingress, Direction::Egress] {
            let mut applying = Vec::new();
            for policy in compiled.iter().filter(|p| p.selected.contains(ip)) {
                if let Some(rules) = policy.directions.get(&direction) {
                    flags |= direction.flag();
                    applying.extend(rules);
                    state.policies.insert(policy.name.clone());
                    match direction {
                        Direction::Ingress => info.ingress.push(policy.name.clone()),
                        Direction::Egress => info.egress.push(policy.name.clone()),
                    }
                }
            }
            if flags & direction.flag() == 0 {
                continue;
            }
            for overflow in trie::entries(pod, id, direction, &applying, &mut state.rules) {
                let policies: BTreeSet<&PolicyName> = overflow
                    .rules
                    .iter()
                    .filter_map(|r| state.rule_table.get(r).map(|r| &r.policy))
                    .collect();
                for name in policies {
                    state.errors.push(ObjectError {
                        object: object(name),
                        reason: Reason::TooManyPortRanges {
                            pod: info.pod.clone(),
                            direction: direction.as_str(),
                            prefix: overflow.prefix.to_string(),
                            count: overflow.count,
                            max: POLICY_MAX_PORT_RANGES,
                        },
                    });
                }
            }
        }
        state.endpoints.insert(*ip, PolicyEndpoint { id, flags, pad: 0 });
        state.endpoint_info.insert(id, info);
    }
    state
}
