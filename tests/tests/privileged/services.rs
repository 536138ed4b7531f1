//! Service rows on two nodes, in the style of kube-proxy's packet-flow
//! tests: who dials what, which backends may answer, and the source address
//! they must see. NodePort (SNAT to a remote backend; externalTrafficPolicy
//! Local keeping the client and refusing on a node without endpoints, with
//! its health check), DNS-style UDP through the socket hooks, and refusal of
//! a Service without endpoints.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;

use weir_tests::kube;
use weir_tests::{Cluster, EXTERNAL_ADDRESS, Protocol, node_address};

use crate::common::{Row, TRIES_FOR_ALL, check_rows, cluster};

const OBJECTS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: w1, labels: {app: web, tier: one}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: w2, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: remote-only}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  selector: {app: web}
  externalIPs: [203.0.113.10]
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: local-only}
spec:
  type: NodePort
  clusterIP: 10.96.0.31
  externalTrafficPolicy: Local
  healthCheckNodePort: 32001
  selector: {tier: one}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  clusterIP: 10.96.0.53
  selector: {app: web}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: dns}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  clusterIP: 10.96.0.99
  selector: {app: nothing}
  ports: [{port: 80}]
";

fn tcp(ip: Ipv4Addr, port: u16) -> (SocketAddrV4, Protocol) {
    (SocketAddrV4::new(ip, port), Protocol::Tcp)
}

/// The HTTP status the external client gets from `url`.
fn http_status(cluster: &Cluster, url: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", cluster.external_netns().path().display()))
        .args([
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "3",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("running curl in the external netns");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn node_ports_udp_dns_and_empty_services_behave_as_kube_proxy() {
    let mut cluster = cluster(2);
    let objects = kube::parse_documents(OBJECTS).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the objects");
    // 4 Services: remote-only 3 frontends (ClusterIP, NodePort, externalIP), local-only 2,
    // dns 1, empty 1 = 7 frontends on every node.
    let loaded = cluster.wait_for_agents("7 frontends", |_, status| {
        status.frontends == 7 && status.backends >= 3
    });
    cluster.expect(loaded, "waiting for the agents");
    let client = cluster.expect(cluster.pod("default/client").map(|p| p.ip), "the client");
    let (node1, node2) = (node_address(1), node_address(2));
    // The external client reaches the externalIP through node-1, as an
    // upstream router would.
    run_in(
        &cluster.external_netns().path(),
        &["ip", "route", "add", "203.0.113.10/32", "via", &node1.to_string()],
    );

    check_rows(
        &cluster,
        &[
            // ETP Cluster on node-1: w2 lives on node-2, so the connection is
            // SNATed to node-1 and w2 sees node-1's address...
            Row {
                from: "external",
                to: tcp(node1, 30080),
                answered_by: &["w1", "w2"],
                seen_from: None,
                tries: TRIES_FOR_ALL,
            },
            // ETP Local: node-1 has w1 and keeps the client's address.
            Row {
                from: "external",
                to: tcp(node1, 30081),
                answered_by: &["w1"],
                seen_from: Some(EXTERNAL_ADDRESS),
                tries: 10,
            },
            // ...node-2 has no endpoint of local-only: no traffic there.
            Row {
                from: "external",
                to: tcp(node2, 30081),
                answered_by: &[],
                seen_from: None,
                tries: 3,
            },
            // DNS-style UDP on port 53 from a pod, answered through the
            // socket hooks (recvmsg4 gives the reply the VIP's address).
            Row {
                from: "default/client",
                to: (SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 53), 53), Protocol::Udp),
                answered_by: &["w1", "w2"],
                seen_from: Some(client),
                tries: TRIES_FOR_ALL,
            },
            // The externalIP, entering at node-1.
            Row {
                from: "external",
                to: tcp(Ipv4Addr::new(203, 0, 113, 10), 80),
                answered_by: &["w1", "w2"],
                seen_from: None,
                tries: TRIES_FOR_ALL,
            },
            // UDP to a ClusterIP from the node itself.
            Row {
                from: "node-2",
                to: (SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 53), 53), Protocol::Udp),
                answered_by: &["w1", "w2"],
                seen_from: Some(node2),
                tries: TRIES_FOR_ALL,
            },
            // A Service without endpoints refuses at once.
            Row {
                from: "default/client",
                to: tcp(Ipv4Addr::new(10, 96, 0, 99), 80),
                answered_by: &[],
                seen_from: None,
                tries: 3,
            },
            // Another node's NodePort dialled from a pod is served by that node,
            // as with kube-proxy (socket-LB translates this node's own
            // addresses only): its local backend sees the pod, the remote one
            // that node.
            Row {
                from: "default/client",
                to: tcp(node2, 30080),
                answered_by: &["w1", "w2"],
                seen_from: None,
                tries: TRIES_FOR_ALL,
            },
        ],
    );

    // Which source each backend saw through node-1's NodePort (ETP Cluster):
    // the local one the client, the remote one node-1.
    let origin = cluster.expect(cluster.origin("external"), "external");
    let replies = cluster.expect(
        cluster.probe(
            &origin,
            tcp(node1, 30080),
            TRIES_FOR_ALL,
            std::time::Duration::from_secs(2),
        ),
        "probing",
    );
    for answer in replies.answers() {
        let expected = if answer.name == "w1" {
            EXTERNAL_ADDRESS
        } else {
            node1
        };
        let seen = answer.peer.map(|p| *p.ip());
        assert_eq!(seen, Some(expected), "{} saw {:?}", answer.name, answer.peer);
    }

    // The health check of local-only: 200 where it has an endpoint, 503 elsewhere.
    assert_eq!(http_status(&cluster, &format!("http://{node1}:32001/")), "200");
    assert_eq!(http_status(&cluster, &format!("http://{node2}:32001/")), "503");

    assert_no_packet_filter_rules(&cluster);
}

