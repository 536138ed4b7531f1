//! Why an object, or part of one, is left out of the desired state.

use super::{L4Addr, ServiceName};

/// One object (or part of one) that could not be used. The rest of the
/// desired state is computed without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {reason}")]
pub struct ObjectError {
    /// The object.
    pub object: ObjectRef,
    /// What is wrong with it.
    #[source]
    pub reason: Reason,
}

/// Names an object: enough to log it and to attach a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `Service`, `EndpointSlice`, `Node`, ...
    pub kind: &'static str,
    /// Namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// The `apiVersion` of [`Self::kind`].
    #[must_use]
    pub fn api_version(&self) -> &'static str {
        match self.kind {
            "EndpointSlice" => "discovery.k8s.io/v1",
            "NetworkPolicy" => "networking.k8s.io/v1",
            _ => "v1",
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why an object, or part of it, was skipped.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Reason {
    /// `spec.clusterIP(s)` is not an IP address.
    #[error("invalid clusterIP {0:?}")]
    BadClusterIp(String),
    /// An endpoint address that is not an IPv4 address in an IPv4 slice.
    #[error("invalid endpoint address {0:?}")]
    BadEndpointAddress(String),
    /// A port outside 1–65535.
    #[error("port {0} is out of range 1-65535")]
    PortOutOfRange(i32),
    /// A protocol weir does not balance (yet): SCTP, or garbage.
    #[error("unsupported protocol {0:?}")]
    UnsupportedProtocol(String),
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` outside 1–86400.
    #[error("session affinity timeout {0}s is out of range 1-86400")]
    AffinityTimeoutOutOfRange(i32),
    /// An annotation weir reads has a value it does not understand; the
    /// default applies.
    #[error("annotation {annotation}: {message}")]
    BadAnnotation {
        /// The annotation.
        annotation: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A nodePort or healthCheckNodePort outside the node port range.
    #[error("node port {port} is outside the node port range {min}-{max}")]
    NodePortOutOfRange {
        /// The port.
        port: i32,
        /// The range's first port.
        min: u16,
        /// The range's last port.
        max: u16,
    },
    /// A podCIDR that is not an IPv4 network.
    #[error("invalid podCIDR {0:?}")]
    BadPodCidr(String),
    /// This node's podCIDR overlaps another node's.
    #[error("podCIDR {cidr} overlaps node {other}'s {other_cidr}")]
    OverlappingPodCidr {
        /// The skipped node's podCIDR.
        cidr: String,
        /// The node that keeps its podCIDR.
        other: String,
        /// That node's podCIDR.
        other_cidr: String,
    },
    /// A NetworkPolicy ipBlock `cidr` or `except` that is not a CIDR.
    #[error("invalid CIDR {0:?}")]
    BadCidr(String),
    /// An ipBlock `except` that is not inside the block's `cidr`.
    #[error("except {except} is not inside cidr {cidr}")]
    ExceptOutsideCidr {
        /// The except.
        except: String,
        /// The block's cidr.
        cidr: String,
    },
    /// A NetworkPolicy `endPort` that is below `port`, above 65535, or set
    /// without a numeric `port`.
    #[error("endPort {end_port} is invalid for port {port}")]
    BadEndPort {
        /// The port (number or name), or `-` when absent.
        port: String,
        /// The endPort.
        end_port: i32,
    },
    /// A named port that is not an IANA service name.
    #[error("invalid port name {0:?}")]
    BadPortName(String),
    /// A label selector that cannot be evaluated (unknown operator, values
    /// where none are allowed or missing where required).
    #[error("invalid label selector: {0}")]
    BadSelector(String),
    /// A NetworkPolicy peer that sets no field, or an ipBlock together with
    /// a selector.
    #[error("invalid peer: {0}")]
    BadPeer(String),
    /// A `policyTypes` entry other than `Ingress` or `Egress`.
    #[error("unknown policy type {0:?}")]
    UnknownPolicyType(String),
    /// The policies that select one pod allow more distinct port ranges to
    /// one peer prefix than the datapath holds; that prefix is denied.
    #[error("pod {pod}: {count} port ranges for {direction} peer {prefix} (at most {max}); denied")]
    TooManyPortRanges {
        /// `namespace/name` of the pod.
        pod: String,
        /// `ingress` or `egress`.
        direction: &'static str,
        /// The peer prefix.
        prefix: String,
        /// Ranges after merging.
        count: usize,
        /// The datapath's limit.
        max: usize,
    },
    /// Two Services claim the same VIP, port and protocol; the first one (by
    /// namespace/name) keeps it, as the API server would have refused the second.
    #[error("frontend {frontend} already belongs to Service {owner}")]
    DuplicateFrontend {
        /// The contested frontend.
        frontend: L4Addr,
        /// The Service that keeps it.
        owner: ServiceName,
    },
}
