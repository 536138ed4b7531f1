//! The operator CLI's agent-backed commands (`weir status`, `weir service
//! list|get`, `weir monitor`) against a two-node Kubernetes-mode cluster:
//! their JSON must say what the test applied — Services of several kinds
//! (multi-port ClusterIP, NodePort with `externalTrafficPolicy: Local`, a
//! hand-written slice with a terminating endpoint) and a NetworkPolicy.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::{Cluster, ClusterConfig, Protocol, RunKind, kube, node_address};

use crate::common::binaries;

const OBJECTS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: cli}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: cli, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: cli, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: cli}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: cli}
spec:
  clusterIP: 10.96.0.60
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: metrics}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: cli}
spec:
  type: NodePort
  clusterIP: 10.96.0.61
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30061}]
---
apiVersion: v1
kind: Service
metadata: {name: leaving, namespace: cli}
spec:
  clusterIP: 10.96.0.62
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web, namespace: cli}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
";

/// `leaving`'s slice: `ready` ready, `gone` terminating but still serving.
fn leaving_slice(ready: Ipv4Addr, gone: Ipv4Addr) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: leaving-1, namespace: cli, labels: {{kubernetes.io/service-name: leaving}}}}\n\
         addressType: IPv4\n\
         ports: [{{name: http, port: 8080, protocol: TCP}}]\n\
         endpoints:\n\
         - {{addresses: ['{ready}'], nodeName: node-1, conditions: {{ready: true, serving: true, terminating: false}}}}\n\
         - {{addresses: ['{gone}'], nodeName: node-2, conditions: {{ready: false, serving: true, terminating: true}}}}\n"
    )
}

