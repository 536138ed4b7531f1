//! Nodes → this node's podCIDR and the host-gw routes to every other node's
//! pods.
//!
//! Each node hands out pod addresses from its own podCIDR and the nodes share
//! one L2 segment, so a pod on another node is reached by routing its
//! podCIDR via that node's InternalIP: no tunnel, no NAT, the source pod IP is
//! kept end to end (host-gw, as flannel and Calico without overlay do it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;

use super::{ObjectError, ObjectRef, Reason};

/// This node, as its Node object describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    /// `metadata.name`.
    pub name: String,
    /// The IPv4 podCIDR the CNI plugin allocates from, once assigned.
    pub pod_cidr: Option<Ipv4Network>,
    /// Its InternalIP, if it has an IPv4 one.
    pub internal_ip: Option<Ipv4Addr>,
}

/// A route to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRoute {
    /// The other node's podCIDR.
    pub pod_cidr: Ipv4Network,
    /// The other node's InternalIP (the next hop).
    pub via: Ipv4Addr,
}

/// What the node-level plumbing should look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// This node; `None` until its Node object is known.
    pub local: Option<LocalNode>,
    /// Routes to the other nodes' pods, keyed by podCIDR.
    pub routes: BTreeMap<Ipv4Network, Ipv4Addr>,
    /// Every node's InternalIP, this node's included.
    pub node_ips: BTreeSet<Ipv4Addr>,
}

impl NodeState {
    /// The routes as a list.
    #[must_use]
    pub fn route_list(&self) -> Vec<NodeRoute> {
        self.routes
            .iter()
            .map(|(pod_cidr, via)| NodeRoute {
                pod_cidr: *pod_cidr,
                via: *via,
            })
            .collect()
    }
}

/// Computes the node state for the node called `this_node`. Nodes without a
/// podCIDR or without an IPv4 InternalIP get no route (yet): they are not
/// errors, just not ready. A node whose podCIDR is invalid or overlaps one
/// already taken is reported and skipped.
#[must_use]
pub fn compute_nodes<N: std::borrow::Borrow<Node>>(
    nodes: &[N],
    this_node: &str,
) -> (NodeState, Vec<ObjectError>) {
    let mut errors = Vec::new();
    let mut state = NodeState::default();
    let mut sorted: Vec<&Node> = nodes.iter().map(std::borrow::Borrow::borrow).collect();
    // This node first, so its podCIDR wins any overlap; then by name.
    sorted.sort_by_key(|n| {
        (
            n.metadata.name.as_deref() != Some(this_node),
            n.metadata.name.clone(),
        )
    });
    let mut taken: Vec<(Ipv4Network, String)> = Vec::new();

    for node in sorted {
        let name = node.metadata.name.clone().unwrap_or_default();
        let object = ObjectRef {
            kind: "Node",
            namespace: None,
            name: name.clone(),
        };
        let pod_cidr = match pod_cidr(node) {
            Ok(cidr) => cidr,
            Err(reason) => {
                errors.push(ObjectError {
                    object: object.clone(),
                    reason,
                });
                None
            }
        };
        if let Some(cidr) = pod_cidr
            && let Some((other_cidr, other)) = taken.iter().find(|(t, _)| t.overlaps(cidr))
        {
            let reason = Reason::OverlappingPodCidr {
                cidr: cidr.to_string(),
                other: other.clone(),
                other_cidr: other_cidr.to_string(),
            };
            errors.push(ObjectError { object, reason });
            continue;
        }
        if let Some(cidr) = pod_cidr {
            taken.push((cidr, name.clone()));
        }
        let internal_ip = internal_ip(node);
        state.node_ips.extend(internal_ip);
        if name == this_node {
            state.local = Some(LocalNode {
                name,
                pod_cidr,
                internal_ip,
            });
        } else if let (Some(cidr), Some(via)) = (pod_cidr, internal_ip) {
            state.routes.insert(cidr, via);
        }
    }
    (state, errors)
}

/// The first IPv4 entry of `spec.podCIDRs` (or `spec.podCIDR`).
fn pod_cidr(node: &Node) -> Result<Option<Ipv4Network>, Reason> {
    let Some(spec) = &node.spec else { return Ok(None) };
    let listed: Vec<&String> = match &spec.pod_cidrs {
        Some(cidrs) if !cidrs.is_empty() => cidrs.iter().collect(),
        _ => spec.pod_cidr.iter().collect(),
    };
    for cidr in listed {
        if cidr.is_empty() || cidr.contains(':') {
            continue; // Unset, or IPv6 (which comes with dual-stack support).
        }
        let network: Ipv4Network = cidr.parse().map_err(|_| Reason::BadPodCidr(cidr.clone()))?;
        // "10.244.1.7/24" is not a network: the API server would reject it.
        if network.ip() != network.network() {
            return Err(Reason::BadPodCidr(cidr.clone()));
        }
        return Ok(Some(network));
    }
    Ok(None)
}

/// The node's first IPv4 InternalIP.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, ip: &str) -> Node {
        serde_yaml::from_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDR: '{cidr}'}}\n\
             status: {{addresses: [{{type: Hostname, address: {name}}}, {{type: InternalIP, address: '{ip}'}}]}}"
        ))
        .unwrap()
    }

    #[test]
    fn routes_go_to_every_other_node_and_the_local_node_is_found() {
        let nodes = [
            node("n1", "10.244.1.0/24", "198.18.0.11"),
            node("n2", "10.244.2.0/24", "198.18.0.12"),
            node("n3", "10.244.3.0/24", "198.18.0.13"),
        ];
        let (state, errors) = compute_nodes(&nodes, "n2");
        assert!(errors.is_empty(), "{errors:?}");
        let local = state.local.as_ref().unwrap();
        assert_eq!(local.pod_cidr, Some("10.244.2.0/24".parse().unwrap()));
        let routes: Vec<String> = state
            .route_list()
            .iter()
            .map(|r| format!("{} via {}", r.pod_cidr, r.via))
            .collect();
        assert_eq!(
            routes,
            ["10.244.1.0/24 via 198.18.0.11", "10.244.3.0/24 via 198.18.0.13"]
        );
    }

    #[test]
    fn nodes_without_cidr_or_address_get_no_route_and_no_error() {
        let mut no_ip = node("n3", "10.244.3.0/24", "x");
        no_ip.status = None;
        let nodes = [
            node("n1", "", "198.18.0.11"),
            node("n2", "10.244.2.0/24", "198.18.0.12"),
            no_ip,
        ];
        let (state, errors) = compute_nodes(&nodes, "n2");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(state.routes.is_empty());
    }

    #[test]
    fn bad_and_overlapping_cidrs_are_reported_and_skipped() {
        let nodes = [
            node("n1", "10.244.1.0/24", "198.18.0.11"),
            node("bad", "10.244.300.0/24", "198.18.0.12"),
            node("host-bits", "10.244.4.1/24", "198.18.0.14"),
            node("overlap", "10.244.0.0/16", "198.18.0.13"),
            node("ok", "10.244.5.0/24", "198.18.0.15"),
        ];
        let (state, errors) = compute_nodes(&nodes, "n1");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(matches!(
            errors.iter().find(|e| e.object.name == "overlap").unwrap().reason,
            Reason::OverlappingPodCidr { .. }
        ));
        assert_eq!(state.routes.len(), 1);
    }

    #[test]
    fn unknown_local_node_leaves_local_empty() {
        let (state, _) = compute_nodes(&[node("n1", "10.244.1.0/24", "198.18.0.11")], "elsewhere");
        assert!(state.local.is_none());
        assert_eq!(state.routes.len(), 1);
    }
}
