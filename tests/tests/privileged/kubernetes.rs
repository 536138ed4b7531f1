//! Kubernetes mode: the agents watch the API server stand-in on the fabric
//! (kube-rs watchers over real HTTP list/watch) instead of reading a
//! manifest directory. Every change the harness makes to objects is applied
//! to the stand-in, so these rows drive the agents the way a cluster does.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use weir_tests::{Cluster, ClusterConfig, Protocol, RunKind, kube};

use crate::common::{Row, binaries, check_rows};

/// The agents' health and readiness port (default `healthAddress`).
const HEALTH_PORT: u16 = 9879;

fn kubernetes_cluster(nodes: usize) -> Cluster {
    let config = ClusterConfig {
        nodes,
        api_server: true,
        ..ClusterConfig::default()
    };
    Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"))
}

fn objects(yaml: &str) -> Vec<kube::Object> {
    kube::parse_documents(yaml).unwrap_or_else(|e| panic!("test YAML: {e:#}"))
}

fn apply(cluster: &mut Cluster, yaml: &str, what: &str) {
    let applied = cluster.apply(objects(yaml));
    cluster.expect(applied, what);
}

fn tcp(ip: [u8; 4], port: u16) -> (SocketAddrV4, Protocol) {
    (SocketAddrV4::new(Ipv4Addr::from(ip), port), Protocol::Tcp)
}

fn row<'a>(from: &'a str, to: (SocketAddrV4, Protocol), answered_by: &'a [&'a str]) -> Row<'a> {
    Row {
        from,
        to,
        answered_by,
        seen_from: None,
        tries: 12,
    }
}

/// Waits until every agent's status satisfies `done`.
fn wait(cluster: &mut Cluster, what: &str, done: impl Fn(&weir_tests::AgentStatus) -> bool) {
    let waited = cluster.wait_for_agents(what, |_, status| done(status));
    cluster.expect(waited, what);
}

/// `/readyz` of node `name`'s agent: status code and body.
fn readyz(cluster: &Cluster, name: &str) -> (u16, String) {
    let node = cluster.expect(cluster.node(name), "finding a node");
    cluster.expect(node.http_get(HEALTH_PORT, "/readyz"), "GET /readyz")
}

/// Polls `/readyz` of `name` until its code is `code`.
fn wait_ready(cluster: &Cluster, name: &str, code: u16, within: Duration) {
    poll(within, || {
        let (got, body) = readyz(cluster, name);
        (got == code).then_some(()).ok_or_else(|| {
            format!("{name}: /readyz stayed {got} ({body:?}), expected {code} within {within:?}")
        })
    });
}

