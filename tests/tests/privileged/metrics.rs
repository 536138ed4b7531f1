//! The agent's ops endpoints seen from its node, as a kubelet probe and a
//! Prometheus scrape would: /healthz and /readyz after a sync, /metrics
//! with the numbers of what the maps hold, a full map counted and reported
//! (not ready, the Services that fit still answering), and the agent
//! configured by a file — a bad one stopping it at start.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use weir_tests::{Cluster, ClusterConfig, Node, RunKind, kube};

use crate::common::{
    ECHO_PODS, ECHO_PORT, ECHO_VIP, Expect, binaries, check_table, echo_node, echo_service, request,
    write_echo_service,
};

/// The agent's default ports.
const HEALTH_PORT: u16 = 9879;
const METRICS_PORT: u16 = 9962;

const OBJECTS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: w1, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: w2, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.60
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  clusterIP: 10.96.0.61
  selector: {app: web}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: dns}]
";

/// The value of the sample `series` (name with its labels, as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

fn get(node: &Node, port: u16, path: &str) -> (u16, String) {
    node.expect(node.http_get(port, path), &format!("GET {path}"))
}

/// Polls /metrics until `done` holds, for up to 10 s; the last scrape.
fn scrape_until(node: &Node, port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(node, port, "/metrics");
        if code == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never showed {what} ({code}):\n{body}\n{}",
            node.agent_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn health_ready_and_metrics_describe_a_synced_node() {
    let mut config = ClusterConfig {
        nodes: 1,
        ..ClusterConfig::default()
    };
    config
        .agent_args
        .extend(["--map-size-backends".to_owned(), "4099".to_owned()]);
    let mut cluster = Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a cluster: {err:#}"));
    let objects = kube::parse_documents(OBJECTS).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the objects");
    let loaded = cluster.wait_for_agents("2 frontends, 4 backends", |_, status| {
        status.frontends == 2 && status.backends == 4
    });
    cluster.expect(loaded, "waiting for the agent");
    let node = cluster.expect(cluster.node("node-1"), "node-1");

    assert_eq!(get(node, HEALTH_PORT, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(node, HEALTH_PORT, "/readyz"), (200, "ok\n".to_owned()));
    assert_eq!(
        get(node, HEALTH_PORT, "/metrics").0,
        404,
        "metrics are on their own port"
    );
    let metrics = scrape_until(node, METRICS_PORT, "2 Services", |m| {
        sample(m, "weir_services_programmed") == Some(2.0)
    });
    for (series, expected) in [
        ("weir_frontends_programmed", 2.0),
        ("weir_backends_programmed", 4.0),
        ("weir_policies_programmed", 0.0),
        ("weir_ready", 1.0),
        ("weir_map_capacity{map=\"backends\"}", 4099.0),
        ("weir_map_entries{map=\"backends\"}", 4.0),
        ("weir_map_capacity{map=\"services\"}", 65536.0),
        // Two frontends with two backends each: (2 + 1) entries apiece.
        ("weir_map_entries{map=\"services\"}", 6.0),
        ("weir_map_capacity{map=\"nat\"}", 262_144.0),
    ] {
        assert_eq!(value(&metrics, series), expected, "{series} in:\n{metrics}");
    }
    assert!(value(&metrics, "weir_network_programming_duration_seconds_count") >= 1.0);
    assert!(value(&metrics, "weir_sync_duration_seconds_count") >= 1.0);
    assert!(value(&metrics, "weir_sync_passes_total{result=\"ok\"}") >= 1.0);

    let log = node.agent_log();
    for needle in [
        "weir-agent starting",
        "datapath=\"socket-lb+tc\"",
        "this node's addresses",
        "node_ip=198.18.0.11 pod_cidr=10.244.1.0/24",
    ] {
        assert!(log.contains(needle), "no {needle:?} in the agent log:\n{log}");
    }
}

/// Two Services of (1 + 3) service-map entries each; the map holds 6.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_full_map_is_counted_and_not_ready_while_the_services_that_fit_still_answer() {
    let mut node = echo_node();
    node.agent_args_mut()
        .extend(["--map-size-services".to_owned(), "6".to_owned()]);
    write_echo_service(&node);
    let started = node.start_agent();
    node.expect(started, "starting weir-agent");
    assert_eq!(get(&node, HEALTH_PORT, "/readyz").0, 200);

    let second_vip = Ipv4Addr::new(10, 96, 0, 11);
    let mut second = echo_service(&ECHO_PODS);
    second.name = "echo-two".to_owned();
    second.cluster_ip = second_vip;
    node.expect(
        node.manifests().write_service(&second),
        "writing a second Service",
    );

    let metrics = scrape_until(&node, METRICS_PORT, "a map_full error", |m| {
        sample(
            m,
            "weir_reconcile_errors_total{reconciler=\"lb\",reason=\"map_full\"}",
        )
        .is_some_and(|n| n > 0.0)
    });
    assert_eq!(value(&metrics, "weir_ready"), 0.0, "{metrics}");
    assert_eq!(value(&metrics, "weir_map_capacity{map=\"services\"}"), 6.0);
    // The first Service as it was; none of the second's master entry.
    assert_eq!(value(&metrics, "weir_frontends_programmed"), 1.0, "{metrics}");
    let (code, reason) = get(&node, HEALTH_PORT, "/readyz");
    assert_eq!(code, 503, "{reason}");
    assert!(
        reason.contains("weir_lb4_services") && reason.contains("full"),
        "/readyz does not name the full map: {reason}"
    );
    assert_eq!(
        get(&node, HEALTH_PORT, "/healthz").0,
        200,
        "a full map is no wedged loop"
    );
    let all: Vec<&str> = ECHO_PODS.iter().map(|(name, _)| *name).collect();
    check_table(
        &node,
        &[
            Expect {
                source: "client",
                destination: SocketAddrV4::new(ECHO_VIP, ECHO_PORT),
                answered_by: &all,
                tries: crate::common::TRIES_FOR_ALL,
            },
            // Not half there: the VIP is not translated at all.
            Expect {
                source: "client",
                destination: SocketAddrV4::new(second_vip, ECHO_PORT),
                answered_by: &[],
                tries: 3,
            },
        ],
    );
    // The Service that does not fit goes away: ready again, nothing lost.
    for file in [second.service_file(), second.endpointslice_file()] {
        node.expect(node.manifests().remove(&file), "removing the second Service");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&node, HEALTH_PORT, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again:\n{}",
            node.agent_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let replies = request(&node, "client", SocketAddrV4::new(ECHO_VIP, ECHO_PORT), 3);
    assert!(replies.all_answered(), "{replies:?}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_config_file_configures_the_agent_and_a_bad_one_stops_it_at_start() {
    const PORT: u16 = 19_879;
    let mut node = echo_node();
    write_echo_service(&node);
    let file = node.run_dir().join("agent.yaml");
    let good = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: AgentConfiguration\n\
         lbAlgorithm: maglev\nlogLevel: debug\nmapSizes: {{services: 4093}}\n\
         healthAddress: 0.0.0.0:{PORT}\nmetricsAddress: 0.0.0.0:{PORT}\n"
    );
    node.expect(
        std::fs::write(&file, good).map_err(Into::into),
        "writing the config",
    );
    node.agent_args_mut()
        .extend(["--config".to_owned(), file.display().to_string()]);
    let started = node.start_agent();
    let status = node.expect(started, "starting weir-agent with --config");
    assert_eq!((status.frontends, status.backends), (1, 3), "{status:?}");
    // One listener for all three paths, on the file's port.
    assert_eq!(get(&node, PORT, "/readyz").0, 200);
    let metrics = scrape_until(&node, PORT, "the file's map size", |m| {
        sample(m, "weir_map_capacity{map=\"services\"}") == Some(4093.0)
    });
    assert_eq!(value(&metrics, "weir_frontends_programmed"), 1.0);
    assert_eq!(
        get(&node, METRICS_PORT, "/metrics").0,
        0,
        "the default port is not served"
    );
    let log = node.agent_log();
    assert!(log.contains(&format!("config_file={}", file.display())), "{log}");
    assert!(log.contains("lb_algorithm=\"maglev\""), "{log}");
    let stopped = node.stop_agent();
    node.expect(stopped, "stopping weir-agent");

    // A typo'd key: refused before anything is touched, the key named.
    node.expect(
        std::fs::write(&file, "clusterCidr: 10.244.0.0/16\n").map_err(Into::into),
        "writing the bad config",
    );
    let launched = node.start_agent_nowait();
    node.expect(launched, "starting weir-agent with a bad config");
    let exit = node.wait_for_agent_exit(Duration::from_secs(10));
    let exit = node.expect(exit, "waiting for weir-agent to refuse its config");
    assert!(!exit.success(), "weir-agent accepted a bad config: {exit}");
    let log = node.agent_log();
    let tail = log.rsplit("weir-agent starting").next().unwrap_or(&log);
    assert!(
        tail.contains("clusterCidr") && tail.contains(&file.display().to_string()),
        "the error names neither the key nor the file:\n{tail}"
    );
}