/// weir replaces kube-proxy without a single iptables or nftables rule on
/// any node.
fn assert_no_packet_filter_rules(cluster: &weir_tests::Cluster) {
    for node in cluster.nodes() {
        let netns = node.netns().path();
        let iptables = run_in(&netns, &["iptables-save"]);
        assert!(
            !iptables.lines().any(|l| l.starts_with("-A")),
            "{} has iptables rules:\n{iptables}",
            node.name()
        );
        let nft = run_in(&netns, &["nft", "list", "ruleset"]);
        assert!(
            !nft.contains("chain"),
            "{} has nftables chains:\n{nft}",
            node.name()
        );
    }
}

/// Runs `argv` in the network namespace at `netns`; its stdout.
fn run_in(netns: &std::path::Path, argv: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(argv)
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const STICKY: &str = "
apiVersion: v1
kind: Pod
metadata: {name: s1, labels: {app: sticky}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: s2, labels: {app: sticky}}
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
metadata: {name: sticky}
spec:
  clusterIP: 10.96.0.40
  selector: {app: sticky}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: hashed, annotations: {weir.dev/lb-algorithm: maglev}}
spec:
  type: NodePort
  clusterIP: 10.96.0.41
  selector: {app: sticky}
  ports: [{port: 80, targetPort: http, nodePort: 30090}]
