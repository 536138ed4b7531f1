//! Sources of Kubernetes objects. Each produces the same [`Objects`], so
//! everything after the source is one code path.

pub mod dir;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The objects the desired state is computed from.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub slices: Vec<EndpointSlice>,
    /// Nodes (this node's podCIDR; routes to the others).
    pub nodes: Vec<Node>,
}
