//! The agent's read-only JSON API for the `weir` CLI, on the health
//! listener: `/v1/status`, `/v1/services`, `/v1/endpoints`, `/v1/pods`.
//!
//! The documents are what the last sync pass computed (published by the
//! syncer into [`super::Ops`]), not a fresh computation: the CLI shows what
//! the agent decided, and asking never waits for or disturbs a pass. Field
//! names are `snake_case` and a stable interface (the CLI and scripts parse
//! them); the types are shared with the CLI so both sides agree.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Ops;
use super::http::Response;

/// What the agent is and how it runs; set once at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent's version.
    pub version: String,
    /// `socket-lb`, or `socket-lb+tc` when the uplink programs are attached.
    pub datapath: String,
    /// Uplink devices carrying the TC programs (NodePort, externalIP, SNAT).
    pub tc_devices: Vec<String>,
    /// Default algorithm of the per-packet path: `random` or `maglev`.
    pub lb_algorithm: String,
    /// Where the objects come from: `manifests DIR`, `kubeconfig FILE`, `in-cluster`.
    pub source: String,
    /// `ipv4` (the only family weir serves today).
    pub ip_family: String,
}

/// This node as the last pass saw it (from its Node object).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`; `None` without `--node-name`.
    pub name: Option<String>,
    /// The node's addresses (NodePorts are served on each).
    pub addresses: Vec<Ipv4Addr>,
    /// The node's podCIDR, once known.
    pub pod_cidr: Option<String>,
}

/// How many objects the datapath holds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Services with at least one frontend.
    pub services: usize,
    /// Frontends (VIP:port/proto) programmed.
    pub frontends: usize,
    /// Distinct backends programmed.
    pub backends: usize,
    /// `NetworkPolicies` selecting a local pod.
    pub policies: usize,
    /// Local pods known to the policy programs.
    pub endpoints: usize,
}

/// One pinned map's fill.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MapFill {
    /// Short name (`services`, `backends`, `maglev`, `affinity`, `nat`).
    pub map: String,
    /// Entries now.
    pub entries: u64,
    /// `max_entries`.
    pub capacity: u64,
}

/// `/v1/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusDoc {
    /// The main loop ticks (what /healthz says).
    pub healthy: bool,
    /// The last pass programmed everything (what /readyz says).
    pub ready: bool,
    /// Why not ready (`None` when ready).
    pub not_ready_reason: Option<String>,
    /// This node.
    pub node: NodeInfo,
    /// How the agent runs.
    pub agent: AgentInfo,
    /// End of the last complete pass, RFC 3339 UTC; `None` before the first.
    pub last_sync: Option<String>,
    /// Complete passes since start.
    pub generation: u64,
    /// What the datapath holds.
    pub counts: Counts,
    /// Fill of each pinned map.
    pub maps: Vec<MapFill>,
    /// Objects the last pass left out, and why.
    pub skipped: Vec<String>,
}

/// A frontend of a Service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrontendDoc {
    /// `ip:port/PROTO`.
    pub address: String,
    /// `clusterIP`, `nodePort`, `externalIP` or `loadBalancer`.
    pub kind: String,
    /// The backends new connections to it go to (`ip:port/PROTO`), after
    /// the traffic policy and the ready/terminating fallback.
    pub backends: Vec<String>,
}

/// An endpoint of a Service, from its EndpointSlices.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendDoc {
    /// `ip:port/PROTO`.
    pub address: String,
    /// The node it runs on, if the slice says.
    pub node: Option<String>,
    /// `ready`; `serving` (terminating, still serving: used only when no
    /// endpoint is ready); `terminating` (not serving); `not_ready`.
    pub state: String,
    /// Some frontend sends new connections to it.
    pub in_use: bool,
}

