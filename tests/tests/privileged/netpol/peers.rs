//! Peers and ports: podSelector AND namespaceSelector in one peer versus
//! the same selectors as two peers (OR), ipBlocks with `except`, named
//! ports in both directions, `endPort` ranges.

use weir_tests::netpol::{self, Peer, Reachability};
use weir_tests::{Cluster, Protocol, node_pod_cidr};

use super::{apply, check, delete, model_cluster, policy, reachability_where};

/// Pod `key`'s address as a /32.
fn host_cidr(cluster: &Cluster, key: &str) -> String {
    format!("{}/32", cluster.expect(cluster.pod(key), "a model pod").ip)
}

/// The node pod `key` runs on.
fn node_of(cluster: &Cluster, key: &str) -> String {
    cluster
        .expect(cluster.pod_node(key), "a model pod's node")
        .name()
        .to_owned()
}

#[test]
#[ignore = "needs root"]
fn netpol_peers_ip_blocks_and_ports() {
    let mut cluster = model_cluster();

    // One peer with both selectors: only pods b of namespaces labelled y.
    let and = policy(
        "x",
        "and",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: \
         {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]",
    );
    apply(&mut cluster, &and);
    let mut reachability = Reachability::new(true);
    reachability.expect_all_ingress("x/a", false);
    reachability.expect("y/b", "x/a", true);
    check(
        &cluster,
        "podSelector AND namespaceSelector",
        &reachability,
        80,
        Protocol::Tcp,
    );
    delete(&mut cluster, &and);

    // The same selectors as two peers: every pod of y, or pod b of x (a
    // podSelector alone means the policy's namespace).
    let or = policy(
        "x",
        "or",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: \
         {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]",
    );
    apply(&mut cluster, &or);
    let mut reachability = Reachability::new(true);
    reachability.expect_all_ingress("x/a", false);
    reachability.expect_peer(Peer::namespace("y"), Peer::default(), true);
    reachability.expect("x/b", "x/a", true);
    check(
        &cluster,
        "namespaceSelector OR podSelector",
        &reachability,
        80,
        Protocol::Tcp,
    );
    delete(&mut cluster, &or);

    // ipBlocks: into x/a from node-1's podCIDR except one pod there, and
    // from one pod of node-2 by its /32; out of x/b only to node-2's
    // podCIDR except one pod there.
    let on = |node: &str| -> Vec<String> {
        let pods = netpol::pod_keys().into_iter();
        pods.filter(|key| key != "x/a" && key != "x/b" && node_of(&cluster, key) == node)
            .collect()
    };
    let (node_1, node_2) = (on("node-1"), on("node-2"));
    let excepted_1 = node_1.first().expect("a pod on node-1").clone();
    let chosen_2 = node_2.first().expect("a pod on node-2").clone();
    let excepted_2 = node_2.last().expect("a pod on node-2").clone();
    assert_ne!(chosen_2, excepted_2, "the model has two other pods on node-2");
    let blocks = format!(
        "{}---\n{}",
        policy(
            "x",
            "ip-in",
            &format!(
                "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [\
                 {{ipBlock: {{cidr: {}, except: [{}]}}}}, {{ipBlock: {{cidr: {}}}}}]}}]",
                node_pod_cidr(1),
                host_cidr(&cluster, &excepted_1),
                host_cidr(&cluster, &chosen_2)
            ),
        ),
        policy(
            "x",
            "ip-out",
            &format!(
                "  podSelector: {{matchLabels: {{pod: b}}}}\n  policyTypes: [Egress]\n  egress: [{{to: [\
                 {{ipBlock: {{cidr: {}, except: [{}]}}}}]}}]",
                node_pod_cidr(2),
                host_cidr(&cluster, &excepted_2)
            ),
        )
    );
    apply(&mut cluster, &blocks);
    let ingress_ok =
        |from: &str| (node_of(&cluster, from) == "node-1" && from != excepted_1) || from == chosen_2;
    let egress_ok = |to: &str| node_of(&cluster, to) == "node-2" && to != excepted_2;
    let reachability =
        reachability_where(|from, to| (to != "x/a" || ingress_ok(from)) && (from != "x/b" || egress_ok(to)));
    check(&cluster, "ipBlock with except", &reachability, 80, Protocol::Tcp);
    delete(&mut cluster, &blocks);

    named_ports_and_ranges(&mut cluster);
}

/// Named ports (resolved against the selected pods for ingress, against
/// the peers for egress) and `endPort` ranges.
fn named_ports_and_ranges(cluster: &mut Cluster) {
    let everything = Reachability::new(true);
    let mut into_x_denied = Reachability::new(true);
    into_x_denied.expect_peer(Peer::default(), Peer::namespace("x"), false);
    let mut out_of_x_denied = Reachability::new(true);
    out_of_x_denied.expect_peer(Peer::namespace("x"), Peer::default(), false);

    let named_in = policy(
        "x",
        "named-in",
        "  podSelector: {}\n  ingress: [{ports: [{port: serve-81-tcp}]}]",
    );
    apply(cluster, &named_in);
    // What changed first: a grid equal to the one before the policy would
    // pass before the agents caught up.
    let case = "ingress on named port serve-81-tcp";
    check(cluster, case, &into_x_denied, 80, Protocol::Tcp);
    check(cluster, case, &everything, 81, Protocol::Tcp);
    delete(cluster, &named_in);

    let named_out = policy(
        "x",
        "named-out",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: serve-81-tcp}]}]",
    );
    apply(cluster, &named_out);
    let case = "egress on named port serve-81-tcp";
    check(cluster, case, &out_of_x_denied, 80, Protocol::Tcp);
    check(cluster, case, &everything, 81, Protocol::Tcp);
    delete(cluster, &named_out);

    // A range 80–81, then the same policy narrowed to 81–81.
    let range = |end_from: u16| {
        policy(
            "x",
            "range",
            &format!(
                "  podSelector: {{}}\n  ingress: [{{ports: [{{protocol: TCP, port: {end_from}, endPort: 81}}]}}]"
            ),
        )
    };
    apply(cluster, &range(80));
    let case = "endPort range 80-81 (TCP)";
    check(cluster, case, &into_x_denied, 80, Protocol::Udp);
    check(cluster, case, &everything, 80, Protocol::Tcp);
    check(cluster, case, &everything, 81, Protocol::Tcp);
    apply(cluster, &range(81));
    check(cluster, "endPort range 81-81", &into_x_denied, 80, Protocol::Tcp);
    check(cluster, "endPort range 81-81", &everything, 81, Protocol::Tcp);
    delete(cluster, &range(81));
    check(cluster, "every policy deleted", &everything, 80, Protocol::Tcp);
}
