//! Kubernetes objects applied to a two-node cluster, the way `cargo xtask lab
//! apply` does it: pods created with their node's conflist, EndpointSlices
//! generated from Service selectors, updates and deletes followed through.

use std::net::{Ipv4Addr, SocketAddrV4};

use weir_tests::kube::{self, Object};
use weir_tests::{Applied, Cluster, Protocol, node_address};

use crate::common::{ECHO_VIP, Row, TRIES_FOR_ALL, check_rows, cluster, examples_dir};

/// The Service of [`WEB`].
const WEB_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

/// A Service whose named targetPort resolves differently per pod, two
/// backends on different nodes, and a client.
const WEB: &str = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: w1, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: w2, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 9090}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: c}
spec:
  containers: [{name: c, image: x}]
";

fn objects(yaml: &str) -> Vec<Object> {
    kube::parse_documents(yaml).unwrap_or_else(|err| panic!("test YAML: {err:#}"))
}

/// The objects of `yaml` whose `describe()` names one of `names`.
fn only(yaml: &str, names: &[&str]) -> Vec<Object> {
    objects(yaml)
        .into_iter()
        .filter(|object| names.contains(&object.describe().as_str()))
        .collect()
}

fn action_of(applied: &Applied, object: &str) -> &'static str {
    applied
        .changes
        .iter()
        .find(|change| change.object == object)
        .unwrap_or_else(|| panic!("no change for {object} in {:?}", applied.changes))
        .action
}

fn apply(cluster: &mut Cluster, objects: Vec<Object>) -> Applied {
    let before = cluster.generations();
    let applied = cluster.apply(objects);
    let applied = cluster.expect(applied, "applying objects");
    if applied.manifests_changed {
        let settled = cluster.wait_settled(&before);
        cluster.expect(settled, "waiting for the agents");
    }
    applied
}

