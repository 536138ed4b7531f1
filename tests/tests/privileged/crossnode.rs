//! Two nodes on one fabric (host-gw routing by the agents): pods reach each
//! other across nodes with their own addresses, reach the other node, and a
//! node that leaves the cluster loses its route on the others.

use std::net::{Ipv4Addr, SocketAddrV4};

use weir_tests::{Cluster, EXTERNAL_ADDRESS, Protocol, node_address};

use crate::common::{Row, check_rows, cluster, node_mut};

/// Where the test pods and the node's own server listen.
const PORT: u16 = 8080;

/// Pod `a` on node-1 and pod `b` on node-2, both serving TCP and UDP on
/// [`PORT`]; returns their addresses.
fn two_pods(cluster: &mut Cluster) -> (Ipv4Addr, Ipv4Addr) {
    let mut ips = Vec::new();
    for (node, pod) in [("node-1", "a"), ("node-2", "b")] {
        let added = cluster.add_pod(node, pod).map(|pod| pod.ip);
        ips.push(cluster.expect(added, &format!("adding pod {pod} on {node}")));
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let served = cluster.serve(pod, PORT, protocol);
            cluster.expect(served, &format!("serving {PORT}/{protocol} in {pod}"));
        }
    }
    (ips[0], ips[1])
}

fn at(ip: Ipv4Addr, protocol: Protocol) -> (SocketAddrV4, Protocol) {
    (SocketAddrV4::new(ip, PORT), protocol)
}

/// Whether `netns`' main table routes `dst` via `gateway`.
fn routes_via(cluster: &Cluster, node: &str, dst: &str) -> Option<String> {
    let node = cluster.expect(cluster.node(node), "finding the node");
    let routes = cluster.expect(node.netns().routes(), "listing routes");
    routes
        .into_iter()
        .find(|route| route.dst == dst)
        .map(|route| route.gateway.unwrap_or_default())
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn pods_on_two_nodes_reach_each_other_with_their_own_addresses() {
    let mut cluster = cluster(2);
    let (a, b) = two_pods(&mut cluster);
    // Each node's pods come from its own podCIDR: the conflist its agent wrote.
    assert_eq!(a.octets()[..3], [10, 244, 1], "pod a on node-1 got {a}");
    assert_eq!(b.octets()[..3], [10, 244, 2], "pod b on node-2 got {b}");
    assert_eq!(
        routes_via(&cluster, "node-1", "10.244.2.0/24").as_deref(),
        Some("198.18.0.12"),
        "node-1's route to node-2's pods"
    );
    assert_eq!(
        routes_via(&cluster, "node-2", "10.244.1.0/24").as_deref(),
        Some("198.18.0.11"),
        "node-2's route to node-1's pods"
    );

    let mut rows = Vec::new();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        // The server sees the client pod's own address: no masquerade on the way.
        rows.push(Row {
            from: "a",
            to: at(b, protocol),
            answered_by: &["b"],
            seen_from: Some(a),
            tries: 5,
        });
        rows.push(Row {
            from: "b",
            to: at(a, protocol),
            answered_by: &["a"],
            seen_from: Some(b),
            tries: 5,
        });
    }
    check_rows(&cluster, &rows);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn pods_reach_the_other_node_and_outsiders_reach_only_nodes() {
    let mut cluster = cluster(2);
    let (a, b) = two_pods(&mut cluster);
    let node_2 = node_mut(&mut cluster, "node-2");
    let served = node_2.serve_on_host("node-2", PORT, Protocol::Tcp);
    node_2.expect(served, "serving on node-2 itself");
    let node_2_address = node_address(2);

    check_rows(
        &cluster,
        &[
            // Pod to the other node's InternalIP, routed by node-1, source kept.
            Row {
                from: "a",
                to: at(node_2_address, Protocol::Tcp),
                answered_by: &["node-2"],
                seen_from: Some(a),
                tries: 5,
            },
            // Node to node, and node to a pod on the other node.
            Row {
                from: "node-1",
                to: at(node_2_address, Protocol::Tcp),
                answered_by: &["node-2"],
                seen_from: Some(node_address(1)),
                tries: 5,
            },
            Row {
                from: "node-1",
                to: at(b, Protocol::Tcp),
                answered_by: &["b"],
                seen_from: Some(node_address(1)),
                tries: 5,
            },
            // The external client reaches a node, but has no route to pods.
            Row {
                from: "external",
                to: at(node_2_address, Protocol::Tcp),
                answered_by: &["node-2"],
                seen_from: Some(EXTERNAL_ADDRESS),
                tries: 5,
            },
            Row {
                from: "external",
                to: at(b, Protocol::Tcp),
                answered_by: &[],
                seen_from: None,
                tries: 3,
            },
        ],
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_node_removed_from_the_manifests_loses_its_route_on_the_others() {
    let mut cluster = cluster(2);
    let (a, b) = two_pods(&mut cluster);
    let a_to_b = |answered_by: &'static [&'static str]| Row {
        from: "a",
        to: at(b, Protocol::Tcp),
        answered_by,
        seen_from: answered_by.first().map(|_| a),
        tries: 3,
    };
    check_rows(&cluster, &[a_to_b(&["b"])]);

    cluster.expect(
        cluster.remove_node_object("node-2"),
        "removing node-2's Node object",
    );
    let node_1 = node_mut(&mut cluster, "node-1");
    let waited = node_1.wait_for_status("no node routes", |status| status.node_routes == 0);
    let status = node_1.expect(waited, "waiting for node-1 to drop its route");
    assert_eq!(status.node_routes, 0, "{status:?}");
    assert_eq!(
        routes_via(&cluster, "node-1", "10.244.2.0/24"),
        None,
        "node-1 still routes to node-2's pods"
    );
    // No route and no default route: the pod on node-2 is unreachable.
    check_rows(&cluster, &[a_to_b(&[])]);

    cluster.expect(
        cluster.write_node_object("node-2"),
        "writing node-2's Node object again",
    );
    let node_1 = node_mut(&mut cluster, "node-1");
    let waited = node_1.wait_for_status("one node route", |status| status.node_routes == 1);
    node_1.expect(waited, "waiting for node-1 to route to node-2 again");
    check_rows(&cluster, &[a_to_b(&["b"])]);
}
