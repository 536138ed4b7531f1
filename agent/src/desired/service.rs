//! Services + EndpointSlices → frontends and their backends, with the rules
//! kube-proxy applies (pkg/proxy/servicechangetracker.go, endpointslicecache.go).

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::source::slim::{EndpointSlice, Service, ServicePort, ServiceSpec};

use super::cache::ServiceCache;
use super::endpoints::{self, Endpoint};
use super::{
    Algorithm, DesiredState, FrontendState, HealthCheck, L4Addr, ObjectError, ObjectRef, Protocol, Reason,
    Scope, ServiceName,
};

/// Computes the desired load-balancer state for the node described by
/// `scope`. Objects that cannot be used are reported in the returned errors
/// and left out; everything else is kept. (The agent keeps a
/// [`ServiceCache`] instead, which recomputes only what changed.)
#[must_use]
pub fn compute<S: Borrow<Service>, E: Borrow<EndpointSlice>>(
    services: &[S],
    slices: &[E],
    scope: &Scope,
) -> (DesiredState, Vec<ObjectError>) {
    let services: Vec<Arc<Service>> = services.iter().map(|s| Arc::new(s.borrow().clone())).collect();
    let slices: Vec<Arc<EndpointSlice>> = slices.iter().map(|s| Arc::new(s.borrow().clone())).collect();
    let mut cache = ServiceCache::default();
    cache.update(&services, &slices, scope);
    (cache.state().clone(), cache.errors())
}

/// What one Service adds to the desired state. It depends on the Service,
/// its own slices and the scope only, so it is computed once per change of
/// those and kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Contribution {
    /// Its frontends, each once.
    pub frontends: Vec<(L4Addr, FrontendState)>,
    /// Its endpoints that are local to this node.
    pub local_backends: BTreeSet<Ipv4Addr>,
    /// Its `healthCheckNodePort` and what that answers.
    pub health_check: Option<(u16, HealthCheck)>,
    /// What is wrong with the Service or its slices.
    pub errors: Vec<ObjectError>,
}

/// The contribution of `svc` with its `slices`.
pub(super) fn contribution(svc: &Service, slices: &[&EndpointSlice], scope: &Scope) -> Contribution {
    let mut builder = ServiceBuilder {
        name: service_name(svc),
        scope,
        out: Contribution::default(),
    };
    // ExternalName Services are DNS aliases: nothing to program.
    if let Some(spec) = &svc.spec
        && spec.type_.as_deref() != Some("ExternalName")
    {
        builder.add(svc, spec, slices);
    }
    builder.out
}

/// Computes one Service's contribution.
struct ServiceBuilder<'a> {
    name: ServiceName,
    scope: &'a Scope,
    out: Contribution,
}