/// `/v1/services`: one per Service with frontends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceDoc {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub service_type: String,
    /// Every frontend programmed for it.
    pub frontends: Vec<FrontendDoc>,
    /// Every endpoint its slices list.
    pub backends: Vec<BackendDoc>,
    /// Per-packet (external) algorithm: `random` or `maglev`; sockets always
    /// pick at random.
    pub algorithm: String,
    /// `None` or `ClientIP`.
    pub session_affinity: String,
    /// ClientIP stickiness in seconds.
    pub affinity_timeout_seconds: Option<u32>,
    /// `Cluster` or `Local`.
    pub external_traffic_policy: String,
    /// `Cluster` or `Local`.
    pub internal_traffic_policy: String,
}

/// `/v1/endpoints`: a local pod the policy programs know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointDoc {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The endpoint id in the maps and verdicts.
    pub id: u16,
    /// Some policy isolates it for ingress (only its rules admit).
    pub isolated_ingress: bool,
    /// Some policy isolates it for egress.
    pub isolated_egress: bool,
    /// Policies selecting it for ingress (`namespace/name`).
    pub ingress_policies: Vec<String>,
    /// Policies selecting it for egress.
    pub egress_policies: Vec<String>,
}

/// `/v1/pods`: every pod with an address the agent knows, on any node
/// (the agent watches them all: any pod can be a policy peer). The CLI
/// names peers and remote destinations with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodDoc {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The node it runs on, if scheduled.
    pub node: Option<String>,
}

/// What the syncer publishes after each pass.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    pub(super) agent: AgentInfo,
    pub(super) node: NodeInfo,
    pub(super) last_sync: Option<SystemTime>,
    pub(super) generation: u64,
    pub(super) counts: Counts,
    pub(super) skipped: Vec<String>,
    /// By name: a pass replaces only the Services it changed. Rendered
    /// when asked for, with `scope`.
    pub(super) services: std::collections::BTreeMap<crate::desired::ServiceName, super::view::ServiceInputs>,
    /// What the Services were computed for.
    pub(super) scope: crate::desired::Scope,
    pub(super) endpoints: Vec<EndpointDoc>,
    pub(super) pods: Vec<PodDoc>,
}

/// Answers `/v1/…`; `None` for any other path.
pub(super) async fn route(ops: &Ops, path: &str) -> Option<Response> {
    Some(match path {
        "/v1/status" => Response::json(&status(ops).await),
        "/v1/services" => ops.with_view(|v| {
            let docs: Vec<ServiceDoc> = v
                .services
                .iter()
                .map(|(name, inputs)| super::view::document(inputs, name.clone(), &v.scope))
                .collect();
            Response::json(&docs)
        }),
        "/v1/endpoints" => ops.with_view(|v| Response::json(&v.endpoints)),
        "/v1/pods" => ops.with_view(|v| Response::json(&v.pods)),
        _ => return None,
    })
}

/// The status document, with the maps counted now (on the blocking pool).
async fn status(ops: &Ops) -> StatusDoc {
    // The view first: a pass publishes it after writing the maps, so the
    // maps counted after it hold at least what it says.
    let (node, agent, last_sync, generation, counts, skipped) = ops.with_view(|v| {
        (
            v.node.clone(),
            v.agent.clone(),
            v.last_sync,
            v.generation,
            v.counts,
            v.skipped.clone(),
        )
    });
    let maps = match ops.census() {
        Some(census) => tokio::task::spawn_blocking(move || census.count())
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| MapFill {
                map: c.map.to_owned(),
                entries: c.entries,
                capacity: c.capacity,
            })
            .collect(),
        None => Vec::new(),
    };
    let (ready, reason) = ops.readiness();
    StatusDoc {
        healthy: ops.since_alive() < super::LIVENESS_WINDOW,
        ready,
        not_ready_reason: (!ready).then_some(reason),
        node,
        agent,
        last_sync: last_sync.map(rfc3339),
        generation,
        counts,
        maps,
        skipped,
    }
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds), as Kubernetes
/// writes `metav1.Time`.
#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secs = i64::try_from(secs).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn service_type_is_serialized_as_type() {
        let doc = ServiceDoc {
            service_type: "NodePort".into(),
            ..ServiceDoc::default()
        };
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["type"], "NodePort");
    }
}
