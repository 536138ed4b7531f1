//! The Services as `/v1/services` shows them: the frontends and backends the
//! last pass computed, with what the Service spec and its EndpointSlices
//! say about them (type, frontend kind, endpoint conditions, policies).
//!
//! Built from the same objects the desired state was computed from, after
//! it: the desired state keeps only what the maps need, and the operator
//! also wants the endpoints that get no traffic and why.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::source::slim::{EndpointSlice, Service};

use super::api::{BackendDoc, FrontendDoc, PodDoc, ServiceDoc};
use crate::desired::ALGORITHM_ANNOTATION;
use crate::desired::{Algorithm, L4Addr, Scope, ServiceCache, ServiceName};

/// Every pod with an IPv4 address of its own, sorted by namespace and name.
/// Host-network pods are left out: their address is their node's, and
/// naming a node address after one of its pods would mislead.
#[must_use]
pub fn pods<P: std::borrow::Borrow<Pod>>(pods: &[P]) -> Vec<PodDoc> {
    let mut docs: Vec<PodDoc> = pods
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|p| !p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            Some(PodDoc {
                pod: format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or("default"),
                    p.metadata.name.as_deref()?
                ),
                ip,
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            })
        })
        .collect();
    docs.sort_by(|a, b| a.pod.cmp(&b.pod));
    docs
}

/// What one Service's document is made from, kept between passes. The
/// document itself is made when asked for: 10k rendered documents held
/// more memory than the whole desired state.
#[derive(Debug, Clone)]
pub struct ServiceInputs {
    /// The Service (shared with the source).
    service: Arc<Service>,
    /// Its slices (shared with the source).
    slices: Vec<Arc<EndpointSlice>>,
    /// The frontends it holds and their backends, by address.
    frontends: Vec<(L4Addr, Vec<L4Addr>)>,
}

/// What Service `name`'s document is made from, as `cache` last computed
/// it; `None` when it has no frontend in the desired state (it is gone,
/// headless, invalid, or lost all its frontends to other Services).
#[must_use]
pub fn service(cache: &ServiceCache, name: &ServiceName) -> Option<ServiceInputs> {
    let entry = cache.service(name)?;
    if entry.frontends.is_empty() {
        return None;
    }
    Some(ServiceInputs {
        service: Arc::clone(entry.service),
        slices: entry.slices.into_iter().cloned().collect(),
        frontends: entry
            .frontends
            .into_iter()
            .map(|(addr, state)| (*addr, state.backends.clone()))
            .collect(),
    })
}

/// The document of Service `name`.
#[must_use]
pub fn document(inputs: &ServiceInputs, name: ServiceName, scope: &Scope) -> ServiceDoc {
    let svc = &inputs.service;
    let programmed = &inputs.frontends;
    let slices: Vec<&EndpointSlice> = inputs.slices.iter().map(AsRef::as_ref).collect();
    let slices = slices.as_slice();
    let spec = svc.spec.clone().unwrap_or_default();
    let parse =
        |ips: &[String]| -> BTreeSet<Ipv4Addr> { ips.iter().filter_map(|ip| ip.parse().ok()).collect() };
    let mut cluster_ips = parse(spec.cluster_ips.as_deref().unwrap_or_default());
    cluster_ips.extend(
        spec.cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
    );
    let external_ips = parse(spec.external_ips.as_deref().unwrap_or_default());
    let kind = |ip: &Ipv4Addr| {
        if cluster_ips.contains(ip) {
            "clusterIP"
        } else if external_ips.contains(ip) {
            "externalIP"
        } else if scope.node_addresses.contains(ip) {
            "nodePort"
        } else {
            "loadBalancer"
        }
    };
    let in_use: BTreeSet<L4Addr> = programmed.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let frontends = programmed
        .iter()
        .map(|(addr, backends)| FrontendDoc {
            address: addr.to_string(),
            kind: kind(&addr.ip).to_owned(),
            backends: backends.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let annotation = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALGORITHM_ANNOTATION))
        .and_then(|a| a.parse::<Algorithm>().ok());
    let algorithm = match annotation.unwrap_or(scope.algorithm) {
        Algorithm::Random => "random",
        Algorithm::Maglev => "maglev",
    };
    let affinity = spec.session_affinity.clone().unwrap_or_else(|| "None".into());
    let affinity_timeout_seconds = (affinity == "ClientIP").then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(10_800)
    });
    ServiceDoc {
        backends: backends(slices, &in_use),
        namespace: name.namespace,
        name: name.name,
        service_type: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        frontends,
        algorithm: algorithm.to_owned(),
        session_affinity: affinity,
        affinity_timeout_seconds,
        external_traffic_policy: spec
            .external_traffic_policy
            .clone()
            .unwrap_or_else(|| "Cluster".into()),
        internal_traffic_policy: spec
            .internal_traffic_policy
            .clone()
            .unwrap_or_else(|| "Cluster".into()),
    }
}