impl ServiceBuilder<'_> {
    fn error(&mut self, reason: Reason) {
        self.out.errors.push(ObjectError {
            object: ObjectRef {
                kind: "Service",
                namespace: Some(self.name.namespace.clone()),
                name: self.name.name.clone(),
            },
            reason,
        });
    }

    fn add(&mut self, svc: &Service, spec: &ServiceSpec, slices: &[&EndpointSlice]) {
        let vips = match cluster_ips(spec.cluster_ip.as_deref(), spec.cluster_ips.as_deref()) {
            Ok(vips) => vips,
            Err(reason) => return self.error(reason),
        };
        let affinity_timeout = match affinity_timeout(spec) {
            Ok(timeout) => timeout,
            Err(reason) => return self.error(reason),
        };
        let node = self.scope.node_name.as_deref();
        // Traffic policies `Local`: only endpoints on this node (without a
        // node name, locality is unknown and every endpoint counts).
        let internal_local = (spec.internal_traffic_policy.as_deref() == Some("Local"))
            .then_some(node)
            .flatten();
        let external_local = (spec.external_traffic_policy.as_deref() == Some("Local"))
            .then_some(node)
            .flatten();
        let external_ips = external_addresses(svc, spec);
        let node_port_type = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let annotation = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALGORITHM_ANNOTATION));
        let algorithm = match annotation.map(|a| a.parse::<Algorithm>()) {
            None => self.scope.algorithm,
            Some(Ok(algorithm)) => algorithm,
            Some(Err(message)) => {
                self.error(Reason::BadAnnotation {
                    annotation: ALGORITHM_ANNOTATION,
                    message,
                });
                self.scope.algorithm
            }
        };
        let maglev = (algorithm == Algorithm::Maglev).then_some(self.scope.maglev_table_size);
        let mut local_endpoints = BTreeSet::new();

        for port in spec.ports.iter().flatten() {
            let (service_port, proto) = match port_and_protocol(port.port, port.protocol.as_deref()) {
                Ok(pp) => pp,
                Err(reason) => {
                    self.error(reason);
                    continue;
                }
            };
            let endpoints = endpoints_for(port, proto, slices, &mut self.out.errors);
            // Local for the datapath (no SNAT, no trip over the uplink): on
            // this node by name, or by address — in its podCIDR or one of its
            // own addresses (hostNetwork), which holds even for a slice
            // written without `nodeName`.
            for e in endpoints.iter().filter(|e| {
                (node.is_some() && e.node.as_deref() == node)
                    || self.scope.pod_cidr.is_some_and(|cidr| cidr.contains(e.addr.ip))
                    || self.scope.node_addresses.contains(&e.addr.ip)
            }) {
                self.out.local_backends.insert(e.addr.ip);
            }
            let internal = endpoints::select(&endpoints, internal_local);
            let external = endpoints::select(&endpoints, external_local);
            local_endpoints.extend(
                external
                    .iter()
                    .filter(|b| self.out.local_backends.contains(&b.ip))
                    .map(|b| b.ip),
            );

            let mut frontends: Vec<(Ipv4Addr, u16, bool)> =
                vips.iter().map(|ip| (*ip, service_port, false)).collect();
            frontends.extend(external_ips.iter().map(|ip| (*ip, service_port, true)));
            if node_port_type && let Some(node_port) = port.node_port {
                match self.node_port(node_port) {
                    Ok(np) => frontends.extend(self.scope.node_addresses.iter().map(|ip| (*ip, np, true))),
                    Err(reason) => self.error(reason),
                }
            }
            for (ip, frontend_port, is_external) in frontends {
                let backends = if is_external { &external } else { &internal };
                let frontend = L4Addr {
                    ip,
                    port: frontend_port,
                    proto,
                };
                let entry = FrontendState {
                    service: self.name.clone(),
                    backends: backends.clone(),
                    affinity_timeout,
                    external: is_external,
                    // Maglev is for the per-packet path; sockets pick at random.
                    maglev: maglev.filter(|_| is_external),
                };
                self.insert(frontend, entry);
            }
        }
        if external_local.is_some()
            && node_port_type
            && let Some(port) = spec.health_check_node_port
        {
            match self.node_port(port) {
                Ok(port) => {
                    let check = HealthCheck {
                        service: self.name.clone(),
                        local_endpoints: local_endpoints.len(),
                    };
                    self.out.health_check = Some((port, check));
                }
                Err(reason) => self.error(reason),
            }
        }
    }

    /// A nodePort (or healthCheckNodePort) inside the configured range.
    fn node_port(&self, port: i32) -> Result<u16, Reason> {
        match u16::try_from(port) {
            Ok(p) if self.scope.node_port_range.contains(&p) => Ok(p),
            _ => Err(Reason::NodePortOutOfRange {
                port,
                min: *self.scope.node_port_range.start(),
                max: *self.scope.node_port_range.end(),
            }),
        }
    }

    /// Two ports (or a ClusterIP that is also an external IP) of one
    /// Service can name one frontend: the first keeps it. Between Services,
    /// [`ServiceCache`] decides.
    fn insert(&mut self, frontend: L4Addr, entry: FrontendState) {
        if self.out.frontends.iter().any(|(f, _)| *f == frontend) {
            let owner = self.name.clone();
            return self.error(Reason::DuplicateFrontend { frontend, owner });
        }
        self.out.frontends.push((frontend, entry));
    }
}

/// `spec.externalIPs` and the LoadBalancer's `status.loadBalancer.ingress`
/// IPs (IPv4; hostnames and invalid addresses are ignored, as kube-proxy does).
fn external_addresses(svc: &Service, spec: &ServiceSpec) -> Vec<Ipv4Addr> {
    let listed = spec.external_ips.iter().flatten().cloned();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone());
    let mut ips: Vec<Ipv4Addr> = listed.chain(ingress).filter_map(|ip| ip.parse().ok()).collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// Per-Service override of the external load-balancing algorithm.
pub const ALGORITHM_ANNOTATION: &str = "weir.dev/lb-algorithm";