";

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn client_ip_affinity_and_maglev_choose_one_backend_and_weir_trace_names_it() {
    let mut cluster = cluster(2);
    let objects = kube::parse_documents(STICKY).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the objects");
    // sticky: its ClusterIP; hashed: ClusterIP and NodePort.
    let loaded = cluster.wait_for_agents("the sticky and hashed Services", |_, status| {
        status.frontends == 3 && status.backends == 2
    });
    cluster.expect(loaded, "waiting for the agents");
    let vip = tcp(Ipv4Addr::new(10, 96, 0, 40), 80);
    for from in ["default/a", "node-1", "node-2"] {
        let origin = cluster.expect(cluster.origin(from), "origin");
        let replies = cluster.probe(&origin, vip, 20, std::time::Duration::from_secs(2));
        let replies = cluster.expect(replies, "probing the sticky Service");
        assert!(replies.all_answered(), "{from}: {:?}", replies.failures());
        assert_eq!(
            replies.counts().len(),
            1,
            "{from} must stick to one backend: {:?}",
            replies.counts()
        );
        // The client's affinity entry, read by `weir trace` on its node.
        let stuck = replies.counts().keys().next().map(|name| (*name).to_owned());
        let stuck = cluster
            .expect(cluster.pod(&stuck.unwrap_or_default()), "the backend")
            .ip;
        let prediction = cluster.expect(weir_tests::trace::predict(&cluster, &origin, vip), "weir trace");
        let prediction = prediction.unwrap_or_else(|| panic!("{from}: no node traced"));
        let pick = &prediction.json["frontend"]["pick"];
        assert_eq!(pick["by"], "affinity", "{from}: {:#}", prediction.json);
        assert_eq!(
            pick["backend"].as_str(),
            Some(format!("{stuck}:8080").as_str()),
            "{from}: {:#}",
            prediction.json
        );
    }

    // Maglev: an external client's connection goes where its tuple hashes;
    // `weir trace --source-port` names that backend, and its own probe from
    // that source port is answered by it.
    let node1 = cluster.expect(cluster.node("node-1"), "node-1");
    let external = cluster.external_netns().path();
    let mut chosen = std::collections::BTreeSet::new();
    for port in 40_100..40_106u16 {
        let port_text = port.to_string();
        let args = [
            "trace",
            "-o",
            "json",
            "--probe",
            "--netns",
            &external.to_string_lossy(),
            "--source-port",
            &port_text,
            &EXTERNAL_ADDRESS.to_string(),
            &format!("{}:30090/tcp", node_address(1)),
        ];
        let output = cluster.expect(node1.weir(&args), "weir trace --probe --source-port");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let pick = &json["frontend"]["pick"];
        assert_eq!(pick["by"], "maglev", "source port {port}: {json:#}");
        let backend = pick["backend"]
            .as_str()
            .unwrap_or_else(|| panic!("no backend picked: {json:#}"));
        let detail = json["probe"]["detail"].as_str().unwrap_or_default();
        let answered_by = ["s1", "s2"]
            .into_iter()
            .find(|name| detail.contains(&format!("\"{name} ")))
            .unwrap_or_else(|| panic!("source port {port}: no backend answered the probe: {json:#}"));
        let ip = cluster.expect(cluster.pod(answered_by), "the backend").ip;
        assert_eq!(backend, format!("{ip}:8080"), "source port {port}: {json:#}");
        assert_eq!(json["probe"]["agrees"], true, "{json:#}");
        chosen.insert(answered_by);
    }
    assert_eq!(chosen.len(), 2, "six source ports hash to both backends");
}

const DRAINING: &str = "
apiVersion: v1
kind: Pod
metadata: {name: t1}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: t2}
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
metadata: {name: draining}
spec:
  clusterIP: 10.96.0.41
  ports: [{name: http, port: 80}]
";

/// The EndpointSlice of `draining`, as the controller writes it while both
/// pods shut down: t1 still serving, t2 not any more.
fn draining_slice(t1: Ipv4Addr, t2: Ipv4Addr) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: draining-1, labels: {{kubernetes.io/service-name: draining}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
         endpoints:\n\
         - {{addresses: ['{t1}'], nodeName: node-1, conditions: {{ready: false, serving: true, terminating: true}}}}\n\
         - {{addresses: ['{t2}'], nodeName: node-2, conditions: {{ready: false, serving: false, terminating: true}}}}\n"
    )
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn with_no_ready_endpoint_serving_terminating_ones_answer() {
    let mut cluster = cluster(2);
    let objects = kube::parse_documents(DRAINING).unwrap_or_else(|e| panic!("test YAML: {e:#}"));
    let applied = cluster.apply(objects);
    cluster.expect(applied, "applying the pods and Service");
    let t1 = cluster.expect(cluster.pod("default/t1").map(|p| p.ip), "t1");
    let t2 = cluster.expect(cluster.pod("default/t2").map(|p| p.ip), "t2");
    let slice =
        kube::parse_documents(&draining_slice(t1, t2)).unwrap_or_else(|e| panic!("slice YAML: {e:#}"));
    let applied = cluster.apply(slice);
    cluster.expect(applied, "applying the EndpointSlice");
    let loaded = cluster.wait_for_agents("the draining Service", |_, status| {
        status.frontends == 1 && status.backends == 1
    });
    cluster.expect(loaded, "waiting for the agents");
    let vip = tcp(Ipv4Addr::new(10, 96, 0, 41), 80);
    check_rows(
        &cluster,
        &[
            // KEP-1669: no endpoint is ready, so the serving+terminating one
            // takes new connections; the one no longer serving gets none.
            Row {
                from: "default/a",
                to: vip,
                answered_by: &["t1"],
                seen_from: None,
                tries: 20,
            },
            Row {
                from: "node-2",
                to: vip,
                answered_by: &["t1"],
                seen_from: None,
                tries: 20,
            },
        ],
    );
}
