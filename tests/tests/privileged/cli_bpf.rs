//! `weir bpf …` and `weir ipam list` (issue #7) against a live two-node
//! Kubernetes-mode cluster: every command's JSON is checked against the
//! state the test created (Services, pods, a NetworkPolicy, a NodePort flow
//! from the external client), then the agent is killed and the maps are
//! still readable; a node without pins answers exit code 4.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_tests::{Cluster, ClusterConfig, Node, Protocol, RunKind, kube};

use crate::common::{Row, binaries, check_rows, empty_node, node_mut};

/// The NodePort of the `web` Service.
const NODE_PORT: u16 = 30093;

/// Pods on both nodes, a NodePort Service and a ClusterIP one over the
/// `web` pods, and a policy isolating their ingress: clients by label, and
/// the fabric (so NodePort traffic from the external client still passes).
const OBJECTS: &str = "
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
metadata: {name: a, labels: {role: client}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {role: client}}
spec:
  nodeName: node-2
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.96.0.60
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30093}]
---
apiVersion: v1
kind: Service
metadata: {name: web-alt}
spec:
  clusterIP: 10.96.0.61
  selector: {app: web}
  ports: [{name: http, port: 81, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{protocol: TCP, port: 8080}]
  - from: [{ipBlock: {cidr: 198.18.0.0/24}}]
    ports: [{protocol: TCP, port: 8080}]
";

fn cluster() -> Cluster {
    let config = ClusterConfig {
        nodes: 2,
        api_server: true,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"));
    let objects = kube::parse_documents(OBJECTS).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the pods, Services and policy");
    cluster
}

/// `weir ARGS` on `node`; panics with both outputs when it cannot run.
fn weir(node: &Node, args: &[&str]) -> Output {
    node.expect(node.weir(args), &format!("running weir {}", args.join(" ")))
}

/// `weir ARGS -o json` on `node`, which must succeed, as JSON.
fn weir_json(node: &Node, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = weir(node, &all);
    assert!(
        out.status.success(),
        "weir {}: {}\nstdout: {}\nstderr: {}",
        all.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "weir {}: not JSON ({e}): {}",
            all.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `weir ARGS -o json` until `done` holds (10 s).
fn wait_json(node: &Node, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = weir_json(node, args);
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 10 s; last answer {value:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pod_ip(cluster: &Cluster, key: &str) -> Ipv4Addr {
    cluster.expect(cluster.pod(key), "finding a pod").ip
}

/// The frontend `address:port` of `weir bpf lb list`'s JSON.
fn frontend<'a>(list: &'a Value, address: &str, port: u16) -> Option<&'a Value> {
    list["frontends"]
        .as_array()?
        .iter()
        .find(|f| f["address"] == address && f["port"] == port)
}

/// `address:port` of each backend of a frontend.
fn backends(frontend: &Value) -> BTreeSet<String> {
    frontend["backends"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| format!("{}:{}", b["address"].as_str().unwrap_or("?"), b["port"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Addresses the checks compare with.
#[derive(Clone, Copy)]
struct Ips {
    web1: Ipv4Addr,
    web2: Ipv4Addr,
    a: Ipv4Addr,
    b: Ipv4Addr,
    node1: Ipv4Addr,
}

impl Ips {
    fn web_backends(&self) -> BTreeSet<String> {
        [format!("{}:8080", self.web1), format!("{}:8080", self.web2)].into()
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bpf_and_ipam_commands_show_the_clusters_state_and_outlive_the_agent() {
    let mut cluster = cluster();
    let ips = Ips {
        web1: pod_ip(&cluster, "default/web-1"),
        web2: pod_ip(&cluster, "default/web-2"),
        a: pod_ip(&cluster, "default/a"),
        b: pod_ip(&cluster, "default/b"),
        node1: weir_tests::node_address(1),
    };
    let node1 = cluster.expect(cluster.node("node-1"), "node-1");
    let lb = check_lb(node1, &ips);
    check_policy(node1, &ips);
    check_ct(&cluster, &ips);
    let node1 = cluster.expect(cluster.node("node-1"), "node-1");
    check_maps(node1);
    check_ipam(node1);
    let web1_text = ips.web1.to_string();

    // The agent crashes: the maps stay pinned and readable.
    let killed = node_mut(&mut cluster, "node-1").kill_agent();
    cluster.expect(killed, "killing node-1's agent");
    let node1 = cluster.expect(cluster.node("node-1"), "node-1");
    assert_eq!(weir_json(node1, &["bpf", "lb", "list"]), lb);
    let unresolved = weir(node1, &["bpf", "policy", "get", "default/web-1"]);
    let stderr = String::from_utf8_lossy(&unresolved.stderr);
    assert_eq!(unresolved.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("give the pod's IP"), "{stderr}");
    assert_eq!(
        weir_json(node1, &["bpf", "policy", "get", &web1_text])["ingress_isolated"],
        true
    );
}

/// `bpf lb list`: both Services' frontends, the NodePort one external, web-1 local.
fn check_lb(node1: &Node, ips: &Ips) -> Value {
    let (web1, node1_ip, web_backends) = (ips.web1, ips.node1, ips.web_backends());
    let lb = wait_json(node1, &["bpf", "lb", "list"], "the Services' frontends", |lb| {
        [
            ("10.96.0.60", 80),
            ("10.96.0.61", 81),
            (&node1_ip.to_string()[..], NODE_PORT),
        ]
        .iter()
        .all(|(address, port)| frontend(lb, address, *port).is_some_and(|f| backends(f) == web_backends))
    });
    let cluster_ip = frontend(&lb, "10.96.0.60", 80).expect("the ClusterIP frontend");
    assert_eq!(cluster_ip["protocol"], "TCP");
    assert_eq!(cluster_ip["backend_count"], 2);
    let local: Vec<&Value> = cluster_ip["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["local"] == true)
        .collect();
    assert_eq!(local.len(), 1, "{cluster_ip:#}");
    assert_eq!(local[0]["address"], web1.to_string());
    let node_port = frontend(&lb, &node1_ip.to_string(), NODE_PORT).expect("the NodePort frontend");
    assert!(
        node_port["flags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("external")),
        "{node_port:#}"
    );

    lb
}

/// `bpf policy get`: web-1 is ingress-isolated; its peers are a, b and the fabric.
fn check_policy(node1: &Node, ips: &Ips) {
    let (web1, a, b) = (ips.web1, ips.a, ips.b);
    let web1_text = web1.to_string();
    let policy = wait_json(
        node1,
        &["bpf", "policy", "get", &web1_text],
        "web-1's policy",
        |p| p["ingress_isolated"] == true && p["ingress"].as_array().is_some_and(|e| e.len() >= 3),
    );
    assert_eq!(policy["egress_isolated"], false);
    let ingress = policy["ingress"].as_array().unwrap();
    // Peers are named wherever they run: a on node-1, b on node-2.
    let peers = [
        (format!("{a}/32"), Some("default/a")),
        (format!("{b}/32"), Some("default/b")),
        ("198.18.0.0/24".to_owned(), None),
    ];
    for (peer, name) in peers {
        let entry = ingress
            .iter()
            .find(|e| e["peer"] == peer.as_str())
            .unwrap_or_else(|| panic!("no ingress entry for {peer} in {policy:#}"));
        assert_eq!(entry["peer_pod"].as_str(), name, "{policy:#}");
        assert_eq!(entry["deny"], false);
        let allow = &entry["allow"][0];
        assert_eq!(
            (allow["protocol"].as_str(), &allow["first"], &allow["last"]),
            (Some("tcp"), &8080.into(), &8080.into())
        );
    }
    let by_name = weir_json(node1, &["bpf", "policy", "get", "default/web-1"]);
    assert_eq!(by_name["ip"], web1_text);
    assert_eq!(by_name["pod"], "default/web-1");
    let missing = weir(node1, &["bpf", "policy", "get", "10.244.1.250"]);
    assert_eq!(
        missing.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// `bpf ct list`, `bpf nat list`: a NodePort flow from the external client shows with its tuple.
fn check_ct(cluster: &Cluster, ips: &Ips) {
    let (node1_ip, web_backends) = (ips.node1, ips.web_backends());
    let node_port_target = (SocketAddrV4::new(node1_ip, NODE_PORT), Protocol::Tcp);
    check_rows(
        cluster,
        &[Row {
            from: "external",
            to: node_port_target,
            answered_by: &["web-1", "web-2"],
            seen_from: None,
            tries: 12,
        }],
    );
    let node1 = cluster.expect(cluster.node("node-1"), "node-1");
    let ct = weir_json(
        node1,
        &["bpf", "ct", "list", "--address", "198.18.0.100", "--proto", "tcp"],
    );
    let entries = ct["entries"].as_array().unwrap();
    let inbound: Vec<&Value> = entries
        .iter()
        .filter(|e| e["table"] == "nat" && e["direction"] == "ingress" && e["destination_port"] == NODE_PORT)
        .collect();
    assert!(!inbound.is_empty(), "no NodePort flow in {ct:#}");
    for e in &inbound {
        assert_eq!(
            (&e["source"], &e["destination"]),
            (&"198.18.0.100".into(), &node1_ip.to_string().into())
        );
        assert_eq!(
            (&e["protocol"], &e["origin"]),
            (&"tcp".into(), &"nodeport".into())
        );
        let to = format!(
            "{}:{}",
            e["rewrite"]["destination"].as_str().unwrap(),
            e["rewrite"]["destination_port"]
        );
        assert!(web_backends.contains(&to), "rewritten to {to}: {e:#}");
        assert!(e["age_secs"].as_u64().is_some_and(|age| age < 120), "{e:#}");
    }
    let counts = weir_json(
        node1,
        &["bpf", "ct", "list", "--address", "198.18.0.100", "--count"],
    );
    assert!(
        counts["nat"].as_u64().unwrap() >= inbound.len() as u64,
        "{counts:#}"
    );
    let nat = weir_json(node1, &["bpf", "nat", "list"]);
    assert_eq!(nat["masquerade"]["node_ip"], node1_ip.to_string());
    assert!(!nat["translations"].as_array().unwrap().is_empty(), "{nat:#}");
}

/// `bpf maps`: every map weir pins, with its capacity.
fn check_maps(node1: &Node) {
    let maps = weir_json(node1, &["bpf", "maps"]);
    let maps = maps["maps"].as_array().unwrap();
    for (name, kind) in [
        ("weir_lb4_services_v1", "hash"),
        ("weir_lb4_backends_v1", "hash"),
        ("weir_lb4_maglev_v1", "hash"),
        ("weir_lb4_affinity_v1", "lru_hash"),
        ("weir_lb4_reverse_sk_v1", "lru_hash"),
        ("weir_nat4_v2", "lru_hash"),
        ("weir_masq_cfg_v1", "array"),
        ("weir_masq_skip4_v1", "lpm_trie"),
        ("weir_pol_endpoints_v1", "hash"),
        ("weir_pol_rules_v1", "lpm_trie"),
        ("weir_pol_ct_v1", "lru_hash"),
        ("weir_pol_hosts_v1", "hash"),
        ("weir_pol_verdicts_v1", "ringbuf"),
        ("weir_pol_cfg_v1", "array"),
    ] {
        let map = maps
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {maps:#?}"));
        assert_eq!(map["type"], kind, "{map:#}");
        assert!(map["capacity"].as_u64().is_some_and(|c| c > 0), "{map:#}");
        assert_eq!(map["version"], if name.ends_with("_v2") { 2 } else { 1 });
    }
    let nat_map = maps.iter().find(|m| m["name"] == "weir_nat4_v2").unwrap();
    assert_eq!(nat_map["capacity"], 262_144);
    assert!(nat_map["entries"].as_u64().is_some_and(|n| n >= 2), "{nat_map:#}");
}

/// `ipam list`: each pod of node-1, and only those.
fn check_ipam(node1: &Node) {
    let conf_dir = node1.run_dir().join("cni/net.d");
    let ipam = weir_json(
        node1,
        &["ipam", "list", "--cni-conf-dir", conf_dir.to_str().unwrap()],
    );
    assert_eq!(ipam["subnet"], "10.244.1.0/24");
    let listed: BTreeSet<(String, String)> = ipam["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["ip"].as_str().unwrap().to_owned(),
                a["container_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = node1
        .pods()
        .iter()
        .map(|p| (p.ip.to_string(), p.container_id.clone()))
        .collect();
    assert_eq!(listed, expected, "{ipam:#}");
    assert_eq!(ipam["free"], 253 - expected.len());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn without_pinned_maps_bpf_commands_exit_4_and_say_why() {
    let node = empty_node();
    for args in [
        &["bpf", "maps"][..],
        &["bpf", "lb", "list"],
        &["bpf", "ct", "list", "--count"],
    ] {
        let out = weir(&node, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "weir {}: {stderr}", args.join(" "));
        assert!(
            stderr.contains("cannot open the pinned maps"),
            "weir {}: {stderr}",
            args.join(" ")
        );
    }
}
