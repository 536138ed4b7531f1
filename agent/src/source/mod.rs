//! Sources of Kubernetes objects. Each produces the same [`Objects`], so
//! everything after the source is one code path.

pub mod access;
pub mod apiserver;
pub mod dir;
pub mod slim;

pub use slim::{EndpointSlice, Service};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::sync::Arc;

/// The objects the desired state is computed from.
///
/// Objects are shared with the source, which hands out the same `Arc` for
/// an object that did not change since the last snapshot: a pass
/// recomputes only the Services whose objects are new (see
/// [`crate::desired::ServiceCache`]), leaves the node's routes and policies
/// alone when no Node, Pod, Namespace or NetworkPolicy changed, and a
/// snapshot copies no object.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices.
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Nodes (this node's podCIDR; routes to the others).
    pub nodes: Vec<Arc<Node>>,
    /// Pods (policy subjects and peers).
    pub pods: Vec<Arc<Pod>>,
    /// Namespaces (their labels select policy peers).
    pub namespaces: Vec<Arc<Namespace>>,
    /// `NetworkPolicies`.
    pub network_policies: Vec<Arc<NetworkPolicy>>,
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

/// What an object keeps when it is stored: both sources trim the same way.
pub trait Trim {
    /// Drops what no consumer reads. `managedFields` is often larger than
    /// the rest of the object, and a node agent holds every Service,
    /// EndpointSlice and Pod of the cluster.
    fn trim(&mut self);
}

fn trim_metadata(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
}

macro_rules! trim_metadata_only {
    ($($kind:ty),*) => {$(
        impl Trim for $kind {
            fn trim(&mut self) {
                trim_metadata(&mut self.metadata);
            }
        }
    )*};
}

trim_metadata_only!(Node, Namespace, NetworkPolicy);

impl Trim for Service {
    /// Of the metadata only weir's own annotations (the algorithm) stay:
    /// `kubectl apply` stores the whole object again in an annotation.
    fn trim(&mut self) {
        trim_metadata(&mut self.metadata);
        self.metadata.labels = None;
        self.metadata.owner_references = None;
        let annotations = self.metadata.annotations.take();
        self.metadata.annotations = slim::keep_only(annotations, |k| k.starts_with("weir.dev/"));
    }
}

impl Trim for EndpointSlice {
    /// Of the labels only the Service's name stays, in its own field.
    fn trim(&mut self) {
        trim_metadata(&mut self.metadata);
        self.metadata.annotations = None;
        self.metadata.owner_references = None;
        if let Some(mut labels) = self.metadata.labels.take() {
            self.service_name = labels
                .remove(slim::SERVICE_NAME_LABEL)
                .or(self.service_name.take());
        }
    }
}

impl Trim for Pod {
    /// Pods of every node are kept (a NetworkPolicy peer is a pod anywhere,
    /// known by its labels and IP), so only what policy and load balancing
    /// read stays: labels, node, host networking, container port names and
    /// numbers, phase and IPs.
    fn trim(&mut self) {
        trim_metadata(&mut self.metadata);
        self.metadata.annotations = None;
        self.metadata.owner_references = None;
        if let Some(spec) = &mut self.spec {
            let containers = std::mem::take(&mut spec.containers);
            *spec = k8s_openapi::api::core::v1::PodSpec {
                node_name: spec.node_name.take(),
                host_network: spec.host_network,
                containers: containers
                    .into_iter()
                    .map(|c| k8s_openapi::api::core::v1::Container {
                        name: c.name,
                        ports: c.ports,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
        }
        if let Some(status) = &mut self.status {
            *status = k8s_openapi::api::core::v1::PodStatus {
                phase: status.phase.take(),
                pod_ip: status.pod_ip.take(),
                pod_ips: status.pod_ips.take(),
                host_ip: status.host_ip.take(),
                ..Default::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_keep_what_policy_reads() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a"},
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "k"}]},
            "spec": {"nodeName": "node-1", "hostNetwork": false, "restartPolicy": "Always",
                     "containers": [{"name": "c", "image": "i", "args": ["serve"],
                                     "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": "10.244.1.2", "podIPs": [{"ip": "10.244.1.2"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        pod.trim();
        let json = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a"}},
                "spec": {"nodeName": "node-1", "hostNetwork": false,
                         "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": "10.244.1.2", "podIPs": [{"ip": "10.244.1.2"}]}
            })
        );
    }
}
