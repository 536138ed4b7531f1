//! Topologies and expectations shared by the tests.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use weir_tests::{Binaries, Cluster, ClusterConfig, Node, Protocol, Replies, RunKind, ServiceSpec};

/// The echo Service's ClusterIP (as in examples/lab/service.yaml).
pub const ECHO_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The echo Service's port.
pub const ECHO_PORT: u16 = 80;

/// Where the echo pods listen (the Service's targetPort).
pub const ECHO_TARGET_PORT: u16 = 8080;

/// The one-node backends, in creation order, with the addresses `weir-cni`
/// hands out from a fresh store (the EndpointSlice lists them).
pub const ECHO_PODS: [(&str, Ipv4Addr); 3] = [
    ("echo-a", Ipv4Addr::new(10, 244, 1, 2)),
    ("echo-b", Ipv4Addr::new(10, 244, 1, 3)),
    ("echo-c", Ipv4Addr::new(10, 244, 1, 4)),
];

/// The pod requests come from.
pub const CLIENT: &str = "client";

/// Per-attempt limit. A rewritten connect is answered in microseconds; this only
/// bounds how long a failing attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Tries within which every one of three random backends must have answered:
/// the chance that one is missed by chance is 3·(2/3)^60 < 1e-10.
pub const TRIES_FOR_ALL: u32 = 60;

/// The binaries under test, with the `weir-probe` cargo built for this test.
pub fn binaries() -> Binaries {
    Binaries::from_env().with_probe(env!("CARGO_BIN_EXE_weir-probe"))
}

/// `examples/lab` of the workspace.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/lab")
}

/// A cluster of `nodes` nodes with their agents (conflists written, routes in).
pub fn cluster(nodes: usize) -> Cluster {
    let config = ClusterConfig {
        nodes,
        ..ClusterConfig::default()
    };
    Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a cluster: {err:#}"))
}

/// An empty node (netns, cgroup, bpffs).
pub fn empty_node() -> Node {
    Node::new(binaries(), RunKind::Test).unwrap_or_else(|err| panic!("building a node: {err:#}"))
}

/// The lab's pods without the agent: echo-a/b/c serving their names on 8080,
/// then the client pod, all attached by `weir-cni` in that order. The manifest
/// directory is still empty.
pub fn echo_node() -> Node {
    let mut node = empty_node();
    for (name, expected_ip) in ECHO_PODS {
        let added = node_add_pod(&mut node, name);
        let pod = node.expect(added, "adding an echo pod");
        assert_eq!(
            pod, expected_ip,
            "weir-cni gave {name} {pod}, but the echo EndpointSlice expects {expected_ip}"
        );
        let served = node.serve(name, name, ECHO_TARGET_PORT);
        node.expect(served, "starting an echo server");
    }
    let client = node_add_pod(&mut node, CLIENT);
    node.expect(client, "adding the client pod");
    node
}

/// Writes the echo Service and its EndpointSlice (all three backends) into
/// the agent's manifest directory.
pub fn write_echo_service(node: &Node) {
    node.expect(
        node.manifests().write_service(&echo_service(&ECHO_PODS)),
        "writing the echo Service",
    );
}

/// [`echo_node`] with the agent running on the echo Service.
pub fn echo_node_with_agent() -> Node {
    let mut node = echo_node();
    write_echo_service(&node);
    let started = node.start_agent();
    let status = node.expect(started, "starting weir-agent");
    assert_eq!(
        (status.frontends, status.backends),
        (1, 3),
        "agent status after loading the echo Service: {status:?}"
    );
    node
}

/// The `echo` Service with only the given backends (same names and ports as
/// [`write_echo_service`], so it can replace those files).
pub fn echo_service(endpoints: &[(&str, Ipv4Addr)]) -> ServiceSpec {
    ServiceSpec {
        name: "echo".to_owned(),
        cluster_ip: ECHO_VIP,
        port_name: "http".to_owned(),
        port: ECHO_PORT,
        target_port: ECHO_TARGET_PORT,
        endpoints: endpoints
            .iter()
            .map(|(pod, ip)| ((*pod).to_owned(), *ip))
            .collect(),
    }
}

/// Adds pod `name` and returns its IP.
fn node_add_pod(node: &mut Node, name: &str) -> anyhow::Result<Ipv4Addr> {
    node.add_pod(name).map(|pod| pod.ip)
}

/// `tries` connections from `from` to `to`; panics if the probe itself could not run.
pub fn request(node: &Node, from: &str, to: SocketAddrV4, tries: u32) -> Replies {
    node.expect(
        node.connect(from, to, tries, ATTEMPT_TIMEOUT),
        &format!("probing {to} from {from}"),
    )
}

/// One row of an expectation table: from `source`, connections to `destination`
/// are answered by exactly the servers in `answered_by` (all of them, and only
/// them) — or, if it is empty, by nobody.
pub struct Expect<'a> {
    /// Pod the connections come from.
    pub source: &'a str,
    /// Address dialled.
    pub destination: SocketAddrV4,
    /// Names of the servers that must answer; empty: every attempt must fail.
    pub answered_by: &'a [&'a str],
    /// Attempts to make.
    pub tries: u32,
}