fn apply(cluster: &mut Cluster, yaml: &str) {
    let objects = kube::parse_documents(yaml).unwrap_or_else(|e| panic!("test YAML: {e:#}\n{yaml}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying");
}

/// `weir ARGS` on `node`: the exit code and stdout (stderr in panics).
fn weir(cluster: &Cluster, node: &str, args: &[&str]) -> (i32, String, String) {
    let node = cluster.expect(cluster.node(node), "finding a node");
    let Output {
        status,
        stdout,
        stderr,
    } = cluster.expect(node.weir(args), "running weir");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `weir ARGS -o json` on `node`, which must succeed.
fn weir_json(cluster: &Cluster, node: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = weir(cluster, node, &all);
    assert_eq!(code, 0, "weir {args:?} on {node} exited {code}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("weir {args:?}: not JSON ({e}): {out}"))
}

/// Polls `weir status -o json` on `node` until `done` holds, within 20 s.
fn wait_status(cluster: &Cluster, node: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, _) = weir(cluster, node, &["status", "-o", "json"]);
        let status: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if code == 0 && done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{node}: weir status never got there: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cli_status_services_and_monitor_show_what_was_applied() {
    let config = ClusterConfig {
        api_server: true,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::new(binaries(), RunKind::Test, config)
        .unwrap_or_else(|err| panic!("building a Kubernetes-mode cluster: {err:#}"));
    apply(&mut cluster, OBJECTS);
    let ip = |key: &str| cluster.expect(cluster.pod(key), "finding a pod").ip;
    let (web1, web2) = (ip("cli/web-1"), ip("cli/web-2"));
    apply(&mut cluster, &leaving_slice(web1, web2));

    // status: node-1 serves 3 Services: multi (2 ports), local (ClusterIP +
    // NodePort on its one address), leaving; 4 distinct backends; one
    // policy selecting web-1; two local pods (web-1, client).
    let status = wait_status(&cluster, "node-1", |s| {
        s["ready"] == true
            && s["counts"]
                == json!({"services": 3, "frontends": 5, "backends": 4, "policies": 1, "endpoints": 2})
    });
    assert_eq!(status["node"]["name"], "node-1", "{status:#}");
    assert_eq!(status["node"]["pod_cidr"], "10.244.1.0/24", "{status:#}");
    assert_eq!(
        status["node"]["addresses"],
        json!([node_address(1).to_string()]),
        "{status:#}"
    );
    assert_eq!(status["agent"]["ip_family"], "ipv4", "{status:#}");
    assert!(status["generation"].as_u64().unwrap_or(0) >= 1, "{status:#}");
    assert!(
        status["last_sync"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{status:#}"
    );
    let services_map = status["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["map"] == "services"));
    let services_map = services_map.unwrap_or_else(|| panic!("no services map in {status:#}"));
    assert!(services_map["entries"].as_u64().unwrap_or(0) >= 5, "{status:#}");
    assert!(services_map["capacity"].as_u64().unwrap_or(0) > 0, "{status:#}");

    check_services(&cluster, web1, web2);

    // /v1/endpoints: web-1 is isolated for ingress by the policy.
    let node1 = cluster.expect(cluster.node("node-1"), "finding node-1");
    let (code, body) = cluster.expect(node1.http_get(9879, "/v1/endpoints"), "GET /v1/endpoints");
    assert_eq!(code, 200, "{body}");
    let endpoints: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let web = endpoints
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["pod"] == "cli/web-1");
    let web = web.unwrap_or_else(|| panic!("no cli/web-1 in {body}"));
    assert_eq!(web["isolated_ingress"], true, "{body}");
    assert_eq!(web["ingress_policies"], json!(["cli/deny-web"]), "{body}");

    // /v1/pods: every pod with its address and node, the other node's too.
    let (code, body) = cluster.expect(node1.http_get(9879, "/v1/pods"), "GET /v1/pods");
    assert_eq!(code, 200, "{body}");
    let pods: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    for (pod, ip, node) in [("cli/web-1", web1, "node-1"), ("cli/web-2", web2, "node-2")] {
        let listed = pods.as_array().into_iter().flatten().find(|p| p["pod"] == pod);
        let listed = listed.unwrap_or_else(|| panic!("no {pod} in {body}"));
        assert_eq!(
            (listed["ip"].as_str(), listed["node"].as_str()),
            (Some(ip.to_string().as_str()), Some(node)),
            "{body}"
        );
    }

    // monitor: a denied probe from client to web-1 is reported with the
    // pod and the policy. Probes repeat until the monitor (which connects
    // on its own time) has seen one.
    monitor_sees_the_drop(&cluster, web1);

    // Agent stopped: status says so with exit 3.
    let stopped = cluster.node_mut("node-1").and_then(weir_tests::Node::stop_agent);
    cluster.expect(stopped, "stopping node-1's agent");
    let (code, _, err) = weir(&cluster, "node-1", &["status"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not reachable"), "{err}");
    let (code, _, err) = weir(&cluster, "node-1", &["monitor"]);
    assert_eq!(code, 3, "{err}");
}

/// `weir service list|get` on node-1, as JSON and as tables.
fn check_services(cluster: &Cluster, web1: Ipv4Addr, web2: Ipv4Addr) {
    // service list: every Service, its frontends and backends.
    let list = weir_json(cluster, "node-1", &["service", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["leaving", "local", "multi"], "{list:#}");
    let multi = &list[2];
    assert_eq!(multi["type"], "ClusterIP", "{multi:#}");
    let frontends: Vec<&str> = multi["frontends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["address"].as_str())
        .collect();
    assert_eq!(
        frontends,
        ["10.96.0.60:80/TCP", "10.96.0.60:9090/TCP"],
        "{multi:#}"
    );
    assert_eq!(multi["backends"].as_array().map_or(0, Vec::len), 4, "{multi:#}");

    // service get: the NodePort with ETP Local sends external traffic to
    // this node's backend only, ClusterIP traffic to both.
    let local = weir_json(cluster, "node-1", &["service", "get", "cli/local"]);
    assert_eq!(local["type"], "NodePort", "{local:#}");
    assert_eq!(local["external_traffic_policy"], "Local", "{local:#}");
    let node_port = format!("{}:30061/TCP", node_address(1));
    let want = json!([
        {"address": "10.96.0.61:80/TCP", "kind": "clusterIP", "backends": [format!("{web1}:8080/TCP"), format!("{web2}:8080/TCP")]},
        {"address": node_port, "kind": "nodePort", "backends": [format!("{web1}:8080/TCP")]},
    ]);
    assert_eq!(local["frontends"], want, "{local:#}");

    // The terminating endpoint is listed, but gets no new connections.
    let leaving = weir_json(cluster, "node-1", &["service", "get", "cli/leaving"]);
    let want = json!([
        {"address": format!("{web1}:8080/TCP"), "node": "node-1", "state": "ready", "in_use": true},
        {"address": format!("{web2}:8080/TCP"), "node": "node-2", "state": "serving", "in_use": false},
    ]);
    let mut got = leaving["backends"].clone();
    if let Some(list) = got.as_array_mut() {
        list.sort_by_key(|b| b["node"].as_str().map(str::to_owned));
    }
    assert_eq!(got, want, "{leaving:#}");

    // The tables name the same things, for people.
    let (code, table, err) = weir(cluster, "node-1", &["status"]);
    assert!(
        code == 0 && table.contains("node-1") && table.contains("10.244.1.0/24"),
        "{err}\n{table}"
    );
    println!("weir status:\n{table}");
    let (code, table, err) = weir(cluster, "node-1", &["service", "list"]);
    assert!(
        code == 0 && table.contains("cli/local") && table.contains("(serving)"),
        "{err}\n{table}"
    );
    println!("weir service list:\n{table}");
    let (code, table, err) = weir(cluster, "node-1", &["service", "get", "cli/local"]);
    assert!(code == 0 && table.contains("nodePort"), "{err}\n{table}");
    println!("weir service get cli/local:\n{table}");

    // A missing Service: exit 5; a bad name: exit 1 with a message.
    let (code, _, err) = weir(cluster, "node-1", &["service", "get", "cli/nope"]);
    assert_eq!(code, 5, "{err}");
    let (code, _, err) = weir(cluster, "node-1", &["service", "get", "nope"]);
    assert!(code == 1 && err.contains("NAMESPACE/NAME"), "{code}: {err}");
}

fn monitor_sees_the_drop(cluster: &Cluster, web1: Ipv4Addr) {
    let node1 = cluster.expect(cluster.node("node-1"), "finding node-1");
    let mut monitor = node1
        .weir_command(&["monitor", "-o", "json", "--count", "1", "--namespace", "cli"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting weir monitor: {e}"));
    let client = cluster.expect(cluster.origin("cli/client"), "the client");
    let deadline = Instant::now() + Duration::from_secs(15);
    let exited = loop {
        let _ = cluster.probe(
            &client,
            (SocketAddrV4::new(web1, 8080), Protocol::Tcp),
            1,
            Duration::from_millis(300),
        );
        match monitor.try_wait() {
            Ok(Some(status)) => break Some(status),
            _ if Instant::now() > deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    if exited.is_none() {
        let _ = monitor.kill();
    }
    let _ = monitor.wait();
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = monitor.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = monitor.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "weir monitor did not report a drop within 15 s: {out} {err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let verdict: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(verdict["verdict"], "drop", "{verdict}");
    assert_eq!(verdict["direction"], "ingress", "{verdict}");
    assert_eq!(verdict["pod"], "cli/web-1", "{verdict}");
    assert_eq!(verdict["policies"], json!(["cli/deny-web"]), "{verdict}");
    assert_eq!(verdict["dport"], 8080, "{verdict}");
}
