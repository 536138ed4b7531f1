//! `weir trace` (issue #7): on a two-node Kubernetes-mode cluster with the
//! netpol model's pods (x, y, z × a, b, c, round robin over the nodes),
//! `Services` and `NetworkPolicies`, every row's prediction — `weir trace -o
//! json` run on the source's node — must name the expected summary, and a
//! real connection made by the harness's own probe client from the source
//! pod must observe what the prediction says. `--probe` runs too and must
//! agree. Rows cover a ClusterIP to pods on both nodes, a Service with no
//! endpoints (refused), a pod-to-pod allow by rule, ingress drops on this
//! node and on the other one (asked of that node's agent), an egress drop,
//! and a Service whose backends are partly allowed (mixed).

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use weir_tests::{Cluster, ClusterConfig, FailureKind, Origin, Protocol, RunKind, kube, netpol};

use crate::common::binaries;

const OBJECTS: &str = "
apiVersion: v1
kind: Service
metadata: {name: all-x, namespace: x}
spec: {clusterIP: 10.96.0.70, selector: {member: 'yes'}, ports: [{port: 80, targetPort: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: nobody, namespace: x}
spec: {clusterIP: 10.96.0.71, selector: {pod: nobody}, ports: [{port: 80, targetPort: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: all-y, namespace: y}
spec: {clusterIP: 10.96.0.72, selector: {member: 'yes'}, ports: [{port: 80, targetPort: 80, protocol: TCP}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: y}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-x-a, namespace: y}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: z}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}
";

/// The netpol model's namespaces and pods, each pod also labelled
/// `member: yes` for the Services to select.
fn model(nodes: &[String]) -> Vec<kube::Object> {
    let mut yaml = String::new();
    for namespace in ["x", "y", "z"] {
        let _ = writeln!(
            yaml,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}, labels: {{ns: {namespace}}}}}"
        );
    }
    let extra = std::collections::BTreeMap::from([("member".to_owned(), "yes".to_owned())]);
    for (index, key) in netpol::pod_keys().iter().enumerate() {
        yaml.push_str(&netpol::pod_yaml(key, &netpol::node_of(index, nodes), &extra));
    }
    kube::parse_documents(&yaml).unwrap_or_else(|e| panic!("model YAML: {e:#}"))
}

/// One row: from a pod to `target` (a pod key, or an `ip` literal), the
/// summary `weir trace` must predict.
struct Row {
    from: &'static str,
    to: &'static str,
    summary: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        from: "x/a",
        to: "10.96.0.70",
        summary: "delivered",
    },
    Row {
        from: "y/a",
        to: "10.96.0.71",
        summary: "refused (no endpoints)",
    },
    Row {
        from: "x/a",
        to: "y/b",
        summary: "delivered",
    },
    Row {
        from: "x/c",
        to: "y/b",
        summary: "dropped by policy y/allow-x-a, y/deny-all",
    },
    Row {
        from: "x/a",
        to: "y/c",
        summary: "dropped by policy y/deny-all",
    },
    Row {
        from: "x/b",
        to: "y/a",
        summary: "dropped by policy y/deny-all",
    },
    Row {
        from: "z/a",
        to: "x/b",
        summary: "dropped by policy z/deny-egress",
    },
    Row {
        from: "x/a",
        to: "10.96.0.72",
        summary: "mixed",
    },
];

#[test]
#[ignore = "needs root: builds a cluster in network namespaces"]
fn trace_predicts_what_a_probe_observes() {
    let config = ClusterConfig {
        api_server: true,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"));
    let applied = cluster.apply(model(&cluster.node_names()));
    cluster.expect(applied, "applying namespaces x, y, z and their pods");
    let objects = kube::parse_documents(OBJECTS).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let before = cluster.generations();
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying Services and NetworkPolicies");
    // Predictions and probes of one row must see the same maps.
    let settled = cluster.wait_settled(&before);
    cluster.expect(settled, "waiting for the agents to program them");

    for row in ROWS {
        let destination = match row.to.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => {
                cluster
                    .expect(cluster.pod(row.to), "finding the destination pod")
                    .ip
            }
        };
        let target = format!("{destination}:80/tcp");
        let trace = predicted(&cluster, row, &target);
        let what = format!("{} → {} ({target})", row.from, row.to);
        let summary = trace["summary"].as_str().unwrap_or_default();
        assert_eq!(summary, row.summary, "{what}: prediction\n{trace:#}");
        // The harness's own client, independent of the CLI.
        let origin = cluster.expect(cluster.origin(row.from), "the source");
        let replies = cluster.probe(
            &origin,
            (SocketAddrV4::new(destination, 80), Protocol::Tcp),
            1,
            Duration::from_secs(1),
        );
        let observed = match &cluster.expect(replies, "probing").attempts[0] {
            Ok(_) => "delivered",
            Err(f) if f.kind == FailureKind::Refused => "refused",
            Err(f) if f.kind == FailureKind::Timeout => "dropped",
            Err(f) => panic!("{what}: the probe failed unexpectedly: {f:?}"),
        };
        let expected: &[&str] = match summary {
            "delivered" => &["delivered"],
            "mixed" => &["delivered", "dropped"],
            s if s.starts_with("refused") => &["refused"],
            _ => &["dropped"],
        };
        assert!(
            expected.contains(&observed),
            "{what}: predicted {summary}, a probe observed {observed}\n{trace:#}"
        );
        // And `--probe` agrees with its own prediction.
        assert_eq!(
            trace["probe"]["agrees"], true,
            "{what}: --probe disagrees\n{trace:#}"
        );
    }
    let mixed = predicted(&cluster, &ROWS[7], "10.96.0.72:80/tcp");
    let outcomes: Vec<&str> = mixed["candidates"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(outcomes.len(), 3, "{mixed:#}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "delivered").count(),
        1,
        "{mixed:#}"
    );
}

/// `weir trace -o json --probe` on the source's node, retried for a few
/// seconds until it predicts `row.summary` (the agents may still be
/// programming); checks the exit code that goes with the summary.
fn predicted(cluster: &Cluster, row: &Row, target: &str) -> serde_json::Value {
    let source = cluster
        .expect(cluster.pod(row.from), "finding the source pod")
        .ip
        .to_string();
    let node = cluster.expect(cluster.pod_node(row.from), "the source's node");
    // Named: pods of other clusters on this machine may hold the same address.
    let place = cluster.expect(
        cluster.place(&Origin::Pod(row.from.to_owned())),
        "the source's netns",
    );
    let netns = place.netns.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = cluster.expect(
            node.weir(&[
                "trace", "-o", "json", "--probe", "--netns", &netns, &source, target,
            ]),
            "weir trace",
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let value: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("weir trace {source} {target}: not JSON ({e}): {stdout}\n{stderr}"));
        if value["summary"] == row.summary || Instant::now() > deadline {
            let code = match row.summary {
                "delivered" => 0,
                "mixed" => 7,
                _ => 6,
            };
            if value["summary"] == row.summary {
                assert_eq!(
                    output.status.code(),
                    Some(code),
                    "exit code of weir trace {source} {target}\n{value:#}"
                );
            }
            return value;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