fn vip_row(
    from: &'static str,
    answered_by: &'static [&'static str],
    seen_from: Option<Ipv4Addr>,
) -> Row<'static> {
    Row {
        from,
        to: (SocketAddrV4::new(WEB_VIP, 80), Protocol::Tcp),
        answered_by,
        seen_from,
        tries: if answered_by.len() > 1 { TRIES_FOR_ALL } else { 10 },
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn clusterip_from_node_1_reaches_backends_on_both_nodes() {
    let mut cluster = cluster(2);
    let example = kube::read_paths(&[examples_dir()]);
    let example = cluster.expect(example, "reading examples/lab");
    let applied = cluster.apply(example);
    cluster.expect(applied, "applying examples/lab");
    // ClusterIP + NodePort on this node's address: two frontends.
    let loaded = cluster.wait_for_agents("the echo Service with 3 backends", |_, status| {
        status.frontends == 2 && status.backends == 3
    });
    cluster.expect(loaded, "waiting for the agents");
    let nodes: Vec<&str> = ["demo/echo-a", "demo/echo-b", "demo/echo-c", "demo/client"]
        .iter()
        .map(|pod| cluster.pod_node(pod).map_or("?", weir_tests::Node::name))
        .collect();
    assert_eq!(
        nodes,
        ["node-1", "node-2", "node-2", "node-1"],
        "where examples/lab's pods run"
    );
    let client = cluster.pod("demo/client").map(|pod| pod.ip);
    let client = cluster.expect(client, "the client pod");
    let echo_b = cluster.pod("demo/echo-b").map(|pod| pod.ip);
    let echo_b = cluster.expect(echo_b, "echo-b");
    let vip = (SocketAddrV4::new(ECHO_VIP, 80), Protocol::Tcp);
    let all = &["echo-a", "echo-b", "echo-c"];
    check_rows(
        &cluster,
        &[
            // node-1's agent sends node-1's client to backends on both nodes,
            // and they see the client pod's own address.
            Row {
                from: "demo/client",
                to: vip,
                answered_by: all,
                seen_from: Some(client),
                tries: TRIES_FOR_ALL,
            },
            // The same from node-2's side.
            Row {
                from: "demo/echo-b",
                to: vip,
                answered_by: all,
                seen_from: Some(echo_b),
                tries: TRIES_FOR_ALL,
            },
            // Host processes below the node cgroup get socket-LB too.
            Row {
                from: "node-1",
                to: vip,
                answered_by: all,
                seen_from: Some(node_address(1)),
                tries: TRIES_FOR_ALL,
            },
            // Nothing translates the external client's connect.
            Row {
                from: "external",
                to: vip,
                answered_by: &[],
                seen_from: None,
                tries: 3,
            },
        ],
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn apply_follows_label_and_spec_changes_and_delete_detaches_pods() {
    let mut cluster = cluster(2);

    // Invalid sets change nothing.
    let bad_namespace = objects(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: nowhere}\nspec: {containers: []}\n",
    );
    assert!(
        cluster.apply(bad_namespace).is_err(),
        "a pod in a missing namespace was accepted"
    );
    let bad_node =
        objects("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-9, containers: []}\n");
    assert!(
        cluster.apply(bad_node).is_err(),
        "a pod on a missing node was accepted"
    );
    assert_eq!(cluster.pods().count(), 0, "a refused apply created pods");

    // Named targetPort `http`: 8080 on w1, 9090 on w2 — two slices, both used.
    apply(&mut cluster, objects(WEB));
    let slices = cluster.endpoint_slices();
    let mut ports: Vec<i32> = slices
        .iter()
        .flat_map(|slice| slice.ports.iter().flatten().filter_map(|port| port.port))
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [8080, 9090], "generated slices: {slices:?}");
    let c = cluster.expect(cluster.pod("c").map(|pod| pod.ip), "pod c");
    check_rows(&cluster, &[vip_row("c", &["w1", "w2"], Some(c))]);

    // A label change regenerates the slices; the pod itself stays.
    let w2_before = cluster.expect(cluster.pod("w2").map(|pod| pod.ip), "w2");
    let relabelled = WEB.replace("name: w2, labels: {app: web}", "name: w2, labels: {app: other}");
    let applied = apply(&mut cluster, only(&relabelled, &["pod/default/w2"]));
    assert_eq!(action_of(&applied, "pod/default/w2"), "configured");
    let w2_after = cluster.expect(cluster.pod("w2").map(|pod| pod.ip), "w2");
    assert_eq!(w2_before, w2_after, "a label change recreated w2");
    check_rows(&cluster, &[vip_row("c", &["w1"], Some(c))]);

    // A spec change recreates the pod (CNI DEL + ADD) with its new port.
    let moved_port = relabelled.replace("containerPort: 8080", "containerPort: 8081");
    let applied = apply(&mut cluster, only(&moved_port, &["pod/default/w1"]));
    assert_eq!(action_of(&applied, "pod/default/w1"), "recreated");
    let w1 = cluster.expect(cluster.pod("w1").map(|pod| pod.ip), "w1");
    let direct = |port: u16, answered_by: &'static [&'static str]| Row {
        from: "c",
        to: (SocketAddrV4::new(w1, port), Protocol::Tcp),
        answered_by,
        seen_from: None,
        tries: 3,
    };
    check_rows(
        &cluster,
        &[
            vip_row("c", &["w1"], Some(c)),
            direct(8081, &["w1"]),
            direct(8080, &[]),
        ],
    );

    // Deleting the pods detaches them: no netns, no IPAM allocation, no
    // manifest, and the Service has nobody left to send `c` to.
    let w1_ipam = cluster
        .expect(cluster.node("node-1"), "node-1")
        .ipam_dir()
        .join("weir")
        .join(w1.to_string());
    assert!(
        w1_ipam.is_file(),
        "no IPAM allocation for w1 at {}",
        w1_ipam.display()
    );
    let netns = cluster.expect(cluster.pod("w1"), "w1").netns.clone();
    let before = cluster.generations();
    let deleted = cluster.delete(&only(WEB, &["pod/default/w1", "pod/default/w2"]));
    let deleted = cluster.expect(deleted, "deleting w1 and w2");
    assert_eq!(action_of(&deleted, "pod/default/w1"), "deleted");
    let settled = cluster.wait_settled(&before);
    cluster.expect(settled, "waiting for the agents");
    assert!(
        cluster.pod("w1").is_err() && cluster.pod("w2").is_err(),
        "pods left after delete"
    );
    assert!(!netns.exists(), "w1's netns {} left after delete", netns.name());
    assert!(
        !w1_ipam.exists(),
        "w1's IPAM allocation left after delete (no CNI DEL?)"
    );
    let files = cluster.expect(cluster.manifests().list(), "listing manifests");
    assert!(
        !files.iter().any(|file| file.starts_with("pod_default_w")),
        "pod manifests left: {files:?}"
    );
    check_rows(&cluster, &[vip_row("c", &[], None)]);
}
