//! The prediction: the load-balancing step as `weir_ebpf::lb` takes it
//! (socket path for sources on this node, per-packet path for the rest),
//! then, for every backend the connection may reach, the source pod's
//! egress and the destination pod's ingress verdict. Pure over its inputs,
//! so it is tested without maps or agents.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use weir_agent::maps::MapDump;
use weir_agent::maps::policy_eval::{Direction, Flow, PolicySnapshot};
use weir_agent::ops::api::EndpointDoc;
use weir_agent::ops::trace::{VerdictDoc, judge, protocol_name, protocol_number};

use super::pick::{SelectionState, pick};
use super::report::{Candidate, FrontendStep, Trace};
use super::routes::{Location, Route, locate};

/// Asks the agent of the node at an address for its verdict on a flow.
pub type RemoteJudge<'a> = dyn Fn(Ipv4Addr, &Flow, Direction) -> Result<VerdictDoc, String> + 'a;

/// What the prediction reads.
pub struct Inputs<'a> {
    /// This node's policy maps.
    pub policy: &'a PolicySnapshot,
    /// This node's load-balancer maps.
    pub lb: &'a MapDump,
    /// This node's routes.
    pub routes: &'a [Route],
    /// This node's endpoints as its agent names them (may be empty).
    pub endpoints: &'a [EndpointDoc],
    /// Other nodes' verdicts.
    pub remote: &'a RemoteJudge<'a>,
    /// Affinity entries, Maglev tables, the clock and the source's netns.
    pub selection: &'a dyn SelectionState,
    /// The client's source port, when known (Maglev hashes it).
    pub source_port: Option<u16>,
}

/// Predicts what happens to a new connection `flow` (as dialled).
#[must_use]
pub fn predict(inputs: &Inputs<'_>, flow: &Flow) -> Trace {
    let node_addresses: BTreeSet<Ipv4Addr> = inputs
        .policy
        .hosts
        .iter()
        .map(|h| Ipv4Addr::from(h.to_ne_bytes()))
        .chain(inputs.lb.masquerade.node_ip)
        .collect();
    let source_kind =
        if inputs.policy.is_endpoint(flow.src) || locate(inputs.routes, flow.src) == Location::LocalPod {
            "pod"
        } else if node_addresses.contains(&flow.src) {
            "node"
        } else {
            "external"
        };
    let socket_path = source_kind != "external";
    let frontend = inputs.lb.frontends.iter().find(|f| {
        f.address == flow.dst
            && f.port == flow.port
            && protocol_number(&f.protocol) == Some(flow.proto)
            && f.count.is_some()
            // The per-packet path serves only frontends meant for outside clients.
            && (socket_path || f.flags.iter().any(|x| x == "external"))
    });
    let mut trace = Trace {
        source: flow.src.to_string(),
        source_kind: source_kind.to_owned(),
        destination: format!("{}:{}/{}", flow.dst, flow.port, protocol_name(flow.proto)),
        frontend: None,
        candidates: Vec::new(),
        summary: String::new(),
        probe: None,
    };
    let targets: Vec<(Ipv4Addr, u16, bool)> = match frontend {
        None => vec![(flow.dst, flow.port, false)],
        Some(f) => {
            let has = |flag: &str| f.flags.iter().any(|x| x == flag);
            let selection = if has("affinity") {
                "affinity"
            } else if has("maglev") && !socket_path {
                "maglev"
            } else {
                "random"
            };
            trace.frontend = Some(FrontendStep {
                address: trace.destination.clone(),
                path: if socket_path { "socket" } else { "per_packet" }.to_owned(),
                flags: f.flags.clone(),
                backends: f.count.unwrap_or(0),
                selection: selection.to_owned(),
                pick: pick(
                    inputs.selection,
                    inputs.lb,
                    f,
                    (flow, inputs.source_port),
                    socket_path,
                ),
            });
            f.slots
                .iter()
                .filter_map(|slot| inputs.lb.backends.iter().find(|b| b.id == slot.backend))
                .map(|b| (b.address, b.port, b.flags.iter().any(|x| x == "local")))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }
    };
    if trace.frontend.as_ref().is_some_and(|f| f.backends == 0) {
        trace.summary = String::from("refused (no endpoints)");
        return trace;
    }
    for (address, port, local) in targets {
        // NodePort/externalIP to a backend on another node: the uplink
        // moves the source to this node so the reply comes back here.
        let snat = (!socket_path && frontend.is_some() && !local)
            .then_some(inputs.lb.masquerade.node_ip)
            .flatten();
        let translated = Flow {
            src: snat.unwrap_or(flow.src),
            dst: address,
            port,
            proto: flow.proto,
        };
        let from_pod = source_kind == "pod";
        let candidate = candidate(inputs, &node_addresses, flow, &translated, (from_pod, snat));
        trace.candidates.push(candidate);
    }
    // A backend the datapath will choose for sure decides the outcome alone.
    let picked = trace.frontend.as_ref().and_then(|f| f.pick.backend.clone());
    for c in &mut trace.candidates {
        c.picked = picked.as_ref() == Some(&c.backend);
    }
    trace.summary = match trace.candidates.iter().find(|c| c.picked) {
        Some(chosen) => summary(std::slice::from_ref(chosen)),
        None => summary(&trace.candidates),
    };
    trace
}

