//! The pods and namespaces policies are evaluated against.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};

use super::ports::protocol_number;

/// The label the API server puts on every Namespace (immutable, since
/// Kubernetes 1.21); policies commonly select namespaces by it, so it is
/// added when an object (a manifest, a test) lacks it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A pod that can be a policy peer or endpoint: not on the host network,
/// not terminated, with an IPv4 address.
#[derive(Debug)]
pub struct PodView<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Runs on this node: a policy endpoint.
    pub local: bool,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The object, for its container ports.
    pub pod: &'a Pod,
}

impl PodView<'_> {
    /// Ports of its containers named `name` for protocol `proto`.
    pub fn named_ports(&self, name: &str, proto: u8) -> Vec<u16> {
        let Some(spec) = &self.pod.spec else {
            return Vec::new();
        };
        spec.containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.name.as_deref() == Some(name))
            .filter(|p| protocol_number(p.protocol.as_deref()).ok() == Some(proto))
            .filter_map(|p| u16::try_from(p.container_port).ok().filter(|n| *n != 0))
            .collect()
    }
}

/// Every pod that can be a peer, sorted by namespace and name, and the
/// labels of every namespace.
#[derive(Debug)]
pub struct Cluster<'a> {
    /// Pods, sorted by namespace/name.
    pub pods: Vec<PodView<'a>>,
    namespaces: BTreeMap<&'a str, BTreeMap<String, String>>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl<'a> Cluster<'a> {
    /// Indexes `pods` (all of the cluster's) and `namespaces`;
    /// `node_name` decides which pods are local endpoints.
    pub fn new(pods: &'a [Pod], namespaces: &'a [Namespace], node_name: &str) -> Self {
        let mut views: Vec<PodView<'a>> = pods.iter().filter_map(|pod| view(pod, node_name)).collect();
        views.sort_by(|a, b| (a.namespace, a.name).cmp(&(b.namespace, b.name)));
        let mut namespaces: BTreeMap<&'a str, BTreeMap<String, String>> = namespaces
            .iter()
            .filter_map(|ns| {
                let name = ns.metadata.name.as_deref()?;
                let mut labels = ns.metadata.labels.clone().unwrap_or_default();
                labels
                    .entry(NAMESPACE_NAME_LABEL.into())
                    .or_insert_with(|| name.into());
                Some((name, labels))
            })
            .collect();
        // A namespace not (yet) known has only its name label, so `{}` and
        // a name selector still match its pods.
        for pod in &views {
            namespaces.entry(pod.namespace).or_insert_with(|| {
                BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), pod.namespace.to_owned())])
            });
        }
        Self {
            pods: views,
            namespaces,
        }
    }

    /// Labels of namespace `name` (every namespace of a pod is known).
    pub fn namespace_labels(&self, name: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(name).unwrap_or(&NO_LABELS)
    }
}

/// The pod as a peer/endpoint, or `None` when policies cannot name it:
/// host-network pods (their address is the node's, reachable through
/// ipBlocks only, as upstream), terminated pods (their address may already
/// belong to another pod) and pods without an IPv4 address.
fn view<'a>(pod: &'a Pod, node_name: &str) -> Option<PodView<'a>> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network) == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip = status
        .pod_ip
        .iter()
        .chain(status.pod_ips.iter().flatten().map(|p| &p.ip))
        .find_map(|ip| ip.parse::<Ipv4Addr>().ok())?;
    Some(PodView {
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        name: pod.metadata.name.as_deref().unwrap_or_default(),
        ip,
        local: spec.and_then(|s| s.node_name.as_deref()) == Some(node_name),
        labels: pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
        pod,
    })
}