/// Calls `attempt` every 200 ms until it succeeds; panics with its last
/// complaint after `within`.
fn poll(within: Duration, mut attempt: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + within;
    loop {
        match attempt() {
            Ok(()) => return,
            Err(complaint) => assert!(Instant::now() < deadline, "{complaint}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const WEB: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
";

const WEB_PORT_81: &str = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{name: http, port: 81, targetPort: http}]
";

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn services_endpoint_slices_and_nodes_reach_the_maps_through_the_api_server() {
    // Building the cluster already needs the Nodes: each agent found its
    // podCIDR and a route to the other node in the Node objects it watched.
    let mut cluster = kubernetes_cluster(2);
    let vip = |port| tcp([10, 96, 0, 50], port);

    // Create: a Service and the pods its EndpointSlice names.
    apply(&mut cluster, WEB, "creating the web Service");
    wait(&mut cluster, "the web Service", |s| {
        s.frontends == 1 && s.backends == 2
    });
    check_rows(
        &cluster,
        &[
            row("default/a", vip(80), &["web-1", "web-2"]),
            row("node-2", vip(80), &["web-1", "web-2"]),
        ],
    );

    // Update the Service: the port moves.
    apply(&mut cluster, WEB_PORT_81, "changing the web Service's port");
    check_rows_eventually(
        &cluster,
        &[
            row("default/a", vip(81), &["web-1", "web-2"]),
            row("default/a", vip(80), &[]),
        ],
    );

    // Update the EndpointSlice: a pod goes, its endpoint with it.
    let deleted = cluster.delete(&objects("apiVersion: v1\nkind: Pod\nmetadata: {name: web-2}\n"));
    cluster.expect(deleted, "deleting web-2");
    wait(&mut cluster, "one backend left", |s| s.backends == 1);
    check_rows(&cluster, &[row("default/a", vip(81), &["web-1"])]);

    // Delete the Service: refused at once.
    let deleted = cluster.delete(&objects("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"));
    cluster.expect(deleted, "deleting the web Service");
    wait(&mut cluster, "no Service", |s| s.frontends == 0);
    check_rows(&cluster, &[row("default/a", vip(81), &[])]);

    // Nodes: one leaves (node-1's route to it goes), and comes back.
    cluster.expect(cluster.remove_node_object("node-2"), "deleting Node node-2");
    wait_node(&mut cluster, "node-1", "no route to node-2", |s| {
        s.node_routes == 0
    });
    cluster.expect(cluster.write_node_object("node-2"), "creating Node node-2 again");
    wait_node(&mut cluster, "node-1", "the route to node-2 back", |s| {
        s.node_routes == 1
    });
}

/// Waits until node `name`'s agent status satisfies `done`.
fn wait_node(cluster: &mut Cluster, name: &str, what: &str, done: impl Fn(&weir_tests::AgentStatus) -> bool) {
    let node = cluster.node_mut(name).unwrap_or_else(|e| panic!("{e:#}"));
    let waited = node.wait_for_status(what, done);
    node.expect(waited, what);
}

/// [`check_rows`], retried for a few seconds: for changes that leave the
/// status counts as they were, so nothing tells when they are programmed.
fn check_rows_eventually(cluster: &Cluster, rows: &[Row<'_>]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_rows(cluster, rows)));
        match attempt {
            Ok(()) => return,
            Err(panic) if Instant::now() >= deadline => std::panic::resume_unwind(panic),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

const STEADY: &str = "
apiVersion: v1
kind: Pod
metadata: {name: s1, labels: {app: steady}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: steady}
spec:
  type: NodePort
  clusterIP: 10.96.0.51
  selector: {app: steady}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30092}]
";

const S2: &str = "
apiVersion: v1
kind: Pod
metadata: {name: s2, labels: {app: steady}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
";

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_watch_resumed_past_compaction_gets_410_and_the_relist_catches_up() {
    let mut cluster = kubernetes_cluster(1);
    apply(&mut cluster, STEADY, "creating the steady Service");
    wait(&mut cluster, "one backend", |s| s.backends == 1);

    // Frozen, the agent has its watches ended (as by their timeout) and
    // misses a new endpoint, whose event no watch carries; the history that
    // would let a watch resume is compacted away. Thawed, it resumes from
    // its old resourceVersion: 410, and only the relist can tell it.
    let node = cluster.expect(cluster.node("node-1"), "node-1");
    cluster.expect(node.set_agent_running(false), "freezing the agent");
    let api = cluster
        .api_server()
        .expect("a Kubernetes-mode cluster has an API server");
    cluster.expect(
        api.end_watches().map_err(anyhow::Error::from),
        "ending the watches",
    );
    apply(&mut cluster, S2, "adding a second endpoint");
    let api = cluster
        .api_server()
        .expect("a Kubernetes-mode cluster has an API server");
    cluster.expect(api.compact().map_err(anyhow::Error::from), "compacting");
    let node = cluster.expect(cluster.node("node-1"), "node-1");
    cluster.expect(node.set_agent_running(true), "thawing the agent");

    wait(&mut cluster, "the missed endpoint", |s| s.backends == 2);
    wait_ready(&cluster, "node-1", 200, Duration::from_secs(10));
    let vip = tcp([10, 96, 0, 51], 80);
    check_rows(&cluster, &[row("default/a", vip, &["s1", "s2"])]);
    let log = cluster.expect(cluster.node("node-1"), "node-1").agent_log();
    assert!(
        log.contains("Expired") && log.contains("watch recovered: relisted"),
        "the agent must have met the 410 and relisted:\n{log}"
    );
}

/// Steady loop while the API server is away: 10 requests a second.
const AWAY_LOOP: (u32, Duration) = (700, Duration::from_millis(100));

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_api_server_away_for_a_minute_keeps_traffic_flowing_then_resyncs() {
    let mut cluster = kubernetes_cluster(1);
    apply(&mut cluster, STEADY, "creating the steady Service");
    wait(&mut cluster, "one backend", |s| s.backends == 1);
    wait_ready(&cluster, "node-1", 200, Duration::from_secs(10));

    let vip = tcp([10, 96, 0, 51], 80);
    let node_port = (
        SocketAddrV4::new(weir_tests::node_address(1), 30092),
        Protocol::Tcp,
    );
    let mut loops = Vec::new();
    for (from, to) in [("default/a", vip), ("external", node_port)] {
        let origin = cluster.expect(cluster.origin(from), "origin");
        let steady = cluster.probe_loop(&origin, to, AWAY_LOOP);
        loops.push((from, cluster.expect(steady, "starting a request loop")));
    }

    let api = cluster
        .api_server()
        .expect("a Kubernetes-mode cluster has an API server");
    cluster.expect(
        api.outage(Duration::from_secs(60)).map_err(anyhow::Error::from),
        "starting the outage",
    );
    // The agent notices (its watches drop, relists are refused) and says so.
    wait_ready(&cluster, "node-1", 503, Duration::from_secs(15));
    let (_, reason) = readyz(&cluster, "node-1");
    assert!(reason.contains("watch of"), "not-ready reason: {reason:?}");

    // Back after the minute: ready again without a restart, and changes
    // made now reach the maps.
    wait_ready(&cluster, "node-1", 200, Duration::from_secs(60 + 45));
    apply(&mut cluster, S2, "adding a second endpoint after the outage");
    wait(&mut cluster, "the new endpoint", |s| s.backends == 2);

    for (from, steady) in loops {
        let replies = cluster.expect(steady.finish(), "finishing a request loop");
        assert!(
            replies.all_answered(),
            "{from}: {} of {} requests failed while the API server was away: {:?}",
            replies.failures().len(),
            replies.attempts.len(),
            replies.failures()
        );
    }
}

/// The agents' metrics port (default `metricsAddress`).
const METRICS_PORT: u16 = 9962;

/// The value of the sample `series` (name and labels, as exposed) in node
/// `name`'s metrics; `None` while there is none.
fn metric(cluster: &Cluster, name: &str, series: &str) -> Option<f64> {
    let node = cluster.expect(cluster.node(name), "finding a node");
    let (_, text) = cluster.expect(node.http_get(METRICS_PORT, "/metrics"), "GET /metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until `series` of node `name` is `value`.
fn wait_metric(cluster: &Cluster, name: &str, series: &str, value: f64) {
    poll(Duration::from_secs(15), || {
        let got = metric(cluster, name, series);
        (got == Some(value))
            .then_some(())
            .ok_or_else(|| format!("{name}: {series} is {got:?}, expected {value}"))
    });
}

const POLICY_OBJECTS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: team-a}
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

/// A Service whose port is out of range: skipped, with an Event.
const BAD_SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: bad, namespace: default}
spec:
  clusterIP: 10.96.0.66
  ports: [{name: http, port: 70000, targetPort: 8080}]
";

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn pods_namespaces_policies_and_bad_objects_reach_the_agents() {
    let mut cluster = kubernetes_cluster(2);
    apply(&mut cluster, WEB, "creating pods and the web Service");
    wait(&mut cluster, "the web Service", |s| s.backends == 2);

    // Pods: every agent holds every node's pods (a policy peer is a pod
    // anywhere), trimmed.
    for node in ["node-1", "node-2"] {
        wait_metric(&cluster, node, "weir_source_objects{resource=\"pods\"}", 3.0);
    }
    // Namespaces (default, kube-system, team-a) and NetworkPolicies: created,
    // then deleted. (Policy enforcement reads them from the same stores.)
    let before = metric(&cluster, "node-1", "weir_source_objects{resource=\"namespaces\"}").unwrap_or(0.0);
    apply(
        &mut cluster,
        POLICY_OBJECTS,
        "creating a Namespace and a NetworkPolicy",
    );
    for node in ["node-1", "node-2"] {
        wait_metric(
            &cluster,
            node,
            "weir_source_objects{resource=\"namespaces\"}",
            before + 1.0,
        );
        wait_metric(
            &cluster,
            node,
            "weir_source_objects{resource=\"networkpolicies\"}",
            1.0,
        );
    }
    let deleted = cluster.delete(&objects(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
    ));
    cluster.expect(deleted, "deleting the Namespace (and its policy)");
    for node in ["node-1", "node-2"] {
        wait_metric(
            &cluster,
            node,
            "weir_source_objects{resource=\"namespaces\"}",
            before,
        );
        wait_metric(
            &cluster,
            node,
            "weir_source_objects{resource=\"networkpolicies\"}",
            0.0,
        );
    }

    // A bad Service: skipped with a warning Event; everything else works.
    let api = cluster
        .api_server()
        .expect("a Kubernetes-mode cluster has an API server");
    cluster.expect(
        api.apply(BAD_SERVICE).map_err(anyhow::Error::from),
        "creating a bad Service",
    );
    wait_metric(
        &cluster,
        "node-1",
        "weir_source_objects{resource=\"services\"}",
        2.0,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events = cluster.expect(
            api.list("events.events.k8s.io", None, None)
                .map_err(anyhow::Error::from),
            "listing Events",
        );
        let about_bad: Vec<_> = events
            .into_iter()
            .filter(|e| e["regarding"]["name"] == "bad" && e["reason"] == "Skipped")
            .collect();
        if about_bad.len() >= 2 || Instant::now() >= deadline {
            break about_bad;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let reporters: Vec<_> = events.iter().map(|e| e["reportingInstance"].clone()).collect();
    assert_eq!(
        events.len(),
        2,
        "one Event per node about the bad Service, got {events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "Warning" && e["note"].as_str().is_some_and(|n| n.contains("70000"))),
        "{events:#?}"
    );
    assert!(
        reporters.contains(&"node-1".into()) && reporters.contains(&"node-2".into()),
        "{reporters:?}"
    );
    check_rows(
        &cluster,
        &[row("default/a", tcp([10, 96, 0, 50], 80), &["web-1", "web-2"])],
    );
}
