//! Restart without disruption: the agent's links are pinned, so its
//! programs keep serving while it is down — killed with SIGKILL, as a crash
//! or the OOM killer would — and a new agent adopts the links and maps
//! without a gap. Long-lived connections and a steady request loop through
//! a ClusterIP and a NodePort see no failure at all.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use weir_tests::{Cluster, ClusterConfig, Protocol, Replies, RunKind, Session, kube, node_address};

use crate::common::{ATTEMPT_TIMEOUT, binaries, cluster, restart_lock};

const OBJECTS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: s1, labels: {app: steady}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: s2, labels: {app: steady}}
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
metadata: {name: steady}
spec:
  type: NodePort
  clusterIP: 10.96.0.43
  selector: {app: steady}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30091}]
";

const NODES: [&str; 2] = ["node-1", "node-2"];

/// Steady loops: 25 requests a second for 4 s from each origin.
const LOOP: (u32, Duration) = (100, Duration::from_millis(40));

fn target(ip: Ipv4Addr, port: u16) -> (SocketAddrV4, Protocol) {
    (SocketAddrV4::new(ip, port), Protocol::Tcp)
}

/// Every exchange of every session, labelled; panics on a failure.
fn exchange_all(cluster: &Cluster, sessions: &mut [(String, Session)], when: &str) {
    for (what, session) in sessions {
        let attempt = cluster.expect(session.exchange(), &format!("exchange {what}"));
        if let Err(failure) = attempt {
            panic!("{what} {when}: the long-lived connection failed: {failure:?}");
        }
    }
}

fn assert_no_failure(what: &str, replies: &Replies) {
    assert!(
        replies.all_answered(),
        "{what}: {} of {} requests failed across the agent restart: {:?}",
        replies.failures().len(),
        replies.attempts.len(),
        replies.failures()
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn kill_9_and_restart_of_every_agent_fails_no_request() {
    kill_9_and_restart(|| cluster(2));
}

/// The same with agents watching the API server: a restarted agent
/// programs nothing (prunes nothing) before every kind is listed again.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn kill_9_and_restart_in_kubernetes_mode_fails_no_request() {
    let config = ClusterConfig {
        api_server: true,
        ..ClusterConfig::default()
    };
    kill_9_and_restart(|| {
        Cluster::new(binaries(), RunKind::Test, config)
            .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"))
    });
}

fn kill_9_and_restart(build: impl FnOnce() -> Cluster) {
    let _alone = restart_lock();
    let mut cluster = build();
    let objects = kube::parse_documents(OBJECTS).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the pods and Service");
    let loaded = cluster.wait_for_agents("the steady Service", |_, status| status.backends == 2);
    cluster.expect(loaded, "waiting for the agents");

    let vip = target(Ipv4Addr::new(10, 96, 0, 43), 80);
    let origins = [
        ("default/a", vip),
        ("node-2", vip),
        ("external", target(node_address(1), 30091)),
        ("external", target(node_address(2), 30091)),
    ];
    let mut sessions = Vec::new();
    let mut loops = Vec::new();
    for (from, to) in origins {
        let origin = cluster.expect(cluster.origin(from), "origin");
        let what = format!("{from} → {}", to.0);
        let session = cluster.session(&origin, to, ATTEMPT_TIMEOUT);
        sessions.push((what.clone(), cluster.expect(session, "starting a session")));
        let steady = cluster.probe_loop(&origin, to, LOOP);
        loops.push((what, cluster.expect(steady, "starting a request loop")));
    }
    exchange_all(&cluster, &mut sessions, "before the restart");

    std::thread::sleep(Duration::from_millis(500));
    for node in NODES {
        let killed = cluster.node_mut(node).and_then(weir_tests::Node::kill_agent);
        cluster.expect(killed, "killing an agent");
    }
    // Nobody home: the pinned programs and maps carry on alone.
    std::thread::sleep(Duration::from_millis(1000));
    exchange_all(&cluster, &mut sessions, "while the agents are down");

    for node in NODES {
        let node = cluster.node_mut(node).unwrap_or_else(|e| panic!("{e:#}"));
        let restarted = node.start_agent();
        node.expect(restarted, "restarting the agent");
        let log = node.agent_log();
        assert!(
            log.contains("adopted=6 attached=0"),
            "the restarted agent must adopt its 4 cgroup and 2 TCX links:\n{log}"
        );
    }
    exchange_all(&cluster, &mut sessions, "after the restart");

    for (what, steady) in loops {
        let replies = cluster.expect(steady.finish(), "finishing a request loop");
        assert_no_failure(&what, &replies);
    }
}
