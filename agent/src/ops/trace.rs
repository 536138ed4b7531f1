//! `/v1/policy/verdict?src=IP&dst=IP&port=N&proto=P&direction=ingress|egress`:
//! what this node's policy programs would decide for a new connection,
//! evaluated against this node's own pinned maps.
//!
//! `weir trace` on one node asks the agent of the node a destination pod
//! lives on: each node's policy maps hold only its own pods, and bpffs is
//! not shared between nodes. The evaluation itself is
//! [`crate::maps::policy_eval`], the same code the CLI runs on local maps;
//! the document type is shared with the CLI.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::Ops;
use super::api::EndpointDoc;
use super::http::Response;
use crate::maps::policy_eval::{Direction, Flow, PolicySnapshot, Reason};

/// One predicted policy verdict (the answer of `/v1/policy/verdict`, and
/// each policy step of `weir trace`). Field names are a stable interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictDoc {
    /// `allow` or `drop`.
    pub verdict: String,
    /// `ingress` (judged by the destination pod's policy) or `egress` (by
    /// the source pod's).
    pub direction: String,
    /// The pod whose policy judged (`namespace/name`), when the agent knows it.
    pub pod: Option<String>,
    /// Its endpoint id in the maps (`None`: not a pod of that node).
    pub endpoint: Option<u16>,
    /// The rule id that allows it (`None` for a drop or an allow that
    /// needed no rule).
    pub rule: Option<u16>,
    /// For a drop: the policies isolating the pod (none of their rules
    /// matched); for an allow by a rule: the pod's policies of that
    /// direction, one of which holds the rule; otherwise empty.
    pub policies: Vec<String>,
    /// One line saying why.
    pub reason: String,
}

impl VerdictDoc {
    /// Whether the connection passes.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.verdict == "allow"
    }
}

/// Evaluates `flow` in `direction` against `maps`, naming pods and policies
/// from `endpoints` (the agent's `/v1/endpoints`; empty: ids only).
#[must_use]
pub fn judge(
    maps: &PolicySnapshot,
    flow: &Flow,
    direction: Direction,
    endpoints: &[EndpointDoc],
) -> VerdictDoc {
    let evaluation = maps.evaluate(flow, direction);
    let pod_ip = match direction {
        Direction::Ingress => flow.dst,
        Direction::Egress => flow.src,
    };
    let known = endpoints.iter().find(|e| e.ip == pod_ip);
    let isolating = known
        .map(|e| match direction {
            Direction::Ingress => e.ingress_policies.clone(),
            Direction::Egress => e.egress_policies.clone(),
        })
        .unwrap_or_default();
    let (policies, reason) = match &evaluation.reason {
        Reason::NotAnEndpoint => (
            Vec::new(),
            format!("{pod_ip} is not a pod of this node: not enforced here"),
        ),
        Reason::NotIsolated => (
            Vec::new(),
            format!("no policy selects {pod_ip} for {}", name(direction)),
        ),
        Reason::FromNode => (
            Vec::new(),
            "from the node's own address: always allowed into its pods".to_owned(),
        ),
        Reason::NoPrefix => (isolating, "isolated, and no rule names the peer".to_owned()),
        Reason::NoPort { prefix } => (
            isolating,
            format!(
                "isolated; rules for {prefix} allow no {} port {}",
                protocol_name(flow.proto),
                flow.port
            ),
        ),
        Reason::Rule { prefix } => (
            isolating,
            format!(
                "rule {} allows {prefix} on {} port {}",
                evaluation.rule.unwrap_or_default(),
                protocol_name(flow.proto),
                flow.port
            ),
        ),
    };
    VerdictDoc {
        verdict: if evaluation.allowed { "allow" } else { "drop" }.to_owned(),
        direction: name(direction).to_owned(),
        pod: known.map(|e| e.pod.clone()),
        endpoint: evaluation.endpoint,
        rule: evaluation.rule,
        policies,
        reason,
    }
}

fn name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// `tcp`, `udp`, `sctp` (any case) or a number.
#[must_use]
pub fn protocol_number(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Some(weir_common::IPPROTO_TCP),
        "udp" => Some(weir_common::IPPROTO_UDP),
        "sctp" => Some(weir_common::policy::IPPROTO_SCTP),
        other => other.parse().ok(),
    }
}

pub use crate::desired::protocol_name;

/// The flow and direction a query names.
///
/// # Errors
/// A message naming the missing or malformed parameter.
pub fn parse_query(query: &str) -> Result<(Flow, Direction), String> {
    let get = |key: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("missing parameter {key}"))
    };
    let address = |key: &str| -> Result<Ipv4Addr, String> {
        let value = get(key)?;
        value
            .parse()
            .map_err(|_| format!("{key}={value} is not an IPv4 address"))
    };
    let port = get("port")?;
    let proto = get("proto")?;
    let flow = Flow {
        src: address("src")?,
        dst: address("dst")?,
        port: port
            .parse()
            .map_err(|_| format!("port={port} is not a port number"))?,
        proto: protocol_number(proto)
            .ok_or_else(|| format!("proto={proto} is not tcp, udp, sctp or a number"))?,
    };
    let direction = match get("direction")? {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        other => return Err(format!("direction={other} is not ingress or egress")),
    };
    Ok((flow, direction))
}

/// Answers `/v1/policy/verdict` from the maps pinned under the census's
/// bpffs (read on the blocking pool: it walks the rule trie).
pub(super) async fn verdict(ops: &Ops, query: &str) -> Response {
    let (flow, direction) = match parse_query(query) {
        Ok(parsed) => parsed,
        Err(message) => return Response::text("400 Bad Request", message + "\n"),
    };
    let Some(census) = ops.census() else {
        return Response::text("503 Service Unavailable", "this agent has no pinned maps\n");
    };
    let bpffs = census.bpffs().to_owned();
    let snapshot = tokio::task::spawn_blocking(move || PolicySnapshot::read_pinned(&bpffs)).await;
    let snapshot = match snapshot {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(e)) => {
            return Response::text(
                "503 Service Unavailable",
                format!("cannot read the policy maps: {e}\n"),
            );
        }
        Err(e) => return Response::text("500 Internal Server Error", format!("{e}\n")),
    };
    ops.with_view(|v| Response::json(&judge(&snapshot, &flow, direction, &v.endpoints)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_flow_and_direction_and_bad_ones_say_what_is_wrong() {
        let (flow, direction) =
            parse_query("src=10.0.0.1&dst=10.0.0.2&port=80&proto=TCP&direction=ingress").unwrap();
        assert_eq!(
            flow,
            Flow {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                port: 80,
                proto: 6
            }
        );
        assert_eq!(direction, Direction::Ingress);
        assert_eq!(parse_query("src=10.0.0.1").unwrap_err(), "missing parameter port");
        assert_eq!(
            parse_query("src=x&dst=10.0.0.2&port=80&proto=udp&direction=egress").unwrap_err(),
            "src=x is not an IPv4 address"
        );
        assert!(parse_query("src=10.0.0.1&dst=10.0.0.2&port=80&proto=udp&direction=up").is_err());
    }

    #[test]
    fn an_unknown_pod_is_not_enforced_here() {
        let flow = Flow {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            port: 80,
            proto: 6,
        };
        let doc = judge(&PolicySnapshot::default(), &flow, Direction::Ingress, &[]);
        assert!(doc.allowed());
        assert_eq!((doc.endpoint, doc.pod), (None, None));
    }
}