/// Checks every row, then panics listing every row that failed.
pub fn check_table(node: &Node, rows: &[Expect<'_>]) {
    let mut failures = Vec::new();
    for row in rows {
        let replies = request(node, row.source, row.destination, row.tries);
        let answered: BTreeSet<&str> = replies.counts().keys().copied().collect();
        let expected: BTreeSet<&str> = row.answered_by.iter().copied().collect();
        let ok = if expected.is_empty() {
            replies.none_answered()
        } else {
            replies.all_answered() && answered == expected
        };
        if !ok {
            failures.push(format!(
                "{} -> {}: expected {} in {} tries, got answers {:?}, failures {:?}",
                row.source,
                row.destination,
                if expected.is_empty() {
                    "no answer".to_owned()
                } else {
                    format!("exactly {expected:?}")
                },
                row.tries,
                replies.counts(),
                replies.failures(),
            ));
        }
    }
    // The node's drop prints the agent's log after this panic.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Node `name` of `cluster`, to change it.
pub fn node_mut<'a>(cluster: &'a mut Cluster, name: &str) -> &'a mut Node {
    cluster.node_mut(name).unwrap_or_else(|err| panic!("{err:#}"))
}

/// One row of a cluster expectation table: from `from`, attempts to `to` are
/// answered by exactly the servers in `answered_by` (all of them, and only
/// them; empty: by nobody), and every server saw them come from `seen_from`
/// (`None`: not checked) — the source address, kept or rewritten.
pub struct Row<'a> {
    /// Pod (`namespace/name`), node name or `external`.
    pub from: &'a str,
    /// Address and transport dialled.
    pub to: (SocketAddrV4, Protocol),
    /// Names of the servers that must answer; empty: every attempt must fail.
    pub answered_by: &'a [&'a str],
    /// The only source address the servers may have seen.
    pub seen_from: Option<Ipv4Addr>,
    /// Attempts to make.
    pub tries: u32,
}

/// Checks every row, then panics listing every row that failed.
pub fn check_rows(cluster: &Cluster, rows: &[Row<'_>]) {
    let mut failures = Vec::new();
    for row in rows {
        let origin = cluster.expect(cluster.origin(row.from), "reading a row's origin");
        let replies = cluster.probe(&origin, row.to, row.tries, ATTEMPT_TIMEOUT);
        let replies = cluster.expect(replies, &format!("probing {:?} from {}", row.to, row.from));
        let answered: BTreeSet<&str> = replies.counts().keys().copied().collect();
        let expected: BTreeSet<&str> = row.answered_by.iter().copied().collect();
        let mut ok = if expected.is_empty() {
            replies.none_answered()
        } else {
            replies.all_answered() && answered == expected
        };
        if let Some(source) = row.seen_from {
            ok &= replies.peer_ips().iter().all(|ip| *ip == source);
        }
        if let Some(why) = trace_disagrees(cluster, row, &origin) {
            failures.push(why);
        }
        if !ok {
            failures.push(format!(
                "{} -> {}/{}: expected {} in {} tries{}, got answers {:?} seen from {:?}, failures {:?}",
                row.from,
                row.to.0,
                row.to.1,
                if expected.is_empty() {
                    "no answer".to_owned()
                } else {
                    format!("exactly {expected:?}")
                },
                row.tries,
                row.seen_from
                    .map(|ip| format!(" seen from {ip}"))
                    .unwrap_or_default(),
                replies.counts(),
                replies.peer_ips(),
                replies.failures(),
            ));
        }
    }
    // The cluster's drop prints every agent's log after this panic.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Why `weir trace`'s prediction for `row` (run where the flow starts)
/// does not fit the row's expectation, if it does not: a row nobody
/// answers must not be predicted delivered (unless no frontend is involved:
/// then a closed port refuses), an answered one not refused
/// or dropped, and when a frontend translates the flow its candidates (or
/// the backend affinity/Maglev picks) must be exactly the servers that
/// may answer.
fn trace_disagrees(cluster: &Cluster, row: &Row<'_>, origin: &weir_tests::Origin) -> Option<String> {
    let what = format!("{} -> {}/{}", row.from, row.to.0, row.to.1);
    let prediction = match weir_tests::trace::predict(cluster, origin, row.to) {
        Ok(Some(prediction)) => prediction,
        Ok(None) => return None,
        Err(e) => return Some(format!("{what}: weir trace failed: {e:#}")),
    };
    let answered = !row.answered_by.is_empty();
    let translated = !prediction.json["frontend"].is_null();
    // A packet delivered to a port nobody listens on is refused by the
    // pod, not the datapath: the trace predicts the network's part only.
    let closed_port = !answered && !translated;
    if !closed_port && !prediction.allows(answered) {
        return Some(format!(
            "{what}: weir trace predicts {:?}, the row expects {}\n{:#}",
            prediction.summary,
            if answered { "answers" } else { "no answer" },
            prediction.json
        ));
    }
    let servers: Option<BTreeSet<Ipv4Addr>> = row
        .answered_by
        .iter()
        .map(|name| cluster.pod(name).ok().map(|p| p.ip))
        .collect();
    let backends: BTreeSet<Ipv4Addr> = prediction.backends.iter().copied().collect();
    match servers {
        Some(servers) if answered && translated && servers != backends => Some(format!(
            "{what}: weir trace names backends {backends:?}, the row expects {servers:?}\n{:#}",
            prediction.json
        )),
        _ => None,
    }
}

/// Held by tests that assert zero failed requests across agent restarts:
/// two of them at once put four program loads (the verifier runs without
/// yielding for long stretches) on the two cores, which can stall a probe
/// past its 1 s attempt timeout — the machine's limit, not weir's.
pub fn restart_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
