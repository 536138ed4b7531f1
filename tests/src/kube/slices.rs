//! EndpointSlices from Services and Pods, the way Kubernetes' EndpointSlice
//! controller makes them (`pkg/controller/endpointslice`, `utils.go`).
//!
//! - a Service without a selector (or of type ExternalName) gets none: its
//!   slices are the user's to write;
//! - selected: pods in the Service's namespace whose labels contain the
//!   selector, that have an IP and are not Succeeded/Failed;
//! - per pod, the Service ports resolve to endpoint ports: a numeric
//!   targetPort as is, a named one through the pod's container port of that
//!   name *and protocol* (a pod without it gets no such port); pods whose ports
//!   resolve alike share slices, others get their own — which is how one
//!   Service can send port `http` to 8080 on some pods and 9090 on others;
//! - conditions: `serving` = Ready (or publishNotReadyAddresses), `terminating`
//!   = deletionTimestamp set, `ready` = serving and not terminating (or
//!   publishNotReadyAddresses);
//! - at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice; a Service that
//!   selects nothing keeps one empty placeholder slice.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pods::declared_ready;

/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// The EndpointSlice controller's value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// The controller's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The API server's defaults for a Service: ports are TCP, targetPort is
/// the port.
pub(crate) fn default_service(service: &mut Service) {
    let Some(spec) = service.spec.as_mut() else { return };
    for port in spec.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_owned());
        if matches!(port.target_port, None | Some(IntOrString::Int(0))) {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

/// The EndpointSlices the controller keeps for `service`, given every pod as
/// observed (with `status.podIP`). Deterministic: the same input gives the same
/// names and order, so rewriting them changes nothing.
#[must_use]
pub fn endpoint_slices(service: &Service, pods: &[Pod]) -> Vec<EndpointSlice> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let selector = match &spec.selector {
        Some(selector) if !selector.is_empty() => selector,
        _ => return Vec::new(),
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let service_ports = spec.ports.as_deref().unwrap_or_default();

    // Pods grouped by how the Service's ports resolve on them.
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    let mut selected: Vec<&Pod> = pods
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
        })
        .filter(|pod| in_endpoints(pod))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in selected {
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| endpoint_port(port, pod))
            .collect();
        let group = groups
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()));
        group.1.push(endpoint(pod, publish_not_ready));
    }

    if groups.is_empty() {
        return vec![slice(service, &ports_key(&[]), 0, Vec::new(), Vec::new())];
    }
    let mut slices = Vec::new();
    for (key, (ports, endpoints)) in groups {
        for (chunk, endpoints) in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            slices.push(slice(service, &key, chunk, ports.clone(), endpoints.to_vec()));
        }
    }
    slices
}

/// Pods with an IP that have not finished (`shouldPodBeInEndpoints`).
fn in_endpoints(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    !finished && status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
}

/// The endpoint port `port` resolves to on `pod` (`podutil.FindPort`); `None`
/// when a named targetPort has no container port of that name and protocol.
fn endpoint_port(port: &ServicePort, pod: &Pod) -> Option<EndpointPort> {
    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
    let number = match port.target_port.as_ref() {
        None => port.port,
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_ref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })?
                .container_port
        }
    };
    Some(EndpointPort {
        name: Some(port.name.clone().unwrap_or_default()),
        port: Some(number),
        protocol: Some(protocol),
        app_protocol: port.app_protocol.clone(),
    })
}

/// A grouping key for a pod's resolved ports.
fn ports_key(ports: &[EndpointPort]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.protocol.as_deref().unwrap_or(""),
                p.port.unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The endpoint of one selected pod (`podToEndpoint`).
fn endpoint(pod: &Pod, publish_not_ready: bool) -> Endpoint {
    let status = pod.status.as_ref();
    let serving = publish_not_ready || declared_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready || (serving && !terminating);
    Endpoint {
        addresses: vec![status.and_then(|s| s.pod_ip.clone()).unwrap_or_default()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// One slice of `service` for the port group `key`.
fn slice(
    service: &Service,
    key: &str,
    chunk: usize,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let service_name = service.metadata.name.clone().unwrap_or_default();
    // The controller names slices `<service>-<random>`; a hash of the port
    // group keeps the lab's names stable across applies.
    let mut name = format!("{service_name}-{:05x}", fnv1a(key) & 0xf_ffff);
    if chunk > 0 {
        name = format!("{name}-{chunk}");
    }
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.to_owned(), service_name);
    labels.insert(MANAGED_BY_LABEL.to_owned(), CONTROLLER_NAME.to_owned());
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: Some(endpoints),
        ports: Some(ports),
    }
}

/// FNV-1a, 32 bits: a stable hash with no dependency.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
#[path = "slices_tests.rs"]
mod tests;