/// One backend's verdicts.
fn candidate(
    inputs: &Inputs<'_>,
    node_addresses: &BTreeSet<Ipv4Addr>,
    original: &Flow,
    flow: &Flow,
    (from_pod, snat): (bool, Option<Ipv4Addr>),
) -> Candidate {
    let egress_flow = Flow {
        src: original.src,
        ..*flow
    };
    let egress = from_pod.then(|| judge(inputs.policy, &egress_flow, Direction::Egress, inputs.endpoints));
    let location = if inputs.policy.is_endpoint(flow.dst) {
        Location::LocalPod
    } else if node_addresses.contains(&flow.dst) || flow.dst.is_loopback() {
        // The node's own addresses live in the local table, not in the routes.
        Location::Direct
    } else {
        locate(inputs.routes, flow.dst)
    };
    let (where_, ingress) = match location {
        Location::LocalPod => (
            "local".to_owned(),
            Some(judge(inputs.policy, flow, Direction::Ingress, inputs.endpoints)),
        ),
        Location::Node(node) => {
            let verdict =
                (inputs.remote)(node, flow, Direction::Ingress).unwrap_or_else(|reason| VerdictDoc {
                    verdict: "unknown".to_owned(),
                    direction: "ingress".to_owned(),
                    pod: None,
                    endpoint: None,
                    rule: None,
                    policies: Vec::new(),
                    reason: format!("the agent of node {node} did not answer: {reason}"),
                });
            (format!("node {node}"), Some(verdict))
        }
        Location::Direct => ("direct".to_owned(), None),
        Location::Unreachable => ("unreachable".to_owned(), None),
    };
    let verdicts = [egress.as_ref(), ingress.as_ref()];
    let outcome = if location == Location::Unreachable {
        "unreachable"
    } else if verdicts.iter().flatten().any(|v| v.verdict == "drop") {
        "dropped"
    } else if verdicts.iter().flatten().any(|v| v.verdict == "unknown") {
        "unknown"
    } else {
        "delivered"
    };
    Candidate {
        backend: format!("{}:{}", flow.dst, flow.port),
        location: where_,
        nat: snat.map(|ip| format!("snat to {ip}")),
        egress,
        ingress,
        outcome: outcome.to_owned(),
        picked: false,
    }
}

/// `delivered`, `dropped by policy X`, `unreachable (no route)`, `mixed`
/// or `unknown`.
fn summary(candidates: &[Candidate]) -> String {
    let count = |o: &str| candidates.iter().filter(|c| c.outcome == o).count();
    let (delivered, dropped, unknown) = (count("delivered"), count("dropped"), count("unknown"));
    let unreachable = count("unreachable");
    if unknown > 0 {
        return "unknown".to_owned();
    }
    if unreachable > 0 {
        let all = unreachable == candidates.len();
        return if all { "unreachable (no route)" } else { "mixed" }.to_owned();
    }
    if dropped == 0 {
        return "delivered".to_owned();
    }
    if delivered > 0 {
        return "mixed".to_owned();
    }
    let policies: BTreeSet<&str> = candidates
        .iter()
        .flat_map(|c| [c.egress.as_ref(), c.ingress.as_ref()])
        .flatten()
        .filter(|v| v.verdict == "drop")
        .flat_map(|v| v.policies.iter().map(String::as_str))
        .collect();
    if policies.is_empty() {
        "dropped by policy".to_owned()
    } else {
        format!(
            "dropped by policy {}",
            policies.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

#[cfg(test)]
#[path = "predict_tests.rs"]
mod tests;
