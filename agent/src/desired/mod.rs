//! Desired state: what the datapath should do, computed from Kubernetes
//! objects and independent of how the maps lay it out.

pub(crate) mod cache;
mod endpoints;
mod error;
mod node;
pub mod policy;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

pub use cache::{Changes, ServiceCache, ServiceEntry};
pub use endpoints::{Endpoint, select};
pub use error::{ObjectError, ObjectRef, Reason};
pub use node::{LocalNode, NodeRoute, NodeState, compute_nodes};
pub use policy::{IdHints, PolicyInput, PolicyState, compile as compile_policies};
pub use service::{ALGORITHM_ANNOTATION, compute};

/// Transport protocol of a frontend or backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The IP protocol number, as the kernel and the maps spell it.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => weir_common::IPPROTO_TCP,
            Protocol::Udp => weir_common::IPPROTO_UDP,
        }
    }

    /// The protocol for an IP protocol number, if weir serves it.
    #[must_use]
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            weir_common::IPPROTO_TCP => Some(Protocol::Tcp),
            weir_common::IPPROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// An IP protocol number as operators read it: `TCP`, `UDP`, `SCTP`,
/// `ICMP`, `ANY` (a policy port range of every protocol), else the number.
/// One spelling for logs, dumps, verdicts, the API and the CLI.
#[must_use]
pub fn protocol_name(number: u8) -> String {
    match number {
        weir_common::policy::PROTO_ANY => "ANY".to_owned(),
        1 => "ICMP".to_owned(),
        weir_common::IPPROTO_TCP => "TCP".to_owned(),
        weir_common::IPPROTO_UDP => "UDP".to_owned(),
        weir_common::policy::IPPROTO_SCTP => "SCTP".to_owned(),
        n => n.to_string(),
    }
}

/// An address, port and protocol: a frontend (VIP) or a backend (pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct L4Addr {
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Port, host byte order.
    pub port: u16,
    /// Transport protocol.
    pub proto: Protocol,
}

impl fmt::Display for L4Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.ip, self.port, self.proto)
    }
}

/// `namespace/name` of the Service a frontend belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One frontend and the backends it balances over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendState {
    /// The Service (and port name) this frontend comes from, for logs and status.
    pub service: ServiceName,
    /// Backends, sorted and without duplicates. Empty: connections are refused.
    pub backends: Vec<L4Addr>,
    /// `sessionAffinity: ClientIP`: a client sticks to its backend for this
    /// many seconds after its last connection.
    pub affinity_timeout: Option<u32>,
    /// Reachable from outside the node (NodePort, externalIP, LoadBalancer
    /// IP): also served per packet at the uplink, with the backends of the
    /// external traffic policy.
    pub external: bool,
    /// Per-packet traffic picks backends by Maglev with a table of this
    /// (prime) size; `None`: at random.
    pub maglev: Option<u32>,
}

/// How the per-packet path picks a backend for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Uniformly at random.
    #[default]
    Random,
    /// Maglev consistent hashing: a connection keeps its backend whichever
    /// node it enters through, and backend changes move few flows.
    Maglev,
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "random" => Ok(Algorithm::Random),
            "maglev" => Ok(Algorithm::Maglev),
            other => Err(format!(
                "unknown load-balancing algorithm {other:?} (random, maglev)"
            )),
        }
    }
}

/// The `healthCheckNodePort` answer for an `externalTrafficPolicy: Local`
/// Service: load balancers in front of the nodes send traffic only to nodes
/// that have local endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service.
    pub service: ServiceName,
    /// Ready endpoints of the Service on this node.
    pub local_endpoints: usize,
}

/// What the desired state is computed for: this node and the cluster's
/// NodePort settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// This node's name (endpoint locality); `None` when unknown.
    pub node_name: Option<String>,
    /// This node's addresses: NodePorts are served on each.
    pub node_addresses: Vec<Ipv4Addr>,
    /// This node's podCIDR: endpoints in it are local to the datapath.
    pub pod_cidr: Option<ipnetwork::Ipv4Network>,
    /// Allowed nodePort values (kube-apiserver's `--service-node-port-range`).
    pub node_port_range: std::ops::RangeInclusive<u16>,
    /// The algorithm of external frontends, unless a Service's
    /// `weir.dev/lb-algorithm` annotation says otherwise.
    pub algorithm: Algorithm,
    /// Maglev table size (prime).
    pub maglev_table_size: u32,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            node_name: None,
            node_addresses: Vec::new(),
            pod_cidr: None,
            node_port_range: 30_000..=32_767,
            algorithm: Algorithm::Random,
            maglev_table_size: crate::reconcile::maglev::DEFAULT_TABLE_SIZE,
        }
    }
}

/// Everything the load balancer should hold: frontend → backends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Keyed by frontend, so two Services claiming one frontend are detected
    /// when the table is built.
    pub frontends: BTreeMap<L4Addr, FrontendState>,
    /// Backend addresses that are endpoints on this node.
    pub local_backends: BTreeSet<Ipv4Addr>,
    /// `healthCheckNodePort` → what it answers.
    pub health_checks: BTreeMap<u16, HealthCheck>,
}

impl DesiredState {
    /// Number of distinct backends over all frontends.
    #[must_use]
    pub fn backend_count(&self) -> usize {
        let mut all: Vec<&L4Addr> = self.frontends.values().flat_map(|f| &f.backends).collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    }
}