/// Every IPv4 endpoint × port of the Service's slices, once each.
fn backends(slices: &[&EndpointSlice], in_use: &BTreeSet<L4Addr>) -> Vec<BackendDoc> {
    let mut seen = BTreeMap::new();
    for slice in slices {
        for port in slice.ports.iter().flatten() {
            let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let proto = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => crate::desired::Protocol::Tcp,
                "UDP" => crate::desired::Protocol::Udp,
                _ => continue,
            };
            for endpoint in &slice.endpoints {
                let c = endpoint.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let state = match (ready, serving, terminating) {
                    (true, _, _) => "ready",
                    (false, true, true) => "serving",
                    (false, false, true) => "terminating",
                    _ => "not_ready",
                };
                for ip in endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                {
                    let addr = L4Addr {
                        ip,
                        port: number,
                        proto,
                    };
                    seen.entry(addr).or_insert_with(|| BackendDoc {
                        address: addr.to_string(),
                        node: endpoint.node_name.clone(),
                        state: state.to_owned(),
                        in_use: in_use.contains(&addr),
                    });
                }
            }
        }
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).expect("test YAML parses")
    }

    #[test]
    fn pods_with_their_own_address_are_listed_by_name() {
        let pods: Vec<Pod> = [
            "metadata: {name: b, namespace: x}\nspec: {nodeName: n2, containers: []}\nstatus: {podIP: 10.244.2.3}",
            "metadata: {name: a, namespace: x}\nspec: {nodeName: n1, containers: []}\nstatus: {podIP: 10.244.1.2}",
            "metadata: {name: h, namespace: x}\nspec: {hostNetwork: true, containers: []}\nstatus: {podIP: 198.18.0.11}",
            "metadata: {name: pending, namespace: x}\nspec: {containers: []}",
        ]
        .iter()
        .map(|yaml| parse(yaml))
        .collect();
        let docs = super::pods(&pods);
        let names: Vec<(&str, Ipv4Addr, Option<&str>)> = docs
            .iter()
            .map(|d| (d.pod.as_str(), d.ip, d.node.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("x/a", Ipv4Addr::new(10, 244, 1, 2), Some("n1")),
                ("x/b", Ipv4Addr::new(10, 244, 2, 3), Some("n2"))
            ]
        );
    }

    #[test]
    fn frontends_are_classified_and_backends_carry_their_state() {
        let svc: Service = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\n\
             spec: {type: NodePort, clusterIP: 10.96.0.5, externalIPs: [203.0.113.7],\n\
             externalTrafficPolicy: Local, sessionAffinity: ClientIP,\n\
             ports: [{name: http, port: 80, nodePort: 30080}]}",
        );
        let slice: EndpointSlice = parse(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web-1, namespace: x, labels: {kubernetes.io/service-name: web}}\n\
             addressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n\
             - {addresses: [10.244.1.2], nodeName: n1, conditions: {ready: true}}\n\
             - {addresses: [10.244.2.2], nodeName: n2, conditions: {ready: false, serving: true, terminating: true}}\n\
             - {addresses: [10.244.2.3], nodeName: n2, conditions: {ready: false, serving: false}}",
        );
        let scope = Scope {
            node_name: Some("n1".into()),
            node_addresses: vec![Ipv4Addr::new(198, 18, 0, 11)],
            ..Scope::default()
        };
        let mut cache = ServiceCache::default();
        cache.update(&[Arc::new(svc)], &[Arc::new(slice)], &scope);
        assert!(cache.errors().is_empty(), "{:?}", cache.errors());
        let name = ServiceName {
            namespace: "x".into(),
            name: "web".into(),
        };
        let inputs = service(&cache, &name).expect("web has frontends");
        let doc = document(&inputs, name, &scope);
        assert_eq!(
            (doc.service_type.as_str(), doc.algorithm.as_str()),
            ("NodePort", "random")
        );
        assert_eq!(doc.affinity_timeout_seconds, Some(10_800));
        let kinds: Vec<(&str, &str)> = doc
            .frontends
            .iter()
            .map(|f| (f.address.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("10.96.0.5:80/TCP", "clusterIP"),
                ("198.18.0.11:30080/TCP", "nodePort"),
                ("203.0.113.7:80/TCP", "externalIP"),
            ]
        );
        let states: Vec<(&str, &str, bool)> = doc
            .backends
            .iter()
            .map(|b| (b.address.as_str(), b.state.as_str(), b.in_use))
            .collect();
        assert_eq!(
            states,
            [
                ("10.244.1.2:8080/TCP", "ready", true),
                ("10.244.2.2:8080/TCP", "serving", false),
                ("10.244.2.3:8080/TCP", "not_ready", false),
            ]
        );
    }
}
