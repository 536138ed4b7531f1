//! Sources of Kubernetes objects. Each produces the same [`Objects`], so
//! everything after the source is one code path.

pub mod apiserver;
pub mod dir;

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The objects the desired state is computed from.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub slices: Vec<EndpointSlice>,
    /// Nodes (this node's podCIDR; routes to the others).
    pub nodes: Vec<Node>,
    /// Pods (policy subjects; the Kubernetes source lists this node's only).
    pub pods: Vec<Pod>,
    /// Namespaces (their labels select policy peers).
    pub namespaces: Vec<Namespace>,
    /// `NetworkPolicies`.
    pub network_policies: Vec<NetworkPolicy>,
}

impl Objects {
    /// How many objects of each resource (plural API names).
    #[must_use]
    pub fn counts(&self) -> [(&'static str, usize); 6] {
        [
            ("services", self.services.len()),
            ("endpointslices", self.slices.len()),
            ("nodes", self.nodes.len()),
            ("pods", self.pods.len()),
            ("namespaces", self.namespaces.len()),
            ("networkpolicies", self.network_policies.len()),
        ]
    }
}

/// Drops what no consumer reads but every object carries, before an object
/// is stored: `managedFields` is often larger than the rest of the object,
/// and a node agent holds every Service and EndpointSlice of the cluster.
pub fn trim<K: Metadata<Ty = ObjectMeta>>(object: &mut K) {
    object.metadata_mut().managed_fields = None;
}
