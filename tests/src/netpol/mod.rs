//! NetworkPolicy truth tables in the style of the upstream e2e suite
//! (`kubernetes/test/e2e/network/netpol`): namespaces `x`, `y`, `z`, each
//! with pods `a`, `b`, `c` serving TCP and UDP on ports 80 and 81, every
//! source dialling every destination, the observed matrix compared with the
//! expected one.
//!
//! - [`model_objects`]: the Namespaces and Pods, spread over the cluster's
//!   nodes so policies are judged across nodes too;
//! - [`Reachability`]: the expected matrix and upstream's helpers to shape it;
//! - [`check`]: probes the whole grid at once (one `weir-probe scan` per
//!   source, every target in parallel) and retries until it matches or
//!   [`SETTLE_TIME`] passes — a policy takes a moment to reach the maps —
//!   then fails with the expected, observed and difference grids.
//!
//! ```no_run
//! use weir_tests::netpol::{self, Reachability};
//! use weir_tests::{Cluster, Protocol};
//!
//! # fn run(cluster: &mut Cluster) -> anyhow::Result<()> {
//! cluster.apply(netpol::model_objects(&cluster.node_names())?)?;
//! let mut reachability = Reachability::new(true);
//! reachability.expect_all_ingress("x/a", false);
//! netpol::check(cluster, &reachability, 80, Protocol::Tcp)?;
//! # Ok(()) }
//! ```

mod check;
mod grid;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;

pub use self::check::{SETTLE_TIME, check, check_from, check_targets};
pub use self::grid::{Observation, Target, observe, observe_from, pod_targets};
pub use self::table::{Peer, Reachability, TruthTable};
use crate::kube::{self, Object};

/// The model's namespaces (labelled `ns: <name>`).
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];

/// The pods of every namespace (labelled `pod: <name>`).
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// The ports every pod serves, TCP and UDP.
pub const PORTS: [u16; 2] = [80, 81];

/// Every pod of the model, `x/a` … `z/c`: the rows and columns of a grid.
#[must_use]
pub fn pod_keys() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |pod| format!("{ns}/{pod}")))
        .collect()
}

/// The node pod number `index` (in [`pod_keys`] order) runs on: round robin,
/// so every namespace has pods on more than one node.
#[must_use]
pub fn node_of(index: usize, nodes: &[String]) -> String {
    nodes
        .get(index % nodes.len().max(1))
        .cloned()
        .unwrap_or_else(|| "node-1".to_owned())
}

/// The model's Namespaces and Pods for a cluster of `nodes`, as `kubectl
/// apply` would take them (so the API server's defaults apply, the
/// `kubernetes.io/metadata.name` label among them).
pub fn model_objects(nodes: &[String]) -> Result<Vec<Object>> {
    let mut yaml = String::new();
    for namespace in NAMESPACES {
        let _ = writeln!(
            yaml,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}, labels: {{ns: {namespace}}}}}"
        );
    }
    for (index, key) in pod_keys().iter().enumerate() {
        yaml.push_str(&pod_yaml(key, &node_of(index, nodes), &BTreeMap::new()));
    }
    kube::parse_documents(&yaml)
}

/// Pod `key` of the model on `node`, with `pod: <name>` and `extra` labels.
/// The spec is always the same for a key and node, so applying it again
/// with other labels is an update, not a new pod.
#[must_use]
pub fn pod_yaml(key: &str, node: &str, extra: &BTreeMap<String, String>) -> String {
    let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
    let mut labels = format!("pod: {name}");
    for (label, value) in extra {
        let _ = write!(labels, ", {label}: {value:?}");
    }
    let mut ports = Vec::new();
    for port in PORTS {
        for protocol in ["TCP", "UDP"] {
            let lower = protocol.to_ascii_lowercase();
            ports.push(format!(
                "{{name: serve-{port}-{lower}, containerPort: {port}, protocol: {protocol}}}"
            ));
        }
    }
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: cont-80-81, ports: [{}]}}]}}\n",
        ports.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_has_three_namespaces_of_three_pods_over_the_nodes() {
        let nodes = vec!["node-1".to_owned(), "node-2".to_owned()];
        let objects = model_objects(&nodes).unwrap();
        let described: Vec<String> = objects.iter().map(Object::describe).collect();
        assert_eq!(described.len(), 12);
        assert_eq!(described[0], "namespace/x");
        assert_eq!(described[3], "pod/x/a");
        let Object::Namespace(x) = &objects[0] else {
            unreachable!()
        };
        let labels = x.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["ns"], "x");
        assert_eq!(labels[kube::NAMESPACE_NAME_LABEL], "x");
        let Object::Pod(pod) = &objects[4] else {
            unreachable!()
        };
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-2"));
        let names: Vec<_> = spec.containers[0]
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            ["serve-80-tcp", "serve-80-udp", "serve-81-tcp", "serve-81-udp"]
        );
    }

    #[test]
    fn relabelling_keeps_the_spec() {
        let plain = pod_yaml("y/c", "node-1", &BTreeMap::new());
        let extra = BTreeMap::from([("role".to_owned(), "trusted".to_owned())]);
        let relabelled = pod_yaml("y/c", "node-1", &extra);
        let pods: Vec<_> = [plain, relabelled]
            .iter()
            .map(|yaml| match kube::parse_documents(yaml).unwrap().remove(0) {
                Object::Pod(pod) => pod,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(!kube::pods::needs_recreate(&pods[0], &pods[1]));
        assert_eq!(pods[1].metadata.labels.as_ref().unwrap()["role"], "trusted");
    }
}
