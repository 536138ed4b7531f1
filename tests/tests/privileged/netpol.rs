//! NetworkPolicy truth tables (issue #6), upstream e2e netpol style:
//! namespaces x, y, z with pods a, b, c serving TCP and UDP on 80 and 81,
//! spread over two nodes of a Kubernetes-mode cluster (the agents watch the
//! API server stand-in, policies are applied to it). For each case the full
//! 9×9 matrix is probed and compared with what the policy should allow
//! ([`weir_tests::netpol`]); a mismatch panics with the expected, observed
//! and difference grids.
//!
//! Each test groups several cases on one cluster (a build costs seconds),
//! deleting its policies before the next case, so every case starts from
//! "everything allowed".
//!
//! SCTP: the lab's kernel has no SCTP sockets, so no probe can dial it; SCTP
//! is checked at the packet level (`BPF_PROG_TEST_RUN` of the policy
//! programs with SCTP packets) instead.

mod changes;
mod isolation;
mod peers;

use std::time::{Duration, Instant};

use weir_tests::netpol::{self, Reachability};
use weir_tests::{Cluster, ClusterConfig, Protocol, RunKind, kube};

use crate::common::binaries;

/// A two-node Kubernetes-mode cluster running the model's pods.
fn model_cluster() -> Cluster {
    let config = ClusterConfig {
        api_server: true,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"));
    let objects = netpol::model_objects(&cluster.node_names());
    let objects = cluster.expect(objects, "the model's objects");
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying namespaces x, y, z and their pods");
    cluster
}

/// Applies `yaml` (policies, Services, pods) like `kubectl apply`.
fn apply(cluster: &mut Cluster, yaml: &str) -> weir_tests::Applied {
    let objects = kube::parse_documents(yaml).unwrap_or_else(|e| panic!("test YAML: {e:#}\n{yaml}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying")
}

/// Deletes the objects `yaml` names.
fn delete(cluster: &mut Cluster, yaml: &str) {
    let objects = kube::parse_documents(yaml).unwrap_or_else(|e| panic!("test YAML: {e:#}\n{yaml}"));
    let deleted = cluster.delete(&objects);
    cluster.expect(deleted, "deleting");
}

/// A NetworkPolicy `name` in `namespace` with `spec` (YAML flow or block,
/// indented by two).
fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n"
    )
}

/// Probes the grid on `port`/`protocol` until it matches `reachability`.
#[track_caller]
fn check(cluster: &Cluster, case: &str, reachability: &Reachability, port: u16, protocol: Protocol) {
    let checked = netpol::check(cluster, reachability, port, protocol);
    cluster.expect(checked, case);
}

/// The expectation where `connected(from, to)` says each cell.
fn reachability_where(connected: impl Fn(&str, &str) -> bool) -> Reachability {
    let mut reachability = Reachability::new(true);
    for from in netpol::pod_keys() {
        for to in netpol::pod_keys() {
            reachability.expect(&from, &to, connected(&from, &to));
        }
    }
    reachability
}

/// Namespace of a model pod key (`x/a` → `x`).
fn namespace_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(namespace, _)| namespace)
}

/// The agents' metrics port (default `metricsAddress`).
const METRICS_PORT: u16 = 9962;

/// Waits until node `node`'s metrics have a sample of `name` carrying all
/// `labels` (`key="value"`) with a value above zero.
fn wait_positive_metric(cluster: &Cluster, node: &str, name: &str, labels: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let node_ref = cluster.expect(cluster.node(node), "finding a node");
        let (_, text) = cluster.expect(node_ref.http_get(METRICS_PORT, "/metrics"), "GET /metrics");
        let value = text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (series, value) = rest.split_once("} ")?;
            let all = labels
                .iter()
                .all(|label| series.split(',').any(|part| part == *label));
            all.then(|| value.trim().parse::<f64>().ok()).flatten()
        });
        if value.is_some_and(|v| v > 0.0) {
            return;
        }
        let ours: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        assert!(
            Instant::now() < deadline,
            "{node}: no {name} with {labels:?} above 0 after 10 s; its samples of {name}: {ours:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The JSON lines of a node agent's verdict socket, read in the background.
pub struct VerdictLines {
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl VerdictLines {
    /// Connects to node `node`'s verdict socket (a Unix socket of the run
    /// directory: no network involved).
    pub fn follow(cluster: &Cluster, node: &str) -> Self {
        let path = cluster
            .expect(cluster.node(node), "finding a node")
            .verdict_socket();
        let stream = std::os::unix::net::UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if let Ok(value) = serde_json::from_str(&line)
                    && send.send(value).is_err()
                {
                    return;
                }
            }
        });
        Self { lines }
    }

    /// The first verdict (from now on) that satisfies `wanted`, within 10 s.
    pub fn wait_for(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(verdict) if wanted(&verdict) => return verdict,
                Ok(verdict) => seen.push(verdict),
                Err(_) => break,
            }
        }
        panic!("no such verdict within 10 s; saw {seen:#?}");
    }
}