/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10_800;
/// Largest timeout the API server accepts (1 day).
const MAX_AFFINITY_TIMEOUT: i32 = 86_400;

/// The ClientIP affinity timeout, or `None` without affinity.
fn affinity_timeout(spec: &ServiceSpec) -> Result<Option<u32>, Reason> {
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return Ok(None);
    }
    let seconds = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
    match u32::try_from(seconds) {
        Ok(s) if (1..=MAX_AFFINITY_TIMEOUT).contains(&seconds) => Ok(Some(s)),
        _ => Err(Reason::AffinityTimeoutOutOfRange(seconds)),
    }
}

pub(super) fn service_name(svc: &Service) -> ServiceName {
    ServiceName {
        namespace: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: svc.metadata.name.clone().unwrap_or_default(),
    }
}

/// The Service an IPv4 slice belongs to: the one named in its label, in
/// its namespace. Other slices serve no IPv4 frontend.
pub(super) fn service_of(slice: &EndpointSlice) -> Option<ServiceName> {
    if slice.address_type != "IPv4" {
        return None;
    }
    let service = slice.service_name()?;
    Some(ServiceName {
        namespace: slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: service.to_owned(),
    })
}

/// The IPv4 ClusterIPs of a Service; empty for headless Services ("None").
fn cluster_ips(cluster_ip: Option<&str>, cluster_ips: Option<&[String]>) -> Result<Vec<Ipv4Addr>, Reason> {
    let listed: Vec<&str> = match cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => cluster_ip.into_iter().collect(),
    };
    let mut vips = Vec::new();
    for ip in listed {
        if ip.is_empty() || ip == "None" {
            continue;
        }
        match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => vips.push(v4),
            // IPv6 frontends come with dual-stack support; not an error.
            Ok(std::net::IpAddr::V6(_)) => {}
            Err(_) => return Err(Reason::BadClusterIp(ip.to_owned())),
        }
    }
    Ok(vips)
}

/// Validates a port number and protocol (default TCP, as the API defaults it).
fn port_and_protocol(port: i32, protocol: Option<&str>) -> Result<(u16, Protocol), Reason> {
    let proto = match protocol.unwrap_or("TCP") {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        other => return Err(Reason::UnsupportedProtocol(other.to_owned())),
    };
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok((p, proto)),
        _ => Err(Reason::PortOutOfRange(port)),
    }
}

/// All endpoints of one Service port, with their conditions. The
/// EndpointSlice controller has already resolved `targetPort` (numeric or
/// named) into each slice's ports, so the slice port with the Service port's
/// name carries the backend port.
fn endpoints_for(
    port: &ServicePort,
    proto: Protocol,
    slices: &[&EndpointSlice],
    errors: &mut Vec<ObjectError>,
) -> Vec<Endpoint> {
    let want_name = port.name.as_deref().unwrap_or("");
    let mut endpoints = Vec::new();
    for slice in slices {
        let object = ObjectRef {
            kind: "EndpointSlice",
            namespace: Some(
                slice
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            name: slice.metadata.name.clone().unwrap_or_default(),
        };
        for slice_port in slice.ports.iter().flatten() {
            if slice_port.name.as_deref().unwrap_or("") != want_name {
                continue;
            }
            // A slice port without a number means "all ports"; it cannot back
            // a ClusterIP port, so it is skipped like kube-proxy does.
            let Some(number) = slice_port.port else { continue };
            let backend_port = match port_and_protocol(number, slice_port.protocol.as_deref()) {
                Ok((p, pr)) if pr == proto => p,
                Ok(_) => continue,
                Err(reason) => {
                    errors.push(ObjectError {
                        object: object.clone(),
                        reason,
                    });
                    continue;
                }
            };
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.as_ref();
                // Defaults from the discovery.k8s.io/v1 API documentation.
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                for address in &endpoint.addresses {
                    match address.parse::<Ipv4Addr>() {
                        Ok(ip) => endpoints.push(Endpoint {
                            addr: L4Addr {
                                ip,
                                port: backend_port,
                                proto,
                            },
                            ready,
                            serving,
                            terminating,
                            node: endpoint.node_name.clone(),
                        }),
                        Err(_) => errors.push(ObjectError {
                            object: object.clone(),
                            reason: Reason::BadEndpointAddress(address.clone()),
                        }),
                    }
                }
            }
        }
    }
    endpoints
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
